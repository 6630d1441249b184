/* Every event layout shared between the BPF programs and telegen's Python decoder.
 *
 * This is the only definition: telegen/capture/layouts.py mirrors it and tests/layout
 * compiles this header with the host compiler to check every size and offset.
 * Rules: fixed-width types only, the event type byte first, explicit padding to 8 bytes,
 * no pointers, no bitfields. CAPTURE_BYTES (a power of two) comes from the loader as -D.
 */
#ifndef TELEGEN_EVENTS_H
#define TELEGEN_EVENTS_H

#ifndef CAPTURE_BYTES
#define CAPTURE_BYTES 256
#endif

#if (CAPTURE_BYTES & (CAPTURE_BYTES - 1)) != 0 || CAPTURE_BYTES < 16 || CAPTURE_BYTES > 4096
#error "CAPTURE_BYTES must be a power of two in 16..4096"
#endif

enum telegen_event_type {
    EVENT_HTTP_EXCHANGE = 1,
    EVENT_TCP_CONNECTION = 2,
};

enum telegen_role {
    ROLE_UNKNOWN = 0,
    ROLE_SERVER = 1, /* the socket was accepted, or it read a request first */
    ROLE_CLIENT = 2, /* the socket was connected, or it wrote a request first */
};

/* http_exchange_event.flags */
#define HTTP_FLAG_HAS_RESPONSE   0x01 /* a response was seen */
#define HTTP_FLAG_CLOSED         0x02 /* emitted because the connection closed */
#define HTTP_FLAG_NEXT_REQUEST   0x04 /* emitted because the next request began (keep-alive) */
#define HTTP_FLAG_IDLE_SWEPT     0x08 /* emitted by user space: response done, connection idle */
#define HTTP_FLAG_CHUNKED_DONE   0x10 /* emitted at the last chunk of a chunked body */
#define HTTP_FLAG_ROLE_INFERRED  0x20 /* role from the first data's direction, not accept/connect */
#define HTTP_FLAG_SENDFILE       0x40 /* part of the response body went by sendfile */
#define HTTP_FLAG_PIPELINED      0x80 /* split from a pipelined pair at the second status line */

/* Counters kept per CPU in the `counters` array of each program; summed in user space. */
enum telegen_counter {
    CNT_HTTP_EXCHANGES = 0,     /* every exchange the kernel completed (exact, before sampling) */
    CNT_HTTP_EMITTED = 1,       /* exchanges handed to the ring buffer */
    CNT_HTTP_RINGBUF_FULL = 2,  /* lost: ring-buffer reserve failed */
    CNT_HTTP_CONN_MAP_FULL = 3, /* lost: no room in the pairing map */
    CNT_HTTP_NO_RESPONSE = 4,   /* exchanges closed or evicted without a response (emitted) */
    CNT_HTTP_SAMPLED_OUT = 5,   /* completed but not emitted: shed by sampling (counted, not lost) */
    CNT_HTTP_INTERIM = 6,       /* 1xx interim responses skipped */
    CNT_HTTP_ACTIVE_MAP_FULL = 7, /* lost: no room to remember a syscall's arguments */
    CNT_TCP_EMITTED = 8,        /* connection records handed to the ring buffer */
    CNT_TCP_RINGBUF_FULL = 9,   /* lost: ring-buffer reserve failed */
    CNT_TCP_SOCK_MAP_FULL = 10, /* lost: no room to track a new socket (never emitted) */
    CNT_TCP_OPENED = 11,        /* connections that reached ESTABLISHED while tracked */
    CNT_TCP_FAILED = 12,        /* connects that went SYN_SENT -> CLOSE */
    CNT_TCP_SYN_RECV_DROPPED = 13, /* inbound handshakes that never completed (not a connection) */
    CNT_HTTP_PIPELINED = 15,    /* pipelined exchanges that could not be split (deeper than two, or
                                   both requests in one read) and were reported merged */
    CNT_MAX = 16,
};

struct http_exchange_event {
    __u8 type;         /* EVENT_HTTP_EXCHANGE */
    __u8 role;         /* enum telegen_role */
    __u8 flags;        /* HTTP_FLAG_* */
    __u8 family;       /* AF_INET (2) or AF_INET6 (10); 0 when unknown */
    __u32 pid;         /* tgid */
    __u32 tid;
    __u32 fd;
    __u64 cgroup_id;
    __u64 start_ns;      /* CLOCK_MONOTONIC: first request byte seen */
    __u64 resp_start_ns; /* first response byte (0: none) */
    __u64 end_ns;        /* last response byte, or close */
    __u64 req_size;      /* bytes of the request, all syscalls */
    __u64 resp_size;     /* bytes of the response, all syscalls */
    __u8 local_addr[16]; /* IPv4 in the first 4 bytes */
    __u8 peer_addr[16];
    __u16 local_port;    /* host order */
    __u16 peer_port;
    __u16 req_len;       /* bytes valid in req[] */
    __u16 resp_len;      /* bytes valid in resp[] */
    __u16 sample_permille; /* emitted at this sampling rate (1000 = all) */
    __u8 _pad[6];
    __u8 trace_id[16];       /* derived in the kernel, shared with a local client (see call_ids) */
    __u8 span_id[8];
    __u8 parent_span_id[8];  /* server: the span id of the local client call it answers; 0: none */
    __u8 req[CAPTURE_BYTES];
    __u8 resp[CAPTURE_BYTES];
};

#define HTTP_EXCHANGE_HEADER_SIZE 144
_Static_assert(sizeof(struct http_exchange_event) == HTTP_EXCHANGE_HEADER_SIZE + 2 * CAPTURE_BYTES,
               "http_exchange_event size");

