/* HTTP/1.x capture: pairs request and response per (tgid, fd) in the kernel and emits one
 * ring-buffer record per exchange. Each syscall has a tracepoint and a kprobe entry; the
 * loader defines TP_<syscall> or KP_<syscall> for the method it chose, so only those exist.
 *
 * -D flags from the loader: CAPTURE_BYTES, MAX_CONNS, RINGBUF_PAGES, SELF_TGID (0: none),
 * and the OFF_* struct offsets read from BTF (see include/sock_walk.h).
 */
#include <uapi/linux/ptrace.h>

#include "events.h"
#include "sock_walk.h"
#include "http_sniff.h"

#define DIR_INGRESS 0 /* data read by the process */
#define DIR_EGRESS 1  /* data written by the process */


#define OP_READ 1
#define OP_WRITE 2
#define OP_READV 3
#define OP_WRITEV 4
#define OP_RECVMSG 5
#define OP_SENDMSG 6
#define OP_SENDFILE 7
#define OP_ACCEPT 8
#define OP_CONNECT 9


struct syscall_args {
    __u64 buf; /* user buffer, iovec array or msghdr, by op */
    __u32 fd;
    __u32 op;
};

BPF_RINGBUF_OUTPUT(http_events, RINGBUF_PAGES);
BPF_F_TABLE("hash", __u64, struct http_conn_state, http_conns, MAX_CONNS, BPF_F_NO_PREALLOC);
/* A syscall's arguments from enter to exit. Task-local storage, not a hash keyed by pid_tgid:
 * no hashing, locking or deleting on every read/write of every process (measured: the hash
 * cost nginx a large share of its throughput at saturation). */
BPF_TASK_STORAGE(http_active, struct syscall_args);
BPF_TABLE("lru_hash", __u64, __u8, http_role_hint, MAX_CONNS);
/* struct sock -> pairing key: finds the entry when a response goes out on a dup'd fd
 * (inetd-style servers such as busybox httpd read fd 0 and write fd 1). */
BPF_TABLE("lru_hash", __u64, __u64, http_sock_conn, MAX_CONNS);
BPF_PERCPU_ARRAY(http_scratch, struct http_conn_state, 1);
struct capture_buf {
    __u8 b[CAPTURE_BYTES];
};
BPF_PERCPU_ARRAY(http_shift, struct capture_buf, 1); /* moves a pipelined request's head to the front */
BPF_PERCPU_ARRAY(counters, __u64, CNT_MAX);
BPF_ARRAY(http_shed, __u32, 1); /* [0]: permille of exchanges NOT to emit (0: all); user space steers it */

static __always_inline void count(__u32 idx)
{
    __u64 *c = counters.lookup(&idx);
    if (c)
        (*c)++;
}

static __always_inline __u64 conn_key(__u64 pid_tgid, __u32 fd)
{
    return (pid_tgid & 0xffffffff00000000ULL) | fd;
}

static __always_inline int is_self(__u64 pid_tgid)
{
#if SELF_TGID
    return (pid_tgid >> 32) == SELF_TGID;
#else
    return 0;
#endif
}

static __always_inline void append(__u8 *dst, __u16 *len, const void *src, __u64 n)
{
    __u32 off = *len;
    __u64 take; /* 64-bit and re-checked after a barrier: older verifiers (6.1) otherwise see
                 * the unbounded syscall length in the size register */

    if (off >= CAPTURE_BYTES || !src || !n)
        return;
    take = CAPTURE_BYTES - off;
    if (n < take)
        take = n;
    off &= (CAPTURE_BYTES - 1);
    asm volatile("" : "+r"(take));
    if (take > CAPTURE_BYTES)
        return;
    if (bpf_probe_read_user(dst + off, take, src) == 0)
        *len = off + take;
}

