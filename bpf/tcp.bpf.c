/* TCP lifecycle: per-socket state in a bounded map, one ring-buffer record per connection.
 *
 * Client side: CLOSE -> SYN_SENT runs in the connecting task (connect()), so pid/cgroup come
 * from the current task there. SYN_SENT -> ESTABLISHED gives the connect latency;
 * SYN_SENT -> CLOSE is a failed connect, emitted at once with sk_err (ECONNREFUSED after an
 * RST, ETIMEDOUT, EHOSTUNREACH; 0 when the application gave up first).
 * Server side: LISTEN -> SYN_RECV and SYN_RECV -> ESTABLISHED run in softirq, where the
 * current task means nothing. The owner comes from the listening socket (recorded when
 * listen() moved it to LISTEN, in process context), and then the process that actually
 * serves it refines that: by default (-DSK_accept4/-DSK_accept) the one whose close() or
 * shutdown() moves it to FIN_WAIT1, LAST_ACK or (unread data, SO_LINGER 0) CLOSE, all in its
 * own context, so no syscalls:* tracepoint slows every syscall on the node; when forced
 * (-DTP_accept4/-DTP_accept), accept()/accept4() returning its fd. A connection the peer
 * resets keeps the listener's owner; one reset before accept by a listener the agent never
 * saw keeps pid 0, which user space resolves from the local port's listener.
 * Close: any -> CLOSE marks the entry closed; the record is written at tcp:tcp_destroy_sock,
 * after tcp_disconnect()'s reset (SO_LINGER 0 sends the RST after the state change), with
 * the socket's own counters (bytes_acked, bytes_received, srtt_us) and sk_err.
 *
 * -D flags from the loader: MAX_SOCKS, RINGBUF_PAGES, SELF_TGID (0: none), RETRANSMIT_HAS_ERR,
 * and the OFF_* offsets read from BTF (telegen/capture/btf.py tcp_defines).
 */
#include <uapi/linux/ptrace.h>

#include "events.h"
#include "sock_walk.h"

/* internal tcp_sock_state.flags, never in a record */
#define TG_FLAG_CLOSED 0x80    /* CLOSE seen, waiting for tcp_destroy_sock */
#define TG_FLAG_FIN_RCVD 0x40  /* the peer's FIN reached this socket (bytes_received counts it) */
#define TG_FLAG_FIN_ACKED 0x20 /* our FIN was acknowledged (bytes_acked counts it) */
#define TG_INTERNAL_FLAGS (TG_FLAG_CLOSED | TG_FLAG_FIN_RCVD | TG_FLAG_FIN_ACKED)

struct listen_key {
    __u64 net;
    __u32 port;
    __u32 _pad;
};

struct listen_owner {
    __u32 pid;
    __u32 _pad;
    __u64 cgroup_id;
};

BPF_RINGBUF_OUTPUT(tcp_events, RINGBUF_PAGES);
BPF_HASH(tcp_socks, __u64, struct tcp_sock_state, MAX_SOCKS);
BPF_HASH(tcp_listeners, struct listen_key, struct listen_owner, 16384);
BPF_PERCPU_ARRAY(tcp_counters, __u64, CNT_MAX);

static __always_inline void count(__u32 idx)
{
    __u64 *c = tcp_counters.lookup(&idx);
    if (c)
        (*c)++;
}

static __always_inline int is_self_tgid(__u32 tgid)
{
#if SELF_TGID
    return tgid == SELF_TGID;
#else
    return 0;
#endif
}

static __always_inline __u64 sock_net(__u64 sk)
{
    __u64 net = 0;
    bpf_probe_read_kernel(&net, sizeof(net), (char *)sk + OFF_SKC_NET);
    return net;
}

/* Payload bytes and RTT from the tcp_sock itself, into the state (at CLOSE, before
 * tcp_disconnect() zeroes them). */