/* Pairing state per (tgid << 32 | fd) in the http_conns map. User space reads it too: the
 * sweep emits exchanges whose response finished but whose connection went quiet. */
enum http_conn_phase {
    ST_IDLE = 0,
    ST_REQUEST = 1,  /* request bytes seen, no response yet */
    ST_RESPONSE = 2, /* response bytes seen */
};

struct http_conn_state {
    __u8 role;
    __u8 state;        /* enum http_conn_phase */
    __u8 flags;        /* HTTP_FLAG_* carried into the event */
    __u8 family;
    __u8 sampled;      /* this exchange is emitted (see http_shed) */
    __u8 local_client; /* a server whose client is a process on this node (see call_ids) */
    __u8 _pad0[2];
    __u32 tid;
    __u16 local_port;
    __u16 peer_port;
    __u16 req_len;
    __u16 resp_len;
    __u16 sample_permille;
    __u8 _pad1[2];
    __u64 cgroup_id;
    __u64 start_ns;
    __u64 resp_start_ns;
    __u64 end_ns;
    __u64 req_size;
    __u64 resp_size;
    __u64 pipe_start_ns; /* a pipelined request began before this exchange's answer (0: none) */
    __u64 pipe_offset;   /* where it starts in the request byte stream */
    __u8 local_addr[16];
    __u8 peer_addr[16];
    __u8 trace_id[16];       /* the current exchange's ids (http_exchange_event) */
    __u8 span_id[8];
    __u8 parent_span_id[8];
    __u64 sk;                /* the struct sock: its TCP sequence numbers key the trace ids */
    __u32 req_seq;           /* TCP sequence number of the request's first byte (see call_ids) */
    __u8 _pad2[4];
    __u64 tuple_hash;        /* the connection's 4-tuple, hashed once (see tuple_hash) */
    __u8 req[2 * CAPTURE_BYTES]; /* twice the capture: lets the verifier prove appends */
    __u8 resp[2 * CAPTURE_BYTES];
};

_Static_assert(sizeof(struct http_conn_state) == 176 + 4 * CAPTURE_BYTES, "http_conn_state size");

/* tcp_connection_event.outcome */
enum tcp_outcome {
    TCP_OUTCOME_CLOSED = 0,      /* established, then closed (FIN or RST: see resets_*) */
    TCP_OUTCOME_FAILED = 1,      /* connect never established: see error (sk_err errno) and resets */
    TCP_OUTCOME_OPEN = 2,        /* snapshot of a live connection written by user space, not the kernel */
};

/* tcp_connection_event.flags */
#define TCP_FLAG_PID_LISTENER 0x01 /* server side: pid/cgroup are the listening socket's owner */
#define TCP_FLAG_PID_ACCEPT   0x02 /* server side: pid/cgroup are the process that accepted it */
#define TCP_FLAG_PID_CLOSE    0x04 /* server side: pid/cgroup are the process that closed it */

/* One record per connection, written when it closes or fails. */
struct tcp_connection_event {
    __u8 type;         /* EVENT_TCP_CONNECTION */
    __u8 role;         /* ROLE_CLIENT for connect, ROLE_SERVER for accept */
    __u8 family;
    __u8 outcome;      /* enum tcp_outcome */
    __u32 pid;         /* 0: not attributed (server side closed before accept, listener unknown) */
    __u64 cgroup_id;
    __u64 start_ns;      /* SYN sent / SYN received */
    __u64 established_ns;/* 0 when it never got there */
    __u64 end_ns;
    __u64 bytes_sent;    /* tcp_sock.bytes_acked: payload the peer acknowledged */
    __u64 bytes_received;/* tcp_sock.bytes_received */
    __u32 retransmits;   /* tcp:tcp_retransmit_skb events on this socket */
    __u32 srtt_us;       /* smoothed RTT at close (tcp_sock.srtt_us >> 3) */
    __u8 local_addr[16];
    __u8 peer_addr[16];
    __u16 local_port;
    __u16 peer_port;
    __u16 resets_sent;
    __u16 resets_received;
    __u64 sock_id;       /* the struct sock address: unique among live sockets, for user-space joins */
    __u16 error;         /* sk_err at close/failure (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH...) */
    __u8 flags;          /* TCP_FLAG_* */
    __u8 _pad[5];
};

_Static_assert(sizeof(struct tcp_connection_event) == 120, "tcp_connection_event size");

/* Per-socket state in the tcp_socks map, keyed by struct sock address. User space reads it
 * for the active-connections gauge and the L4<->L7 join (connect latency of a live socket). */
struct tcp_sock_state {
    __u8 role;
    __u8 family;
    __u8 flags;          /* TCP_FLAG_* */
    __u8 _pad0;
    __u32 pid;
    __u64 cgroup_id;
    __u64 start_ns;
    __u64 established_ns;
    __u64 end_ns;        /* 0 while open; set at CLOSE, the record goes out at tcp_destroy_sock */
    __u32 retransmits;
    __u16 resets_sent;
    __u16 resets_received;
    __u8 local_addr[16];
    __u8 peer_addr[16];
    __u16 local_port;
    __u16 peer_port;
    __u32 srtt_us;       /* these three are read from the tcp_sock at CLOSE: tcp_disconnect() */
    __u64 bytes_sent;    /* (SO_LINGER 0, connect(AF_UNSPEC)) zeroes the socket's own right after */
    __u64 bytes_received;
};

_Static_assert(sizeof(struct tcp_sock_state) == 104, "tcp_sock_state size");

#endif