static __always_inline void emit(struct http_conn_state *st, __u8 why, __u64 key)
{
    count(CNT_HTTP_EXCHANGES);
    if (st->state != ST_RESPONSE)
        count(CNT_HTTP_NO_RESPONSE);
    if (st->pipe_start_ns)
        count(CNT_HTTP_PIPELINED); /* a second request is inside this one: reported merged */
    if (!st->sampled) {
        count(CNT_HTTP_SAMPLED_OUT);
        return;
    }
    struct http_exchange_event *ev = http_events.ringbuf_reserve(sizeof(struct http_exchange_event));
    if (!ev) {
        count(CNT_HTTP_RINGBUF_FULL);
        return;
    }
    ev->type = EVENT_HTTP_EXCHANGE;
    ev->role = st->role;
    ev->flags = st->flags | why | (st->state == ST_RESPONSE ? HTTP_FLAG_HAS_RESPONSE : 0);
    ev->family = st->family;
    ev->pid = key >> 32;
    ev->tid = st->tid;
    ev->fd = (__u32)key;
    ev->cgroup_id = st->cgroup_id;
    ev->start_ns = st->start_ns;
    ev->resp_start_ns = st->resp_start_ns;
    ev->end_ns = st->end_ns ? st->end_ns : bpf_ktime_get_ns();
    ev->req_size = st->req_size;
    ev->resp_size = st->resp_size;
    __builtin_memcpy(ev->local_addr, st->local_addr, 16);
    __builtin_memcpy(ev->peer_addr, st->peer_addr, 16);
    ev->local_port = st->local_port;
    ev->peer_port = st->peer_port;
    ev->req_len = st->req_len;
    ev->resp_len = st->resp_len;
    ev->sample_permille = st->sample_permille;
    __builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
    bpf_probe_read_kernel(ev->req, CAPTURE_BYTES, st->req);
    bpf_probe_read_kernel(ev->resp, CAPTURE_BYTES, st->resp);
    http_events.ringbuf_submit(ev, BPF_RB_NO_WAKEUP); /* user space drains on a timer */
    count(CNT_HTTP_EMITTED);
}

static __always_inline void start_request(struct http_conn_state *st, const void *buf, __u64 len, __u64 now)
{
    __u32 zero = 0;
    __u32 *shed = http_shed.lookup(&zero);
    __u32 rate = shed && *shed < 1000 ? 1000 - *shed : (shed ? 0 : 1000);

    st->state = ST_REQUEST;
    st->flags &= HTTP_FLAG_ROLE_INFERRED; /* per-exchange flags start clear; the role's stays */
    st->start_ns = now;
    st->resp_start_ns = 0;
    st->end_ns = 0;
    st->req_size = len;
    st->resp_size = 0;
    st->req_len = 0;
    st->resp_len = 0;
    st->pipe_start_ns = 0;
    st->pipe_offset = 0;
    st->tid = (__u32)bpf_get_current_pid_tgid();
    st->cgroup_id = bpf_get_current_cgroup_id();
    st->sample_permille = rate > 1000 ? 1000 : rate;
    st->sampled = rate >= 1000 || (bpf_get_prandom_u32() % 1000) < rate;
    if (st->sampled) /* a shed exchange keeps only sizes and times: no bytes copied */
        append(st->req, &st->req_len, buf, len);
}

/* Create the pairing entry for a socket that is starting an HTTP request. */
static __always_inline struct http_conn_state *track(__u64 key, __u32 fd, __u8 dir)
{
    __u32 zero = 0;
    struct http_conn_state *st = http_scratch.lookup(&zero);
    struct sock_addrs addrs = {};
    __u8 *hint = http_role_hint.lookup(&key);
    void *sk = tg_fd_to_sock(fd);
    __u64 sk_key = (__u64)sk;

    if (!st || !tg_sock_addrs(sk, &addrs))
        return 0;
    __builtin_memset(st, 0, offsetof(struct http_conn_state, req));
    if (hint) {
        st->role = *hint;
    } else {
        st->role = dir == DIR_INGRESS ? ROLE_SERVER : ROLE_CLIENT;
        st->flags = HTTP_FLAG_ROLE_INFERRED;
    }
    st->family = addrs.family;
    st->local_port = addrs.local_port;
    st->peer_port = addrs.peer_port;
    __builtin_memcpy(st->local_addr, addrs.local_addr, 16);
    __builtin_memcpy(st->peer_addr, addrs.peer_addr, 16);
    if (http_conns.update(&key, st) != 0) {
        count(CNT_HTTP_CONN_MAP_FULL);
        return 0;
    }
    http_sock_conn.update(&sk_key, &key);
    return http_conns.lookup(&key);
}

/* The second answer of a pipelined pair begins: emit the first exchange, then make the
 * second one current (its request bytes moved to the front of the capture). */