static __always_inline void read_counters(struct tcp_sock_state *st, __u64 sk)
{
    __u64 sent = 0, received = 0, ctl;
    __u32 srtt = 0;

    bpf_probe_read_kernel(&srtt, sizeof(srtt), (char *)sk + OFF_TCP_SRTT_US);
    st->srtt_us = srtt >> 3;
    if (!st->established_ns)
        return;
    /* The counters cover sequence space: the client's SYN and each FIN take one. Take them
     * out so the record says payload bytes. */
    bpf_probe_read_kernel(&sent, sizeof(sent), (char *)sk + OFF_TCP_BYTES_ACKED);
    bpf_probe_read_kernel(&received, sizeof(received), (char *)sk + OFF_TCP_BYTES_RECEIVED);
    ctl = (st->role == ROLE_CLIENT ? 1 : 0) + (st->flags & TG_FLAG_FIN_ACKED ? 1 : 0);
    st->bytes_sent = sent >= ctl ? sent - ctl : 0;
    ctl = st->flags & TG_FLAG_FIN_RCVD ? 1 : 0;
    st->bytes_received = received >= ctl ? received - ctl : 0;
}

/* The record for a socket, from its state. */
static __always_inline void emit(struct tcp_sock_state *st, __u64 sk, __u8 outcome)
{
    struct tcp_connection_event *ev = tcp_events.ringbuf_reserve(sizeof(struct tcp_connection_event));
    int err = 0;

    if (!ev) {
        count(CNT_TCP_RINGBUF_FULL);
        return;
    }
    ev->type = EVENT_TCP_CONNECTION;
    ev->role = st->role;
    ev->family = st->family;
    ev->outcome = outcome;
    ev->pid = st->pid;
    ev->cgroup_id = st->cgroup_id;
    ev->start_ns = st->start_ns;
    ev->established_ns = st->established_ns;
    ev->end_ns = st->end_ns ? st->end_ns : bpf_ktime_get_ns();
    if (!(st->flags & TG_FLAG_CLOSED))
        read_counters(st, sk); /* still open (connect() again) or never established */
    bpf_probe_read_kernel(&err, sizeof(err), (char *)sk + OFF_SK_ERR);
    ev->bytes_sent = st->bytes_sent;
    ev->bytes_received = st->bytes_received;
    ev->retransmits = st->retransmits;
    ev->srtt_us = st->srtt_us;
    __builtin_memcpy(ev->local_addr, st->local_addr, 16);
    __builtin_memcpy(ev->peer_addr, st->peer_addr, 16);
    ev->local_port = st->local_port;
    ev->peer_port = st->peer_port;
    ev->resets_sent = st->resets_sent;
    ev->resets_received = st->resets_received;
    ev->sock_id = sk;
    ev->error = err > 0 ? (__u16)err : 0;
    ev->flags = st->flags & ~TG_INTERNAL_FLAGS;
    __builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
    tcp_events.ringbuf_submit(ev, BPF_RB_NO_WAKEUP); /* user space drains on a timer */
    count(CNT_TCP_EMITTED);
}

/* Addresses from the tracepoint's own fields (the socket is fully addressed by then). */
#define COPY_ADDRS(st, args)                                                   \
    do {                                                                       \
        if ((args)->family == TG_AF_INET6) {                                   \
            __builtin_memcpy((st)->local_addr, (args)->saddr_v6, 16);          \
            __builtin_memcpy((st)->peer_addr, (args)->daddr_v6, 16);           \
        } else {                                                               \
            __builtin_memcpy((st)->local_addr, (args)->saddr, 4);              \
            __builtin_memcpy((st)->peer_addr, (args)->daddr, 4);               \
        }                                                                      \
        (st)->local_port = (args)->sport;                                      \
        (st)->peer_port = (args)->dport;                                       \
        (st)->family = (args)->family;                                         \
    } while (0)

/* The server side `st` of socket `sk` is the current process's (`how`: TCP_FLAG_PID_ACCEPT or
 * TCP_FLAG_PID_CLOSE). Returns 0 when that process is the agent, whose connections are not
 * recorded: the entry is gone. */
static __always_inline int attribute_server(struct tcp_sock_state *st, __u64 sk, __u8 how)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();

    if (is_self_tgid(pid_tgid >> 32)) {
        tcp_socks.delete(&sk);
        return 0;
    }
    st->pid = pid_tgid >> 32;
    st->cgroup_id = bpf_get_current_cgroup_id();
    st->flags = (st->flags & ~TCP_FLAG_PID_LISTENER) | how;
    return 1;
}

#if defined(SK_accept4) || defined(SK_accept)
#define PID_AT_CLOSE 1 /* see the top */

