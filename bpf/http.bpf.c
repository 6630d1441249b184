/* HTTP/1.x capture: pairs request and response per (tgid, fd) in the kernel and emits one
 * ring-buffer record per exchange. Each syscall has three possible entries; the loader
 * defines one switch per syscall for the method it chose, so only those programs exist:
 *   KP_<syscall>   kprobe + kretprobe on the syscall's function (kernels with kprobes)
 *   SK_<syscall>   a data syscall dispatched by the two sock length tracepoints (with SOCK_IO),
 *                  the default without kprobes on 6.3+: they run for socket I/O only
 *   RAW_<syscall>  dispatched by the two raw_syscalls programs (with RAW_SYSCALLS), the
 *                  default without kprobes before 6.3: two programs to verify instead of 25
 *                  (start-up), ~200 ns less per traced syscall than syscalls:* tracepoints, but
 *                  every other syscall pays ~150 ns more (both programs run for it)
 *   SK_<accept4|accept|connect|close>  with SOCK_STATE: not the syscalls but the socket's state
 *                  changes (sock:inet_sock_set_state) tell a socket's role and its end, beside
 *                  SOCK_IO; a syscalls:* tracepoint would send every syscall on the node down
 *                  the kernel's slow syscall path
 *   TP_<syscall>   syscalls:sys_enter_/sys_exit_ tracepoints: accept, connect and close beside
 *                  KP_ or RAW_ data, or every syscall when configuration forces them
 * See docs/capture.md for the measurements.
 *
 * -D flags from the loader: CAPTURE_BYTES, MAX_CONNS, RINGBUF_PAGES, SELF_TGID (0: none),
 * and the OFF_* struct offsets read from BTF (see include/sock_walk.h).
 *
 * Costs that shaped the data path (6.18 under KVM, bpf_stats): a bpf_probe_read_user ~190 ns,
 * a bpf_probe_read_kernel of 256 bytes ~60 ns, bpf_ktime_get_ns and a task-storage lookup ~55 ns
 * each. So each syscall's data is read from user memory once, into a per-CPU copy that the
 * checks and captures then use; copies out of map memory are plain loads and stores; what a
 * connection keeps (its tuple's hash, cgroup, local client) is taken once per pairing entry.
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
#define OP_CLOSE 10 /* raw dispatch only: close is handled at entry */

#define MAX_IOV_SEGS 4 /* vectored I/O: the capture comes from the first four iovecs at most */

struct syscall_args {
    __u64 buf; /* user buffer, iovec array or msghdr, by op */
    __u32 fd;
    __u32 op;
};

/* What one syscall moved: `len` bytes, the first `contig` of them at `buf`; for vectored I/O
 * the rest are in the iovecs of the array at `iov` (0 when not vectored). Until resolve_view()
 * runs, `buf` is the syscall's argument as `kind` says: vectored I/O's iovecs are read only when
 * the bytes are looked at (a shed exchange's answer is not). */
struct data_view {
    const void *buf;
    __u64 len;
    __u64 contig;
    __u64 iov;
    __u64 kind; /* VIEW_* */
};
#define VIEW_FLAT 0    /* buf: the bytes */
#define VIEW_IOVEC 1   /* buf: a struct iovec array (readv, writev) */
#define VIEW_MSGHDR 2  /* buf: a struct user_msghdr (recvmsg, sendmsg) */
#define VIEW_NONE 3    /* no user bytes (sendfile) */

BPF_RINGBUF_OUTPUT(http_events, RINGBUF_PAGES);
BPF_F_TABLE("hash", __u64, struct http_conn_state, http_conns, MAX_CONNS, BPF_F_NO_PREALLOC);
/* A syscall's arguments from enter to exit. Task-local storage, not a hash keyed by pid_tgid:
 * no hashing, locking or deleting on every read/write of every process (measured: the hash
 * cost nginx a large share of its throughput at saturation). */
BPF_TASK_STORAGE(http_active, struct syscall_args);
/* ROLE_* of a socket by how it was opened: keyed by the pairing key when accept/connect set it,
 * by the struct sock when the handshake's state change does (SOCK_STATE); see role_key. */
BPF_TABLE("lru_hash", __u64, __u8, http_role_hint, MAX_CONNS);
/* struct sock -> pairing key: finds the entry when a response goes out on a dup'd fd
 * (inetd-style servers such as busybox httpd read fd 0 and write fd 1). */
BPF_TABLE("lru_hash", __u64, __u64, http_sock_conn, MAX_CONNS);
/* The 4-tuples of client connections on this node (the client's view): the server end of a
 * call finds its client there and becomes its child (call_ids). */
struct conn_tuple {
    __u8 client_addr[16];
    __u8 server_addr[16];
    __u16 client_port;
    __u16 server_port;
    __u32 _pad;
};
BPF_TABLE("lru_hash", struct conn_tuple, __u8, http_client_socks, MAX_CONNS);

/* An address as IPv4 sockets store it (4 bytes, then zeros) when it is IPv4-mapped
 * (::ffff:a.b.c.d), as a dual-stack server sees an IPv4 client. */
static __always_inline void canonical_addr(__u8 *dst, const __u8 *src)
{
    const __u32 *w = (const __u32 *)src;

    __builtin_memcpy(dst, src, 16);
    if (w[0] == 0 && w[1] == 0 && src[8] == 0 && src[9] == 0 && src[10] == 0xff && src[11] == 0xff) {
        __builtin_memcpy(dst, src + 12, 4);
        __builtin_memset(dst + 4, 0, 12);
    }
}

static __always_inline void call_tuple(struct conn_tuple *t, const __u8 *client_addr, __u16 client_port,
                                       const __u8 *server_addr, __u16 server_port)
{
    __builtin_memset(t, 0, sizeof(*t)); /* the padding is part of the hashed key */
    canonical_addr(t->client_addr, client_addr);
    canonical_addr(t->server_addr, server_addr);
    t->client_port = client_port;
    t->server_port = server_port;
}