static __always_inline void next_pipelined(struct http_conn_state *st, __u64 key, __u64 now)
{
    __u32 zero = 0;
    __u64 total = st->req_size, offset = st->pipe_offset, second_start = st->pipe_start_ns;
    __u16 captured = st->req_len;

    st->pipe_start_ns = 0;
    st->req_size = offset;
    if (st->req_len > offset)
        st->req_len = offset;
    emit(st, HTTP_FLAG_PIPELINED, key);
    st->start_ns = second_start;
    st->req_size = total - offset;
    st->req_len = 0;
    if (st->sampled && captured > offset && offset < CAPTURE_BYTES) {
        struct capture_buf *tmp = http_shift.lookup(&zero);
        __u64 off = offset & (CAPTURE_BYTES - 1);
        asm volatile("" : "+r"(off)); /* re-checked below: 6.1's verifier loses the mask's bounds */
        if (tmp && off < CAPTURE_BYTES) {
            bpf_probe_read_kernel(tmp->b, CAPTURE_BYTES, st->req + off);
            bpf_probe_read_kernel(st->req, CAPTURE_BYTES, tmp->b);
            st->req_len = captured - offset;
        }
    }
    st->flags = (st->flags & HTTP_FLAG_ROLE_INFERRED) | HTTP_FLAG_PIPELINED;
    st->resp_size = 0;
    st->resp_len = 0;
    st->resp_start_ns = now;
}

static __always_inline void handle_data(__u64 pid_tgid, __u32 fd, __u8 dir, const void *buf, __u64 len,
                                        __u8 sendfile)
{
    __u64 key = conn_key(pid_tgid, fd), now = bpf_ktime_get_ns();
    struct http_conn_state *st = http_conns.lookup(&key);
    __u8 head[12] = {};

    if (!sendfile && buf)
        bpf_probe_read_user(head, len < sizeof(head) ? (len & 0xf) : sizeof(head), buf);

    if (!st && !sendfile && len >= 9 && tg_is_http_response(head)) {
        __u64 sk_key = (__u64)tg_fd_to_sock(fd);
        __u64 *owner = sk_key ? http_sock_conn.lookup(&sk_key) : 0;
        if (owner) {
            key = *owner;
            st = http_conns.lookup(&key);
        }
    }
    if (!st) {
        if (sendfile || len < 8 || !tg_is_http_request(head))
            return;
        st = track(key, fd, dir);
        if (!st)
            return;
        start_request(st, buf, len, now);
        return;
    }
    __u8 req_dir = st->role == ROLE_SERVER ? DIR_INGRESS : DIR_EGRESS;
    if (dir == req_dir) {
        if (st->state == ST_RESPONSE && !sendfile && tg_is_http_request(head)) {
            emit(st, HTTP_FLAG_NEXT_REQUEST, key);
            st->state = ST_IDLE;
        }
        if (st->state == ST_IDLE) {
            if (!sendfile && len >= 8 && tg_is_http_request(head))
                start_request(st, buf, len, now);
            return;
        }
        if (st->state == ST_REQUEST) {
            if (!sendfile && len >= 8 && tg_is_http_request(head)) {
                if (!st->pipe_start_ns) {
                    st->pipe_start_ns = now;
                    st->pipe_offset = st->req_size;
                } else {
                    count(CNT_HTTP_PIPELINED); /* deeper than two: stays merged */
                }
            }
            st->req_size += len;
            if (!sendfile && st->sampled)
                append(st->req, &st->req_len, buf, len);
        }
        return;
    }
    /* response direction */
    if (st->state == ST_IDLE)
        return;
    if (st->state == ST_REQUEST) {
        if (!sendfile && tg_is_http_response(head) && head[9] == '1') {
            count(CNT_HTTP_INTERIM); /* 100 Continue and friends: the real answer follows */
            return;
        }
        st->state = ST_RESPONSE;
        st->resp_start_ns = now;
    } else if (!sendfile && len >= 9 && tg_is_http_response(head) && head[9] != '1') {
        if (st->pipe_start_ns)
            next_pipelined(st, key, now);
        else
            count(CNT_HTTP_PIPELINED); /* both requests came in one read: this answer stays merged */
    }
    st->resp_size += len;
    st->end_ns = now;
    if (sendfile) {
        st->flags |= HTTP_FLAG_SENDFILE;
    } else if (st->sampled) {
        append(st->resp, &st->resp_len, buf, len);
    }
    /* A chunked body ends with "0\r\n\r\n". Other complete responses are emitted by the next
     * request, the close, or user space's sweep of idle entries (telegen/capture/sweep.py):
     * scanning headers here made every program ~500k verifier steps and start-up take 50 s. */
    if (!sendfile && buf && len >= 5) {
        /* "\r\n0\r\n\r\n" ends a chunked body; a header block cannot end that way (a header
         * line of just "0" is invalid), unlike "Content-Length: 20000\r\n\r\n". */
        __u8 tail[7] = {};
        __u32 n = len >= 7 ? 7 : 5;
        bpf_probe_read_user(tail, n, (const char *)buf + len - n);
        __u8 *t = n == 7 ? tail + 2 : tail;
        if ((n == 5 || (tail[0] == '\r' && tail[1] == '\n')) && t[0] == '0' && t[1] == '\r' && t[2] == '\n' &&
            t[3] == '\r' && t[4] == '\n') {
            emit(st, HTTP_FLAG_CHUNKED_DONE, key);
            st->state = ST_IDLE;
        }
    }
}