/* A server socket's own process closed it: unless accept() named it already. */
static __always_inline int attribute_to_closer(struct tcp_sock_state *st, __u64 sk)
{
    if (st->role != ROLE_SERVER || (st->flags & (TCP_FLAG_PID_ACCEPT | TCP_FLAG_PID_CLOSE)))
        return 1;
    return attribute_server(st, sk, TCP_FLAG_PID_CLOSE);
}
#endif

TRACEPOINT_PROBE(sock, inet_sock_set_state)
{
    if (args->protocol != TG_IPPROTO_TCP)
        return 0;
    __u64 sk = (__u64)args->skaddr;
    int old = args->oldstate, new = args->newstate;
    __u64 now = bpf_ktime_get_ns();
    struct tcp_sock_state *st;

    if (new == TG_TCP_SYN_SENT) {
        /* connect(): process context */
        __u64 pid_tgid = bpf_get_current_pid_tgid();
        struct tcp_sock_state fresh = {};

        st = tcp_socks.lookup(&sk);
        if (st && st->end_ns) /* connect() again on a socket whose record is still pending */
            emit(st, sk, st->established_ns ? TCP_OUTCOME_CLOSED : TCP_OUTCOME_FAILED);
        if (is_self_tgid(pid_tgid >> 32)) {
            tcp_socks.delete(&sk);
            return 0;
        }
        fresh.role = ROLE_CLIENT;
        fresh.pid = pid_tgid >> 32;
        fresh.cgroup_id = bpf_get_current_cgroup_id();
        fresh.start_ns = now;
        COPY_ADDRS(&fresh, args);
        if (tcp_socks.update(&sk, &fresh) != 0)
            count(CNT_TCP_SOCK_MAP_FULL);
        return 0;
    }
    if (new == TG_TCP_LISTEN || old == TG_TCP_LISTEN) {
        struct listen_key key = {.net = sock_net(sk), .port = args->sport};
        if (new == TG_TCP_LISTEN) {
            /* listen(): process context */
            struct listen_owner owner = {.pid = bpf_get_current_pid_tgid() >> 32,
                                         .cgroup_id = bpf_get_current_cgroup_id()};
            tcp_listeners.update(&key, &owner);
            return 0;
        }
        if (new == TG_TCP_CLOSE) {
            tcp_listeners.delete(&key);
            return 0;
        }
    }
    if (new == TG_TCP_SYN_RECV) {
        /* a child of a listener, in softirq: the owner is the listener's */
        struct listen_key key = {.net = sock_net(sk), .port = args->sport};
        struct listen_owner *owner = tcp_listeners.lookup(&key);
        struct tcp_sock_state fresh = {};

        if (owner && is_self_tgid(owner->pid))
            return 0;
        fresh.role = ROLE_SERVER;
        fresh.start_ns = now;
        if (owner) {
            fresh.pid = owner->pid;
            fresh.cgroup_id = owner->cgroup_id;
            fresh.flags = TCP_FLAG_PID_LISTENER;
        }
        COPY_ADDRS(&fresh, args);
        if (tcp_socks.update(&sk, &fresh) != 0)
            count(CNT_TCP_SOCK_MAP_FULL);
        return 0;
    }
    st = tcp_socks.lookup(&sk);
    if (!st || st->end_ns)
        return 0;
    if (new == TG_TCP_ESTABLISHED && (old == TG_TCP_SYN_SENT || old == TG_TCP_SYN_RECV)) {
        st->established_ns = now;
        COPY_ADDRS(st, args);
        count(CNT_TCP_OPENED);
        return 0;
    }
    if (new == TG_TCP_FIN_WAIT2) {
        st->flags |= TG_FLAG_FIN_ACKED; /* FIN_WAIT1 -> FIN_WAIT2 only on the ACK of our FIN */
        return 0;
    }
#ifdef PID_AT_CLOSE
    if (new == TG_TCP_FIN_WAIT1 || new == TG_TCP_LAST_ACK) {
        attribute_to_closer(st, sk);
        return 0;
    }
#endif
    if (new != TG_TCP_CLOSE)
        return 0;
    st->end_ns = now;
    {
        __u64 sk_flags = 0;
        int err = 0;
        bpf_probe_read_kernel(&sk_flags, sizeof(sk_flags), (char *)sk + OFF_SKC_FLAGS);
        bpf_probe_read_kernel(&err, sizeof(err), (char *)sk + OFF_SK_ERR);
#ifdef PID_AT_CLOSE
        /* straight to CLOSE with neither a reset received nor an error: tcp_close() with unread
         * data or SO_LINGER 0, in the closing process */
        if ((old == TG_TCP_ESTABLISHED || old == TG_TCP_CLOSE_WAIT) && !st->resets_received && !err &&
            !attribute_to_closer(st, sk))
            return 0;
#endif
        if (sk_flags & (1ULL << TG_SOCK_DONE_BIT)) /* read before tcp_disconnect() clears it */
            st->flags |= TG_FLAG_FIN_RCVD;
        /* LAST_ACK/CLOSING end on the ACK of our FIN, unless a reset or timeout ended them */
        if ((old == TG_TCP_LAST_ACK || old == TG_TCP_CLOSING) && !st->resets_received && !err)
            st->flags |= TG_FLAG_FIN_ACKED;
    }
    read_counters(st, sk);
    if (old == TG_TCP_SYN_SENT) {
        COPY_ADDRS(st, args);
        count(CNT_TCP_FAILED);
        emit(st, sk, TCP_OUTCOME_FAILED);
        tcp_socks.delete(&sk);
    } else if (!st->established_ns) {
        count(CNT_TCP_SYN_RECV_DROPPED); /* inbound handshake that never completed */
        tcp_socks.delete(&sk);
    } else {
        st->flags |= TG_FLAG_CLOSED;
    }
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_destroy_sock)
{
    __u64 sk = (__u64)args->skaddr;
    struct tcp_sock_state *st = tcp_socks.lookup(&sk);

    if (!st)
        return 0;
    if (st->established_ns)
        emit(st, sk, TCP_OUTCOME_CLOSED);
    else if (st->role == ROLE_CLIENT) /* destroyed while still connecting (e.g. close in SYN_SENT) */
        emit(st, sk, TCP_OUTCOME_FAILED);
    tcp_socks.delete(&sk);
    return 0;
}

