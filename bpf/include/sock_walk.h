/* fd -> struct sock -> addresses, by offsets the loader reads from the kernel's BTF.
 *
 * BCC compiles against whatever headers are installed (here 6.1 headers on a newer
 * kernel), so struct layouts from headers cannot be trusted; the loader passes every
 * offset as a -D flag read from /sys/kernel/btf/vmlinux instead.
 */
#ifndef TELEGEN_SOCK_WALK_H
#define TELEGEN_SOCK_WALK_H

#define TG_AF_INET 2
#define TG_AF_INET6 10
#define TG_SOCK_STREAM 1
#define TG_IPPROTO_TCP 6
/* include/net/tcp_states.h, as sock:inet_sock_set_state reports them */
#define TG_TCP_ESTABLISHED 1
#define TG_TCP_SYN_SENT 2
#define TG_TCP_SYN_RECV 3
#define TG_TCP_FIN_WAIT1 4
#define TG_TCP_FIN_WAIT2 5
#define TG_TCP_CLOSE 7
#define TG_TCP_CLOSE_WAIT 8
#define TG_TCP_LAST_ACK 9
#define TG_TCP_LISTEN 10
#define TG_TCP_CLOSING 11
/* enum sock_flags bits of sk_flags (OFF_SKC_FLAGS) */
#define TG_SOCK_DEAD_BIT 0 /* the socket's process closed it (orphaned) */
#define TG_SOCK_DONE_BIT 1 /* tcp_fin() saw the peer's FIN */
#define TG_S_IFMT 0170000
#define TG_S_IFSOCK 0140000

struct sock_addrs {
    __u8 local_addr[16];
    __u8 peer_addr[16];
    __u16 local_port;
    __u16 peer_port;
    __u8 family;
};

/* The struct sock behind (current task, fd), or 0 when fd is not an inet socket. */
static __always_inline void *tg_fd_to_sock(__u32 fd)
{
    void *task = (void *)bpf_get_current_task();
    void *files = 0, *fdt = 0, **fdarr = 0, *file = 0, *inode = 0, *sock = 0, *sk = 0;
    __u32 max_fds = 0;
    __u16 mode = 0;

    bpf_probe_read_kernel(&files, sizeof(files), (char *)task + OFF_TASK_FILES);
    if (!files)
        return 0;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), (char *)files + OFF_FILES_FDT);
    if (!fdt)
        return 0;
    bpf_probe_read_kernel(&max_fds, sizeof(max_fds), (char *)fdt + OFF_FDT_MAX_FDS);
    if (fd >= max_fds)
        return 0;
    bpf_probe_read_kernel(&fdarr, sizeof(fdarr), (char *)fdt + OFF_FDT_FD);
    if (!fdarr)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), (char *)fdarr + (__u64)fd * sizeof(void *));
    if (!file)
        return 0;
    bpf_probe_read_kernel(&inode, sizeof(inode), (char *)file + OFF_FILE_INODE);
    if (!inode)
        return 0;
    bpf_probe_read_kernel(&mode, sizeof(mode), (char *)inode + OFF_INODE_MODE);
    if ((mode & TG_S_IFMT) != TG_S_IFSOCK)
        return 0;
    bpf_probe_read_kernel(&sock, sizeof(sock), (char *)file + OFF_FILE_PRIVATE_DATA);
    if (!sock)
        return 0;
    bpf_probe_read_kernel(&sk, sizeof(sk), (char *)sock + OFF_SOCKET_SK);
    return sk;
}

/* Fill addresses from a struct sock; returns 0 unless the socket is AF_INET/AF_INET6. */
static __always_inline int tg_sock_addrs(void *sk, struct sock_addrs *out)
{
    __u16 family = 0, dport = 0, num = 0;

    if (!sk)
        return 0;
    bpf_probe_read_kernel(&family, sizeof(family), (char *)sk + OFF_SKC_FAMILY);
    if (family == TG_AF_INET) {
        bpf_probe_read_kernel(out->local_addr, 4, (char *)sk + OFF_SKC_RCV_SADDR);
        bpf_probe_read_kernel(out->peer_addr, 4, (char *)sk + OFF_SKC_DADDR);
    } else if (family == TG_AF_INET6) {
        bpf_probe_read_kernel(out->local_addr, 16, (char *)sk + OFF_SKC_V6_RCV_SADDR);
        bpf_probe_read_kernel(out->peer_addr, 16, (char *)sk + OFF_SKC_V6_DADDR);
    } else {
        return 0;
    }
    bpf_probe_read_kernel(&dport, sizeof(dport), (char *)sk + OFF_SKC_DPORT);
    bpf_probe_read_kernel(&num, sizeof(num), (char *)sk + OFF_SKC_NUM);
    out->family = family;
    out->peer_port = (__u16)((dport >> 8) | (dport << 8)); /* network to host order */
    out->local_port = num;                                 /* already host order */
    return 1;
}

#endif