/* ---- syscall entry/exit, shared by both attach methods ---- */

static __always_inline int on_enter(__u32 fd, __u64 buf, __u32 op)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct syscall_args *a;

    if (is_self(pid_tgid))
        return 0;
    a = http_active.task_storage_get(bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!a) {
        count(CNT_HTTP_ACTIVE_MAP_FULL);
        return 0;
    }
    a->buf = buf;
    a->fd = fd;
    a->op = op;
    return 0;
}

/* First iovec of an array: the head of the message is there. */
static __always_inline const void *first_iov(__u64 iov, __u64 *iov_len)
{
    struct { __u64 base; __u64 len; } v = {};
    bpf_probe_read_user(&v, sizeof(v), (const void *)iov);
    *iov_len = v.len;
    return (const void *)v.base;
}

static __always_inline int on_exit(long ret)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    struct syscall_args *a = http_active.task_storage_get(bpf_get_current_task_btf(), 0, 0);

    if (!a || !a->op)
        return 0;
    struct syscall_args args = *a;
    a->op = 0;

    if (args.op == OP_ACCEPT || args.op == OP_CONNECT) {
        /* connect on a non-blocking socket answers -EINPROGRESS (-115) */
        if ((args.op == OP_ACCEPT && ret >= 0) || (args.op == OP_CONNECT && (ret == 0 || ret == -115))) {
            __u64 key = conn_key(pid_tgid, args.op == OP_ACCEPT ? (__u32)ret : args.fd);
            __u8 role = args.op == OP_ACCEPT ? ROLE_SERVER : ROLE_CLIENT;
            http_role_hint.update(&key, &role);
            http_conns.delete(&key); /* a reused fd number starts clean */
        }
        return 0;
    }
    if (ret <= 0)
        return 0;

    __u64 len = (__u64)ret, iov_len = 0;
    const void *buf = (const void *)args.buf;
    __u8 dir = (args.op == OP_READ || args.op == OP_READV || args.op == OP_RECVMSG) ? DIR_INGRESS : DIR_EGRESS;

    if (args.op == OP_READV || args.op == OP_WRITEV) {
        buf = first_iov(args.buf, &iov_len);
    } else if (args.op == OP_RECVMSG || args.op == OP_SENDMSG) {
        __u64 iov = 0; /* struct user_msghdr: msg_iov at offset 16 (UAPI, stable) */
        bpf_probe_read_user(&iov, sizeof(iov), (const char *)args.buf + 16);
        buf = iov ? first_iov(iov, &iov_len) : 0;
    }
    /* For vectored I/O only the first iovec is inspected; every byte still counts in the sizes. */
    if (args.op == OP_SENDFILE)
        buf = 0;
    handle_data(pid_tgid, args.fd, dir, buf, len, args.op == OP_SENDFILE);
    return 0;
}

static __always_inline int on_close(__u32 fd)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u64 key = conn_key(pid_tgid, fd);
    struct http_conn_state *st;

    if (is_self(pid_tgid))
        return 0;
    st = http_conns.lookup(&key);
    if (st) {
        if (st->state != ST_IDLE)
            emit(st, HTTP_FLAG_CLOSED, key);
        http_conns.delete(&key);
    }
    http_role_hint.delete(&key);
    return 0;
}

/* ---- entry points: -DTP_<syscall> (tracepoints) or -DKP_<syscall> (kprobe + kretprobe).
 * They live in this file because BCC builds tracepoint argument structs only for probes
 * in the main source text. ---- */