#ifdef TP_tcp_retransmit_skb
TRACEPOINT_PROBE(tcp, tcp_retransmit_skb)
{
    __u64 sk = (__u64)args->skaddr;
    struct tcp_sock_state *st;

#if RETRANSMIT_HAS_ERR
    if (args->err)
        return 0; /* the retransmission was not sent */
#endif
    st = tcp_socks.lookup(&sk);
    if (st)
        __sync_fetch_and_add(&st->retransmits, 1);
    return 0;
}
#endif

#ifdef TP_tcp_send_reset
#ifndef HAVE_SK_RST_REASON
/* The tracepoint's struct names this enum (kernel 6.10+); the installed headers may predate it. */
enum sk_rst_reason { TG_SK_RST_REASON_NOT_SPECIFIED = 0, TG_SK_RST_REASON_MAX = 0x7fffffff };
#endif
TRACEPOINT_PROBE(tcp, tcp_send_reset)
{
    __u64 sk = (__u64)args->skaddr;
    struct tcp_sock_state *st = sk ? tcp_socks.lookup(&sk) : 0;

    if (st)
        st->resets_sent++;
    return 0;
}
#endif

#ifdef TP_tcp_receive_reset
TRACEPOINT_PROBE(tcp, tcp_receive_reset)
{
    __u64 sk = (__u64)args->skaddr;
    struct tcp_sock_state *st = tcp_socks.lookup(&sk);

    if (st)
        st->resets_received++;
    return 0;
}
#endif

/* accept()/accept4() returned a socket: attribute its server side to the acceptor. */
static __always_inline int on_accept_exit(long ret)
{
    __u64 sk;
    struct tcp_sock_state *st;

    if (ret < 0)
        return 0;
    sk = (__u64)tg_fd_to_sock((__u32)ret);
    if (!sk)
        return 0;
    st = tcp_socks.lookup(&sk);
    if (st && st->role == ROLE_SERVER)
        attribute_server(st, sk, TCP_FLAG_PID_ACCEPT);
    return 0;
}

#ifdef TP_accept4
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return on_accept_exit(args->ret); }
#endif
#ifdef TP_accept
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return on_accept_exit(args->ret); }
#endif