/* murmur3's 64-bit finalizer: every input bit flips about half of the output bits */
static __always_inline __u64 mix64(__u64 h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* The salted hash of a connection's client->server 4-tuple, which call_ids() goes on from with
 * each request's sequence number. */
static __always_inline __u64 tuple_hash(const struct conn_tuple *t)
{
    const __u64 *w = (const __u64 *)t;
    __u64 h = TRACE_SALT;

#pragma unroll
    for (int i = 0; i < sizeof(*t) / 8; i++)
        h = mix64(h ^ w[i]);
    return h;
}
BPF_PERCPU_ARRAY(http_scratch, struct http_conn_state, 1);
struct capture_buf {
    __u8 b[CAPTURE_BYTES];
};
BPF_PERCPU_ARRAY(http_shift, struct capture_buf, 1); /* moves a pipelined request's head to the front */
/* The first CAPTURE_BYTES of the current syscall's data, read once (twice the size, like the
 * pairing entry's captures, so the verifier can prove the appends). Per CPU, like http_scratch:
 * filled and used within one run of one exit program, which the kernel never runs twice at once
 * on a CPU (a nested run is skipped and counted in the program's recursion_misses). */
struct data_copy {
    __u8 b[2 * CAPTURE_BYTES];
    /* These two live here, not on the stack, and are read back from here: the verifier does not
     * track map memory, so the checks on the lengths and the ways gather() ends do not split its
     * states for the rest of the program (the exit program verified in 15k steps, not 75k). */
    struct data_view d;
    __u64 copied; /* bytes valid in b[] */
};
BPF_PERCPU_ARRAY(http_data, struct data_copy, 1);
BPF_PERCPU_ARRAY(counters, __u64, CNT_MAX);
BPF_ARRAY(http_shed, __u32, 1); /* [0]: permille of exchanges NOT to emit (0: all); user space steers it */
/* Records emitted per CPU, for the wakeup watermark: user space drains on a timer and is woken
 * early only when a CPU has emitted another RINGBUF_WAKE_EVERY records, which the loader sets
 * so that all CPUs together stay under a quarter of the ring between two wakeups. A flood is
 * then drained before the ring fills (wrk on 2 cores fills 8 MiB in about 40 ms, the timer is
 * 50 ms), with no wakeup per record. */
BPF_PERCPU_ARRAY(http_ring_emitted, __u32, 1);

static __always_inline __u64 ring_wakeup_flag(void)
{
    __u32 zero = 0;
    __u32 *n = http_ring_emitted.lookup(&zero);
    if (!n || ++*n < RINGBUF_WAKE_EVERY)
        return BPF_RB_NO_WAKEUP;
    *n = 0;
    return BPF_RB_FORCE_WAKEUP;
}

static __always_inline void count(__u32 idx)
{
    __u64 *c = counters.lookup(&idx);
    if (c)
        (*c)++;
}

static __always_inline __u8 op_dir(__u32 op)
{
    return op == OP_READ || op == OP_READV || op == OP_RECVMSG ? DIR_INGRESS : DIR_EGRESS;
}

static __always_inline __u64 conn_key(__u64 pid_tgid, __u32 fd)
{
    return (pid_tgid & 0xffffffff00000000ULL) | fd;
}

/* The direction a socket's requests travel: read by a server, written by a client. */
static __always_inline __u8 request_dir(const struct http_conn_state *st)
{
    return st->role == ROLE_SERVER ? DIR_INGRESS : DIR_EGRESS;
}

static __always_inline __u64 role_key(__u64 key, void *sk)
{
#ifdef SOCK_STATE
    return (__u64)sk;
#else
    return key;
#endif
}

static __always_inline int is_self(__u64 pid_tgid)
{
#if SELF_TGID
    return (pid_tgid >> 32) == SELF_TGID;
#else
    return 0;
#endif
}

/* How many of n bytes an append to a capture holding `len` fits (0: none), and at which offset
 * (masked, so the verifier sees it bounded). */
static __always_inline __u64 capture_room(__u16 len, __u64 n, __u32 *at)
{
    __u32 off = len;
    __u64 take;

    if (off >= CAPTURE_BYTES || !n)
        return 0;
    take = CAPTURE_BYTES - off;
    if (n < take)
        take = n;
    asm volatile("" : "+r"(off)); /* keeps the mask, which the compiler knows is redundant */
    *at = off & (CAPTURE_BYTES - 1);
    return take;
}

/* Append up to n bytes of user memory at src to a capture. */
static __always_inline void append(__u8 *dst, __u16 *len, const void *src, __u64 n)
{
    __u32 off = 0;
    __u64 take = capture_room(*len, n, &off); /* 64-bit and re-checked after a barrier: older
                                                * verifiers (6.1) otherwise see the unbounded
                                                * syscall length in the size register */

    if (!take || !src)
        return;
    asm volatile("" : "+r"(take));
    if (take > CAPTURE_BYTES)
        return;
    if (bpf_probe_read_user(dst + off, take, src) == 0)
        *len = off + take;
}

/* Append the leading n bytes of the per-CPU copy (struct data_copy's b[]) to a capture. It copies
 * a whole CAPTURE_BYTES in 8-byte words, of which the first n count: plain loads and stores, where
 * bpf_probe_read_kernel guards each word against a fault (bpf_stats at 5,000 req/s: with the
 * record's two captures copied the same way, 150 ns less per request). Both buffers are twice
 * CAPTURE_BYTES long, so any offset below CAPTURE_BYTES stays inside them. */
static __always_inline void append_copy(__u8 *dst, __u16 *len, const __u8 *src, __u64 n)
{
    __u32 off = 0;
    __u64 take = capture_room(*len, n, &off);

    if (!take)
        return;
    __u64 *to = (__u64 *)(dst + off); /* unaligned at most: x86-64 and arm64 load and store so */
    const __u64 *from = (const __u64 *)src;
#pragma unroll
    for (int i = 0; i < CAPTURE_BYTES / 8; i++)
        to[i] = from[i];
    *len = off + take;
}

/* Read the leading bytes of a syscall's data into the per-CPU copy: up to `want` (at most
 * CAPTURE_BYTES), across the first iovecs of vectored I/O. Returns how many; 0 when the first
 * segment cannot be read. */
static __always_inline __u64 gather(struct data_copy *c, const struct data_view *d, __u64 want)
{
    __u64 left = d->len - d->contig;
    __u16 n = 0;

    append(c->b, &n, d->buf, d->contig < want ? d->contig : want);
    if (!n || !d->iov)
        return n;
#pragma unroll
    for (int i = 1; i < MAX_IOV_SEGS; i++) {
        struct { __u64 base; __u64 len; } v = {};
        if (!left || n >= want)
            break;
        if (bpf_probe_read_user(&v, sizeof(v), (const char *)d->iov + i * sizeof(v)))
            break;
        if (v.len > left)
            v.len = left;
        append(c->b, &n, (const void *)v.base, v.len);
        left -= v.len;
    }
    return n;
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
    __builtin_memcpy(ev->trace_id, st->trace_id, 16);
    __builtin_memcpy(ev->span_id, st->span_id, 8);
    __builtin_memcpy(ev->parent_span_id, st->parent_span_id, 8);
    __builtin_memcpy(ev->req, st->req, CAPTURE_BYTES); /* map value to ring: plain loads and stores */
    __builtin_memcpy(ev->resp, st->resp, CAPTURE_BYTES);
    http_events.ringbuf_submit(ev, ring_wakeup_flag());
    count(CNT_HTTP_EMITTED);
}

/* Ids nothing else derives: a pipelined second exchange's (see next_pipelined). */
static __always_inline void draw_ids(__u8 *trace_id, __u8 *span_id)
{
    __u32 r[6] = {bpf_get_prandom_u32(), bpf_get_prandom_u32(), bpf_get_prandom_u32(),
                  bpf_get_prandom_u32(), bpf_get_prandom_u32(), bpf_get_prandom_u32() | 1}; /* span id never 0 */

    __builtin_memcpy(trace_id, r, 16);
    __builtin_memcpy(span_id, r + 4, 8);
}

/* Trace context for a new exchange, in the kernel, so user space never matches spans and the
 * two ends never hand anything over: both derive the call's ids from what they share, the
 * client->server 4-tuple and the TCP sequence number of the request's first byte (the client's
 * write_seq before its write, the server's copied_seq before its read), hashed with a salt
 * drawn at each start. Whichever end starts first, they agree:
 *  - the client's span: trace id H1, span id H3;
 *  - a server whose peer is a client on this node is that span's child: trace id H1, parent
 *    H3, span id H5. Other servers are roots with trace id H1 and span id H5. "On this node":
 *    its 4-tuple is in http_client_socks, which connect() fills before the first byte is sent;
 *    looked up when the server's pairing entry is made (st->local_client), and for a
 *    connection older than the agent again per request until found;
 *  - the shedding draw is the hash too, so a server keeps exactly the calls its local client
 *    keeps (a kept server span has its parent) and each end is kept with the same chance (RED
 *    weights stay exact). Only when the rate changes between the two ends' starts can they differ.
 * `len`: the bytes this syscall moved, the request's first among them. */
static __always_inline void call_ids(struct http_conn_state *st, __u64 len, __u32 rate)
{
    int client = st->role == ROLE_CLIENT;
    __u32 seq = 0;

    bpf_probe_read_kernel(&seq, sizeof(seq), (const char *)st->sk + (client ? OFF_TCP_WRITE_SEQ : OFF_TCP_COPIED_SEQ));
    st->req_seq = seq - (__u32)len;

    __u64 h = mix64(st->tuple_hash ^ st->req_seq);
    st->sampled = rate >= 1000 || h % 1000 < rate;
    __builtin_memset(st->parent_span_id, 0, 8);
    if (!st->sampled)
        return;
    __u64 trace[2] = {mix64(h ^ 1), mix64(h ^ 2)};
    __u64 client_span = mix64(h ^ 3) | 1; /* never all zero */
    __builtin_memcpy(st->trace_id, trace, 16);
    if (client) {
        __builtin_memcpy(st->span_id, &client_span, 8);
        return;
    }
    __u64 server_span = mix64(h ^ 5) | 1;
    __builtin_memcpy(st->span_id, &server_span, 8);
    if (!st->local_client && (st->flags & HTTP_FLAG_ROLE_INFERRED)) {
        /* a connection older than the agent: its client registers at its first request seen,
         * which may come after this server's entry was made */
        struct conn_tuple t;
        call_tuple(&t, st->peer_addr, st->peer_port, st->local_addr, st->local_port);
        st->local_client = http_client_socks.lookup(&t) != 0;
    }
    if (st->local_client)
        __builtin_memcpy(st->parent_span_id, &client_span, 8);
}

/* Permille of new exchanges kept: user space's shed rate turned around (1000: keep all). */
static __always_inline __u32 keep_rate(void)
{
    __u32 zero = 0;
    __u32 *shed = http_shed.lookup(&zero);
    return shed && *shed < 1000 ? 1000 - *shed : (shed ? 0 : 1000);
}

/* A new exchange begins with this syscall's `len` bytes; the caller captures them when
 * st->sampled. */
static __always_inline void start_request(struct http_conn_state *st, __u64 len)
{
    __u32 rate = keep_rate();

    st->state = ST_REQUEST;
    st->flags &= HTTP_FLAG_ROLE_INFERRED; /* per-exchange flags start clear; the role's stays */
    st->resp_start_ns = 0;
    st->end_ns = 0;
    st->req_size = len;
    st->resp_size = 0;
    st->req_len = 0;
    st->resp_len = 0;
    st->pipe_start_ns = 0;
    st->pipe_offset = 0;
    st->sample_permille = rate > 1000 ? 1000 : rate;
    call_ids(st, len, rate); /* and whether it is shed: sizes and times only */
    /* Only a record carries times and the thread: a shed exchange saves the helper calls. */
    st->start_ns = 0;
    if (st->sampled) {
        st->start_ns = bpf_ktime_get_ns();
        st->tid = (__u32)bpf_get_current_pid_tgid();
    }
}

/* The 4-tuple of a client socket this process just connected or started a request on: a server
 * on this node reading from it becomes its client's child (call_ids). Stream sockets only: a
 * resolver's connected UDP sockets would crowd the LRU. */
static __always_inline void register_client(void *sk)
{
    struct sock_addrs addrs = {};
    __u16 type = 0;
    __u8 yes = 1;
    struct conn_tuple t;

    bpf_probe_read_kernel(&type, sizeof(type), (const char *)sk + OFF_SK_TYPE);
    if (type != TG_SOCK_STREAM || !tg_sock_addrs(sk, &addrs))
        return;
    call_tuple(&t, addrs.local_addr, addrs.local_port, addrs.peer_addr, addrs.peer_port);
    http_client_socks.update(&t, &yes);
}

static __always_inline int is_tcp(void *sk)
{
    __u16 protocol = 0;
    bpf_probe_read_kernel(&protocol, sizeof(protocol), (const char *)sk + OFF_SK_PROTOCOL);
    return protocol == TG_IPPROTO_TCP;
}

/* Create the pairing entry for a socket that is starting an HTTP request. */
static __always_inline struct http_conn_state *track(__u64 key, void *sk, __u8 dir)
{
    __u32 zero = 0;
    struct http_conn_state *st = http_scratch.lookup(&zero);
    struct sock_addrs addrs = {};
    __u64 sk_key = (__u64)sk, hint_key = role_key(key, sk);
    __u8 *hint = http_role_hint.lookup(&hint_key);

    if (!st || !tg_sock_addrs(sk, &addrs))
        return 0;
    __builtin_memset(st, 0, offsetof(struct http_conn_state, req));
    st->sk = sk_key;
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
    /* What stays the same for the entry's life is taken here, not per request: the 4-tuple's
     * hash; whether a server's client is a process on this node (its connect registered the
     * tuple before its first byte); the process's cgroup. bpf_stats: 25 ns less per request
     * under wrk, 48 less at 5,000 req/s. */
    struct conn_tuple t;
    if (st->role == ROLE_CLIENT)
        call_tuple(&t, addrs.local_addr, addrs.local_port, addrs.peer_addr, addrs.peer_port);
    else
        call_tuple(&t, addrs.peer_addr, addrs.peer_port, addrs.local_addr, addrs.local_port);
    st->tuple_hash = tuple_hash(&t);
    st->local_client = st->role == ROLE_SERVER && http_client_socks.lookup(&t);
    st->cgroup_id = bpf_get_current_cgroup_id();
    if (http_conns.update(&key, st) != 0) {
        count(CNT_HTTP_CONN_MAP_FULL);
        return 0;
    }
    http_sock_conn.update(&sk_key, &key);
    if (st->role == ROLE_CLIENT && !hint)
        register_client(sk); /* a connect() before the agent started, so not registered there */
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
    if (st->sampled) { /* its own span: a client's server cannot tell the two apart, so no link */
        draw_ids(st->trace_id, st->span_id);
        __builtin_memset(st->parent_span_id, 0, 8);
    }
    st->flags = (st->flags & HTTP_FLAG_ROLE_INFERRED) | HTTP_FLAG_PIPELINED;
    st->resp_size = 0;
    st->resp_len = 0;
    st->resp_start_ns = now;
}


/* The chunked-body terminator "\r\n0\r\n\r\n" ends the data just written. The last bytes come
 * from the per-CPU copy when it holds all the data (no second user read), else from user
 * memory when the data is contiguous; the end of a large vectored write is not checked. */
static __always_inline int ends_chunked(const struct data_view *d, const __u8 *copy, __u64 copied)
{
    __u8 tail[7] = {};
    __u32 n = d->len >= 7 ? 7 : 5;

    if (d->len <= copied) {
        __u64 off = d->len - n;
#pragma unroll
        for (int i = 0; i < 7; i++)
            if (i < n)
                tail[i] = copy[(off + i) & (CAPTURE_BYTES - 1)];
    } else if (d->contig < d->len || bpf_probe_read_user(tail, n, (const char *)d->buf + d->len - n)) {
        return 0;
    }
    /* a header block cannot end that way (a header line of just "0" is invalid), unlike
     * "Content-Length: 20000\r\n\r\n" */
    __u8 *t = n == 7 ? tail + 2 : tail;
    return (n == 5 || (tail[0] == '\r' && tail[1] == '\n')) && t[0] == '0' && t[1] == '\r' && t[2] == '\n' &&
           t[3] == '\r' && t[4] == '\n';
}

/* The socket under a pairing entry ended (closed, or its fd number now names another socket):
 * what it held is emitted, and a client's 4-tuple no longer stands for a call on this node. */
static __always_inline void conn_ended(struct http_conn_state *st, __u64 key)
{
    if (st->state != ST_IDLE)
        emit(st, HTTP_FLAG_CLOSED, key);
    if (st->role == ROLE_CLIENT) {
        struct conn_tuple t;
        call_tuple(&t, st->local_addr, st->local_port, st->peer_addr, st->peer_port);
        http_client_socks.delete(&t);
    }
    http_conns.delete(&key);
}

/* First iovec of an array: the head of the message is there. */
static __always_inline const void *first_iov(__u64 iov, __u64 *iov_len)
{
    struct { __u64 base; __u64 len; } v = {};
    bpf_probe_read_user(&v, sizeof(v), (const void *)iov);
    *iov_len = v.len;
    return (const void *)v.base;
}

/* Where the bytes of a vectored syscall start: its first iovec (read from user memory). */
static __always_inline void resolve_view(struct data_view *d)
{
    __u64 kind = d->kind;

    if (kind == VIEW_NONE) {
        d->buf = 0;
        d->contig = 0;
    } else if (kind == VIEW_IOVEC || kind == VIEW_MSGHDR) {
        __u64 iov = (__u64)d->buf, iov_len = 0;
        if (kind == VIEW_MSGHDR) /* struct user_msghdr: msg_iov at offset 16 (UAPI) */
            bpf_probe_read_user(&iov, sizeof(iov), (const char *)d->buf + 16);
        d->buf = iov ? first_iov(iov, &iov_len) : 0;
        d->iov = iov;
        d->contig = !d->buf ? 0 : (iov_len < d->len ? iov_len : d->len);
    }
    d->kind = VIEW_FLAT;
}

/* Data on a socket with no pairing entry: a request starts one (*fresh set); a response may
 * belong to an entry under another fd (dup'd). `sk`: the socket when the attach point gave it,
 * else 0 (found from the fd). Returns the entry to continue with, or 0. Only the lookup before
 * and one 12-byte read are spent on data that is not HTTP. */
static __always_inline struct http_conn_state *untracked(__u64 *key, __u32 fd, void *sk, __u8 dir,
                                                         const struct data_view *d, int *fresh)
{
    __u8 head[12] = {};
    struct http_conn_state *st = 0;

    if (d->contig < 8)
        return 0;
    bpf_probe_read_user(head, d->contig < sizeof(head) ? (d->contig & 0xf) : sizeof(head), d->buf);
    if (d->contig >= 9 && tg_is_http_response(head)) {
        __u64 sk_key = (__u64)(sk ? sk : tg_fd_to_sock(fd));
        __u64 *owner = sk_key ? http_sock_conn.lookup(&sk_key) : 0;
        if (owner) {
            *key = *owner;
            st = http_conns.lookup(key);
        }
        return st;
    }
    if (!tg_is_http_request(head))
        return 0;
    if (!sk)
        sk = tg_fd_to_sock(fd);
    if (!sk || !is_tcp(sk)) /* SSDP's "M-SEARCH * HTTP/1.1" datagrams, a unix socket */
        return 0;
    st = track(*key, sk, dir);
    if (st) {
        start_request(st, d->len);
        *fresh = 1;
    }
    return st;
}

static __always_inline void handle_data(__u64 pid_tgid, __u32 fd, void *sk, __u8 dir, struct data_copy *copy,
                                        __u8 sendfile)
{
    struct data_view *d = &copy->d;
    __u64 key = conn_key(pid_tgid, fd);
    struct http_conn_state *st = http_conns.lookup(&key);
    int fresh = 0;

    if (st && sk && st->sk != (__u64)sk) {
        /* the fd number was closed and reused (a close the attach point does not see, or a
         * socket another process still holds): the old exchange ends here */
        conn_ended(st, key);
        st = 0;
    }
    if (st && !st->sampled && st->state == ST_RESPONSE && dir != request_dir(st) && !st->pipe_start_ns)
        return; /* more of a shed exchange's answer: nothing it records moves (no record carries its
                 * sizes or times) */
    /* The bytes are looked at unless this is a shed exchange's answer: its state moves on
     * without them (a shed exchange's 100 Continue, or a second answer to requests that came in
     * one read, goes unnoticed; what is counted stays the same). A pipelined second request
     * waiting for its answer is the exception: the split needs the answer's head. */
    int look = !sendfile && (!st || dir == request_dir(st) || st->sampled || st->pipe_start_ns);
    if (look)
        resolve_view(d);
    if (!st) {
        if (sendfile)
            return;
        st = untracked(&key, fd, sk, dir, d, &fresh);
        if (!st)
            return;
    }
    __u8 req_dir = request_dir(st);
    if (dir != req_dir && st->state == ST_IDLE)
        return; /* nothing asked: not an answer */
    /* The leading bytes, read once: the head checks, the captures and the chunked-end check use
     * them. Only a head's worth when no capture can take more (shed, or that side is full), so
     * a long transfer does not read CAPTURE_BYTES per syscall. A request that may start a new
     * exchange, whose shedding is drawn only when it starts, gets all while nothing is shed;
     * while shedding, a head's worth, and a kept one's capture comes after the draw (contiguous
     * data: one more read, for the few kept; vectored data still gets all at once). */
    int starts = dir == req_dir && st->state != ST_REQUEST;
    int room = starts ? d->iov || keep_rate() >= 1000
                      : dir == req_dir ? st->sampled && st->req_len < CAPTURE_BYTES
                                       : st->sampled && (st->state == ST_REQUEST || st->resp_len < CAPTURE_BYTES ||
                                                         st->pipe_start_ns);
    copy->copied = look ? gather(copy, d, room ? CAPTURE_BYTES : 16) : 0;
    __u64 copied = *(volatile __u64 *)&copy->copied; /* re-read: see struct data_copy */
    const __u8 *h = copy->b;
    int is_req = copied >= 8 && tg_is_http_request(h);
    int is_resp = copied >= 9 && tg_is_http_response(h);
    int interim = is_resp && copied >= 10 && h[9] == '1';

    if (fresh) { /* untracked() started this exchange */
        if (st->sampled)
            append_copy(st->req, &st->req_len, copy->b, copied);
        return;
    }
    if (dir == req_dir) {
        if (st->state == ST_RESPONSE && is_req) {
            emit(st, HTTP_FLAG_NEXT_REQUEST, key);
            st->state = ST_IDLE;
        }
        if (st->state == ST_IDLE) {
            if (is_req) {
                start_request(st, d->len);
                if (st->sampled && room)
                    append_copy(st->req, &st->req_len, copy->b, copied);
                else if (st->sampled) /* only the head was read: see room */
                    append(st->req, &st->req_len, d->buf, d->contig);
            }
            return;
        }
        if (st->state == ST_REQUEST) {
            if (is_req) {
                if (!st->pipe_start_ns) {
                    st->pipe_start_ns = bpf_ktime_get_ns();
                    st->pipe_offset = st->req_size;
                } else {
                    count(CNT_HTTP_PIPELINED); /* deeper than two: stays merged */
                }
            }
            st->req_size += d->len;
            if (st->sampled)
                append_copy(st->req, &st->req_len, copy->b, copied);
        }
        return;
    }
    /* response direction */
    /* A kept exchange's only: no record carries a shed one's times, and the idle sweep finds it
     * done by its request's sequence number standing still (telegen/capture/sweep.py). bpf_stats
     * under wrk: the clock read cost 42 ns of a shed request's 425. */
    __u64 now = st->sampled ? bpf_ktime_get_ns() : 0;
    if (st->state == ST_REQUEST) {
        if (interim) {
            count(CNT_HTTP_INTERIM); /* 100 Continue and friends: the real answer follows */
            return;
        }
        st->state = ST_RESPONSE;
        st->resp_start_ns = now;
    } else if (is_resp && !interim) {
        if (st->pipe_start_ns)
            next_pipelined(st, key, now);
        else
            count(CNT_HTTP_PIPELINED); /* both requests came in one read: this answer stays merged */
    }
    st->resp_size += d->len;
    st->end_ns = now;
    if (sendfile) {
        st->flags |= HTTP_FLAG_SENDFILE;
        return;
    }
    if (st->sampled)
        append_copy(st->resp, &st->resp_len, copy->b, copied);
    /* A chunked body ends with "0\r\n\r\n". Other complete responses are emitted by the next
     * request, the close, or user space's sweep of idle entries (telegen/capture/sweep.py):
     * scanning headers here made every program ~500k verifier steps and start-up take 50 s.
     * A shed exchange is not looked at: it is counted just the same when the next request, the
     * close or the sweep ends it, and the check costs a read of user memory per response write. */
    if (st->sampled && d->len >= 5 && ends_chunked(d, copy->b, copied)) {
        emit(st, HTTP_FLAG_CHUNKED_DONE, key);
        st->state = ST_IDLE;
    }
}

/* ---- syscall entry/exit, shared by every attach method ---- */

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

/* A data syscall moved `ret` bytes: `sk` is its socket when the attach point gave it, else 0. */
static __always_inline int on_data(__u64 pid_tgid, struct syscall_args args, long ret, void *sk)
{
    if (ret <= 0)
        return 0;

    __u32 zero = 0;
    struct data_copy *copy = http_data.lookup(&zero);
    if (!copy)
        return 0;
    struct data_view *d = &copy->d;
    __u8 dir = op_dir(args.op);

    d->buf = (const void *)args.buf;
    d->len = d->contig = (__u64)ret;
    d->iov = 0;
    d->kind = args.op == OP_READV || args.op == OP_WRITEV       ? VIEW_IOVEC
              : args.op == OP_RECVMSG || args.op == OP_SENDMSG ? VIEW_MSGHDR
              : args.op == OP_SENDFILE                         ? VIEW_NONE
                                                               : VIEW_FLAT;
    asm volatile("" ::: "memory"); /* from here on read from the map (see struct data_copy) */
    handle_data(pid_tgid, args.fd, sk, dir, copy, args.op == OP_SENDFILE);
    return 0;
}

/* The arguments on_enter saved for this task's syscall, taken (0: none, not one of ours). The
 * raw sys_exit program runs this for every syscall: the task-storage lookup is the filter,
 * before any other helper. */
static __always_inline int take_args(struct syscall_args *out)
{
    struct syscall_args *a = http_active.task_storage_get(bpf_get_current_task_btf(), 0, 0);

    if (!a || !a->op)
        return 0;
    *out = *a;
    a->op = 0;
    return 1;
}

/* accept or connect returned: the new socket's role, and a client's 4-tuple. */
static __always_inline void socket_opened(struct syscall_args args, long ret)
{
    /* connect on a non-blocking socket answers -EINPROGRESS (-115) */
    if ((args.op == OP_ACCEPT && ret >= 0) || (args.op == OP_CONNECT && (ret == 0 || ret == -115))) {
        __u64 key = conn_key(bpf_get_current_pid_tgid(), args.op == OP_ACCEPT ? (__u32)ret : args.fd);
        __u8 role = args.op == OP_ACCEPT ? ROLE_SERVER : ROLE_CLIENT;
        http_role_hint.update(&key, &role);
        http_conns.delete(&key); /* a reused fd number starts clean */
        if (args.op == OP_CONNECT) {
            void *sk = tg_fd_to_sock(args.fd);
            if (sk)
                register_client(sk); /* before its first byte can reach a server */
        }
    }
}

/* Exit of any syscall of ours (the raw pair, or a data syscall's own program). */
static __always_inline int on_exit(long ret)
{
    struct syscall_args args;

    if (!take_args(&args))
        return 0;
    if (args.op == OP_ACCEPT || args.op == OP_CONNECT) {
        socket_opened(args, ret);
        return 0;
    }
    return on_data(bpf_get_current_pid_tgid(), args, ret, 0);
}

/* Exit of accept, accept4 or connect in their own programs: without the data path, which would
 * make each of them as long to verify as a data program (start-up). */
static __always_inline int on_exit_opened(long ret)
{
    struct syscall_args args;

    if (take_args(&args))
        socket_opened(args, ret);
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
    if (st)
        conn_ended(st, key);
    if (http_role_hint.lookup(&key)) /* most closes are of files: a lookup is cheaper than a delete */
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
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return on_exit_opened(args->ret); }
#endif
#ifdef KP_accept4
int syscall__accept4(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_ACCEPT); }
int kret__accept4(struct pt_regs *ctx) { return on_exit_opened(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_accept
TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return on_enter(args->fd, 0, OP_ACCEPT); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return on_exit_opened(args->ret); }
#endif
#ifdef KP_accept
int syscall__accept(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_ACCEPT); }
int kret__accept(struct pt_regs *ctx) { return on_exit_opened(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_connect
TRACEPOINT_PROBE(syscalls, sys_enter_connect) { return on_enter(args->fd, 0, OP_CONNECT); }
TRACEPOINT_PROBE(syscalls, sys_exit_connect) { return on_exit_opened(args->ret); }
#endif
#ifdef KP_connect
int syscall__connect(struct pt_regs *ctx, unsigned long fd) { return on_enter(fd, 0, OP_CONNECT); }
int kret__connect(struct pt_regs *ctx) { return on_exit_opened(PT_REGS_RC(ctx)); }
#endif

#ifdef TP_close
TRACEPOINT_PROBE(syscalls, sys_enter_close) { return on_close(args->fd); }
#endif
#ifdef KP_close
int syscall__close(struct pt_regs *ctx, unsigned long fd) { return on_close(fd); }
#endif

/* ---- The two dispatching methods below find the syscall from its id and, on x86_64 only like
 * the whole agent, its arguments in the struct pt_regs it entered the kernel with (the ids are
 * x86_64's, asm/unistd.h). ---- */
#if defined(RAW_SYSCALLS) || defined(SOCK_IO)
#include <asm/unistd.h>

/* __USER_CS: a 64-bit syscall. 32-bit ones (int 0x80, sysenter: __USER32_CS) number syscalls
 * differently and pass arguments in other registers; syscalls:* tracepoints skip them too.
 * Compared on 16 bits: FRED kernels keep more in the word. */
#define RAW_USER64_CS 0x33
#endif

/* ---- raw_syscalls:sys_enter / sys_exit: -DRAW_SYSCALLS plus one -DRAW_<syscall> per syscall
 * they dispatch. Two programs for every syscall of every process, so syscalls not chosen leave
 * sys_enter after one switch, before any helper call, and sys_exit after the task-storage
 * lookup (no entry, or op 0). ---- */
#ifdef RAW_SYSCALLS
/* struct pt_regs from si to cs: the first two syscall arguments (di, si) and the code segment.
 * sys_enter's pt_regs pointer is an untyped argument, so they are copied with a helper (the sock
 * pair's come typed from bpf_task_pt_regs and are loaded directly). */
struct raw_regs {
    __u64 si, di, orig_ax, ip, cs;
};
_Static_assert(offsetof(struct pt_regs, cs) - offsetof(struct pt_regs, si) == 32, "x86_64 struct pt_regs");

/* The registers at `regs` when they are a 64-bit syscall's; 0 otherwise. */
static __always_inline int syscall_regs(struct raw_regs *r, const void *regs)
{
    return regs && !bpf_probe_read_kernel(r, sizeof(*r), (const char *)regs + offsetof(struct pt_regs, si)) &&
           (__u16)r->cs == RAW_USER64_CS;
}

static __always_inline __u32 raw_op(__u64 id)
{
    switch (id) {
#ifdef RAW_read
    case __NR_read: return OP_READ;
#endif
#ifdef RAW_write
    case __NR_write: return OP_WRITE;
#endif
#ifdef RAW_readv
    case __NR_readv: return OP_READV;
#endif
#ifdef RAW_writev
    case __NR_writev: return OP_WRITEV;
#endif
#ifdef RAW_recvfrom
    case __NR_recvfrom: return OP_READ;
#endif
#ifdef RAW_sendto
    case __NR_sendto: return OP_WRITE;
#endif
#ifdef RAW_recvmsg
    case __NR_recvmsg: return OP_RECVMSG;
#endif
#ifdef RAW_sendmsg
    case __NR_sendmsg: return OP_SENDMSG;
#endif
#ifdef RAW_sendfile64
    case __NR_sendfile: return OP_SENDFILE;
#endif
#ifdef RAW_accept4
    case __NR_accept4: return OP_ACCEPT;
#endif
#ifdef RAW_accept
    case __NR_accept: return OP_ACCEPT;
#endif
#ifdef RAW_connect
    case __NR_connect: return OP_CONNECT;
#endif
#ifdef RAW_close
    case __NR_close: return OP_CLOSE;
#endif
    }
    return 0;
}

/* args[0]: struct pt_regs * of the syscall, args[1]: its id */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    __u32 op = raw_op(ctx->args[1]);
    struct raw_regs r;

    if (!op)
        return 0;
    if (!syscall_regs(&r, (const void *)ctx->args[0]))
        return 0;
    if (op == OP_CLOSE)
        return on_close(r.di);
    return on_enter(r.di, op < OP_SENDFILE ? r.si : 0, op);
}

/* args[1]: the return value. Every syscall's exit comes here; on_exit's task-storage lookup
 * tells whether sys_enter (or a kprobe) saved one of ours. */
RAW_TRACEPOINT_PROBE(sys_exit)
{
    return on_exit((long)ctx->args[1]);
}
#endif

/* ---- sock:sock_recv_length / sock_send_length: -DSOCK_IO plus one -DSK_<syscall> per data
 * syscall they dispatch. The socket layer's own exit events run for socket I/O only, not for
 * every syscall of every process as the raw pair does, and hand over the socket itself (no
 * fd walk for a new connection). Which syscall it was, with its fd and buffer, comes from the
 * registers the task entered the kernel with; calls from anywhere else (io_uring, sendmmsg,
 * splice, the kernel's own sockets) are skipped by that id. accept, connect and close are
 * SOCK_STATE's (below). Kernel 6.3 and later. ---- */
#ifdef SOCK_IO
#define TG_MSG_PEEK 2

static __always_inline __u32 sock_op(__u64 id)
{
    switch (id) {
#ifdef SK_read
    case __NR_read: return OP_READ;
#endif
#ifdef SK_write
    case __NR_write: return OP_WRITE;
#endif
#ifdef SK_readv
    case __NR_readv: return OP_READV;
#endif
#ifdef SK_writev
    case __NR_writev: return OP_WRITEV;
#endif
#ifdef SK_recvfrom
    case __NR_recvfrom: return OP_READ;
#endif
#ifdef SK_sendto
    case __NR_sendto: return OP_WRITE;
#endif
#ifdef SK_recvmsg
    case __NR_recvmsg: return OP_RECVMSG;
#endif
#ifdef SK_sendmsg
    case __NR_sendmsg: return OP_SENDMSG;
#endif
#ifdef SK_sendfile64
    case __NR_sendfile: return OP_SENDFILE;
#endif
    }
    return 0;
}

/* Not only TCP's: a socket of another protocol finds no pairing entry, and untracked() checks
 * the protocol before it starts one (a read of the socket a raw tracepoint saves every call). */
static __always_inline int on_sock_io(void *sk, int ret, __u8 dir)
{
    if (ret <= 0)
        return 0;
    /* A typed (BTF) pointer: its fields are plain loads the kernel guards against faults, not a
     * bpf_probe_read_kernel call (bpf_stats under wrk: 5 ns less per run, 27 per request). */
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    if ((__u16)regs->cs != RAW_USER64_CS) /* a 64-bit syscall */
        return 0;
    __u32 op = sock_op(regs->orig_ax);
    if (!op || op_dir(op) != dir)
        return 0;
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    if (is_self(pid_tgid))
        return 0;
    struct syscall_args args = {.buf = op == OP_SENDFILE ? 0 : regs->si, .fd = (__u32)regs->di, .op = op};
    return on_data(pid_tgid, args, ret, sk);
}

/* Raw tracepoints: the program gets the event's arguments (struct sock *sk, int ret, int flags)
 * as they are. A sock:* tracepoint program runs after the kernel has built a perf record of
 * them: bench/tracepoint_cost.py, +73 ns per send and receive against +34 raw. */
RAW_TRACEPOINT_PROBE(sock_recv_length)
{
    if ((int)ctx->args[2] & TG_MSG_PEEK) /* the bytes stay queued: the read that takes them counts */
        return 0;
    return on_sock_io((void *)ctx->args[0], (int)ctx->args[1], DIR_INGRESS);
}

RAW_TRACEPOINT_PROBE(sock_send_length)
{
    return on_sock_io((void *)ctx->args[0], (int)ctx->args[1], DIR_EGRESS);
}
#endif

/* ---- sock:inet_sock_set_state: -DSOCK_STATE, with one -DSK_<syscall> for each of accept4,
 * accept, connect and close it stands in for (beside SOCK_IO, whose events carry the socket).
 * A TCP socket's state changes say what those syscalls told: the handshake's end gives its
 * role (SYN_SENT -> ESTABLISHED: it connected; SYN_RECV -> ESTABLISHED: it was accepted) and
 * a client's 4-tuple before its first byte; FIN_WAIT1 or LAST_ACK (this end closed or shut
 * down its side, in the process's own context) and CLOSE (any end, resets included) end it,
 * unless it is a client that may still read its answer (may_still_read). Unlike any
 * syscalls:* tracepoint it runs for TCP only, a few times per connection. ---- */
#ifdef SOCK_STATE
#define TG_RCV_SHUTDOWN 1 /* sk_shutdown: close() sets it before the FIN, shutdown(SHUT_WR) does not */

/* A client with a request outstanding whose socket is ending may still read the answer:
 * FIN_WAIT1 after shutdown(SHUT_WR), not close(); CLOSE reached from FIN_WAIT2 or CLOSING (the
 * server answered and closed after that half-close) while its fd is still open. The entry then
 * stays, and ends as any other: the answer read and swept, the fd reused, or the process gone. */
static __always_inline int may_still_read(__u64 sk, int old, int new)
{
    if (new == TG_TCP_FIN_WAIT1) {
        __u8 shutdown = 0;
        bpf_probe_read_kernel(&shutdown, sizeof(shutdown), (const char *)sk + OFF_SK_SHUTDOWN);
        return !(shutdown & TG_RCV_SHUTDOWN);
    }
    if (new == TG_TCP_CLOSE && (old == TG_TCP_FIN_WAIT2 || old == TG_TCP_CLOSING)) {
        __u64 flags = 0;
        bpf_probe_read_kernel(&flags, sizeof(flags), (const char *)sk + OFF_SKC_FLAGS);
        return !(flags & (1ULL << TG_SOCK_DEAD_BIT));
    }
    return 0;
}

static __always_inline void sock_ended(__u64 sk, int old, int new)
{
    __u64 *owner = http_sock_conn.lookup(&sk);

    if (owner) {
        __u64 key = *owner;
        struct http_conn_state *st = http_conns.lookup(&key);
        if (st && st->sk == sk && st->role == ROLE_CLIENT && st->state == ST_REQUEST &&
            may_still_read(sk, old, new))
            return;
        if (st && st->sk == sk)
            conn_ended(st, key);
        http_sock_conn.delete(&sk);
    }
    if (new != TG_TCP_CLOSE)
        return;
    __u8 *role = http_role_hint.lookup(&sk); /* a lookup first, cheaper than a delete: listeners,
                                              * failed connects and sockets older than the agent have none */
    if (!role)
        return;
    if (*role == ROLE_CLIENT) { /* its tuple, also when it never carried HTTP (no pairing entry) */
        struct sock_addrs addrs = {};
        struct conn_tuple t;
        if (tg_sock_addrs((void *)sk, &addrs)) {
            call_tuple(&t, addrs.local_addr, addrs.local_port, addrs.peer_addr, addrs.peer_port);
            http_client_socks.delete(&t);
        }
    }
    http_role_hint.delete(&sk);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != TG_IPPROTO_TCP)
        return 0;
    __u64 sk = (__u64)args->skaddr;
    int old = args->oldstate, new = args->newstate;

    if (new == TG_TCP_ESTABLISHED) {
        __u8 role = old == TG_TCP_SYN_SENT ? ROLE_CLIENT : ROLE_SERVER;
        if (old != TG_TCP_SYN_SENT && old != TG_TCP_SYN_RECV)
            return 0;
        http_role_hint.update(&sk, &role);
        if (role == ROLE_CLIENT)
            register_client((void *)sk); /* before its first byte can reach a server */
        return 0;
    }
    if (new == TG_TCP_FIN_WAIT1 || new == TG_TCP_LAST_ACK || new == TG_TCP_CLOSE)
        sock_ended(sk, old, new);
    return 0;
}
#endif