#ifdef TP_read
TRACEPOINT_PROBE(syscalls, sys_enter_read) { return on_enter(args->fd, (__u64)args->buf, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_exit_read) { return on_exit(args->ret); }
#endif
#ifdef KP_read
int syscall__read(struct pt_regs *ctx, unsigned long fd, unsigned long buf) { return on_enter(fd, (__u64)buf, OP_READ); }
int kret__read(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_write
TRACEPOINT_PROBE(syscalls, sys_enter_write) { return on_enter(args->fd, (__u64)args->buf, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_exit_write) { return on_exit(args->ret); }
#endif
#ifdef KP_write
int syscall__write(struct pt_regs *ctx, unsigned long fd, unsigned long buf) { return on_enter(fd, (__u64)buf, OP_WRITE); }
int kret__write(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_readv
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return on_enter(args->fd, (__u64)args->vec, OP_READV); }
TRACEPOINT_PROBE(syscalls, sys_exit_readv) { return on_exit(args->ret); }
#endif
#ifdef KP_readv
int syscall__readv(struct pt_regs *ctx, unsigned long fd, unsigned long vec) { return on_enter(fd, (__u64)vec, OP_READV); }
int kret__readv(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_writev
TRACEPOINT_PROBE(syscalls, sys_enter_writev) { return on_enter(args->fd, (__u64)args->vec, OP_WRITEV); }
TRACEPOINT_PROBE(syscalls, sys_exit_writev) { return on_exit(args->ret); }
#endif
#ifdef KP_writev
int syscall__writev(struct pt_regs *ctx, unsigned long fd, unsigned long vec) { return on_enter(fd, (__u64)vec, OP_WRITEV); }
int kret__writev(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_recvfrom
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { return on_enter(args->fd, (__u64)args->ubuf, OP_READ); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvfrom) { return on_exit(args->ret); }
#endif
#ifdef KP_recvfrom
int syscall__recvfrom(struct pt_regs *ctx, unsigned long fd, unsigned long ubuf) { return on_enter(fd, (__u64)ubuf, OP_READ); }
int kret__recvfrom(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_sendto
TRACEPOINT_PROBE(syscalls, sys_enter_sendto) { return on_enter(args->fd, (__u64)args->buff, OP_WRITE); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendto) { return on_exit(args->ret); }
#endif
#ifdef KP_sendto
int syscall__sendto(struct pt_regs *ctx, unsigned long fd, unsigned long buff) { return on_enter(fd, (__u64)buff, OP_WRITE); }
int kret__sendto(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_recvmsg
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) { return on_enter(args->fd, (__u64)args->msg, OP_RECVMSG); }
TRACEPOINT_PROBE(syscalls, sys_exit_recvmsg) { return on_exit(args->ret); }
#endif
#ifdef KP_recvmsg
int syscall__recvmsg(struct pt_regs *ctx, unsigned long fd, unsigned long msg) { return on_enter(fd, (__u64)msg, OP_RECVMSG); }
int kret__recvmsg(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_sendmsg
TRACEPOINT_PROBE(syscalls, sys_enter_sendmsg) { return on_enter(args->fd, (__u64)args->msg, OP_SENDMSG); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendmsg) { return on_exit(args->ret); }
#endif
#ifdef KP_sendmsg
int syscall__sendmsg(struct pt_regs *ctx, unsigned long fd, unsigned long msg) { return on_enter(fd, (__u64)msg, OP_SENDMSG); }
int kret__sendmsg(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_sendfile64
TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64) { return on_enter(args->out_fd, 0, OP_SENDFILE); }
TRACEPOINT_PROBE(syscalls, sys_exit_sendfile64) { return on_exit(args->ret); }
#endif
#ifdef KP_sendfile64
int syscall__sendfile64(struct pt_regs *ctx, unsigned long out_fd) { return on_enter(out_fd, 0, OP_SENDFILE); }
int kret__sendfile64(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_accept4
TRACEPOINT_PROBE(syscalls, sys_enter_accept4) { return on_enter(args->fd, 0, OP_ACCEPT); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return on_exit(args->ret); }
#endif
#ifdef KP_accept4
int syscall__accept4(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_ACCEPT); }
int kret__accept4(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_accept
TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return on_enter(args->fd, 0, OP_ACCEPT); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return on_exit(args->ret); }
#endif
#ifdef KP_accept
int syscall__accept(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_ACCEPT); }
int kret__accept(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_connect
TRACEPOINT_PROBE(syscalls, sys_enter_connect) { return on_enter(args->fd, 0, OP_CONNECT); }
TRACEPOINT_PROBE(syscalls, sys_exit_connect) { return on_exit(args->ret); }
#endif
#ifdef KP_connect
int syscall__connect(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_CONNECT); }
int kret__connect(struct pt_regs *ctx) { return on_exit(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_close
TRACEPOINT_PROBE(syscalls, sys_enter_close) { return on_close(args->fd); }
#endif
#ifdef KP_close
int syscall__close(struct pt_regs *ctx, unsigned long fd) { return on_close(fd); }
#endif
