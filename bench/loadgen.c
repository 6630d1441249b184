/* Fixed-rate HTTP/1.1 keep-alive load with nanosecond latencies, for bench/http_overhead.py.
 *
 * `hey` prints latencies to 0.1 ms, which at a p99 of 0.7-0.9 ms is a step of 11-14 % in an
 * ON/OFF ratio whose target is 10 %. This sends request i at start + i / rate on connection
 * i % connections (open loop: a request whose connection is still busy waits for it), and
 * reports percentiles of two latencies: from the moment the request was written ("service",
 * what `hey` reports) and from the moment it was due ("scheduled", which also counts the wait
 * for a busy connection, as wrk2 does).
 *
 *   cc -O2 -o loadgen bench/loadgen.c
 *   loadgen PORT PATH RATE CONNECTIONS SECONDS      (127.0.0.1 only; prints one JSON line)
 *
 * Each answer must be `HTTP/1.x 200` with a Content-Length; anything else, a closed
 * connection or a read error counts as an error and ends that connection's part of the run.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define BUF_BYTES 65536

struct conn {
    int fd;
    int busy, dead;
    uint64_t due_ns, sent_ns; /* of the request in flight */
    uint64_t queued;          /* requests due on this connection and not yet written */
    uint64_t queued_due[64];  /* their due times (a ring; more waiting than this is an error) */
    uint64_t q_head;
    size_t have;              /* bytes of the answer read so far */
    long need;                /* its total length once the head is complete, else -1 */
    char buf[BUF_BYTES];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint64_t *v, size_t n, double q)
{
    if (!n)
        return -1;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static char request[512];
static size_t request_len;
static uint64_t *service, *scheduled;
static size_t completed, capacity;
static uint64_t errors;

static void send_next(struct conn *c, uint64_t due)
{
    c->due_ns = due;
    c->sent_ns = now_ns();
    if (write(c->fd, request, request_len) != (ssize_t)request_len) {
        c->dead = 1;
        errors++;
        return;
    }
    c->busy = 1;
    c->have = 0;
    c->need = -1;
}

/* Parse what has arrived; returns 1 when the whole answer is in. */
static int answer_complete(struct conn *c)
{
    if (c->need < 0) {
        char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
        if (!end)
            return 0;
        size_t head = (size_t)(end - c->buf) + 4;
        if (c->have < 12 || memcmp(c->buf, "HTTP/1.", 7) || memcmp(c->buf + 8, " 200", 4))
            return -1;
        char *cl = memmem(c->buf, head, "Content-Length:", 15);
        if (!cl)
            cl = memmem(c->buf, head, "content-length:", 15);
        if (!cl)
            return -1;
        long body = strtol(cl + 15, NULL, 10);
        if (body < 0 || head + (size_t)body > BUF_BYTES)
            return -1;
        c->need = (long)head + body;
    }
    return c->have >= (size_t)c->need;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT PATH RATE CONNECTIONS SECONDS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), nconns = atoi(argv[4]);
    double rate = atof(argv[3]), seconds = atof(argv[5]);
    if (port <= 0 || rate <= 0 || nconns <= 0 || nconns > MAX_CONNS || seconds <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: telegen-loadgen\r\n\r\n",
                                   argv[2], port);
    uint64_t total = (uint64_t)(rate * seconds);
    capacity = total;
    service = calloc(capacity, sizeof(uint64_t));
    scheduled = calloc(capacity, sizeof(uint64_t));
    struct conn *conns = calloc((size_t)nconns, sizeof(struct conn));
    int ep = epoll_create1(0);
    if (!service || !scheduled || !conns || ep < 0)
        return 1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
            perror("connect");
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double interval = 1e9 / rate;
    uint64_t start = now_ns(), next = 0, end_by = start + (uint64_t)(seconds * 1e9) + 2000000000ull;
    struct epoll_event events[64];
    for (;;) {
        uint64_t now = now_ns();
        while (next < total && start + (uint64_t)(next * interval) <= now) {
            struct conn *c = &conns[next % (uint64_t)nconns];
            uint64_t due = start + (uint64_t)(next * interval);
            next++;
            if (c->dead)
                continue;
            if (!c->busy) {
                send_next(c, due);
            } else if (c->queued < 64) {
                c->queued_due[(c->q_head + c->queued++) % 64] = due;
            } else {
                errors++; /* more than 64 requests behind on one connection */
            }
        }
        int outstanding = 0;
        for (int i = 0; i < nconns; i++)
            outstanding += !conns[i].dead && (conns[i].busy || conns[i].queued);
        if ((next >= total && !outstanding) || now > end_by)
            break;
        int wait_ms = 1;
        if (next < total) {
            uint64_t due = start + (uint64_t)(next * interval);
            wait_ms = due > now ? (int)((due - now) / 1000000) : 0;
        }
        int n = epoll_wait(ep, events, 64, wait_ms);
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[events[k].data.u32];
            ssize_t got = read(c->fd, c->buf + c->have, BUF_BYTES - c->have);
            if (got <= 0 || !c->busy) {
                if (!(got < 0 && errno == EAGAIN)) {
                    c->dead = 1;
                    errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                }
                continue;
            }
            c->have += (size_t)got;
            int done = answer_complete(c);
            if (done < 0 || (done == 0 && c->have == BUF_BYTES)) {
                c->dead = 1;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (done) {
                uint64_t t = now_ns();
                if (completed < capacity) {
                    service[completed] = t - c->sent_ns;
                    scheduled[completed] = t - c->due_ns;
                    completed++;
                }
                c->busy = 0;
                if (c->queued) {
                    uint64_t due = c->queued_due[c->q_head++ % 64];
                    c->queued--;
                    send_next(c, due);
                }
            }
        }
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    qsort(service, completed, sizeof(uint64_t), cmp_u64);
    qsort(scheduled, completed, sizeof(uint64_t), cmp_u64);
    printf("{\"target_rate\": %.1f, \"connections\": %d, \"sent_due\": %llu, \"completed\": %zu, "
           "\"errors\": %llu, \"achieved_rate\": %.1f, "
           "\"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, \"p999_ms\": %.4f, "
           "\"scheduled_p50_ms\": %.4f, \"scheduled_p99_ms\": %.4f, \"scheduled_p999_ms\": %.4f}\n",
           rate, nconns, (unsigned long long)total, completed, (unsigned long long)errors,
           (double)completed / elapsed, pct_ms(service, completed, 0.5), pct_ms(service, completed, 0.9),
           pct_ms(service, completed, 0.99), pct_ms(service, completed, 0.999),
           pct_ms(scheduled, completed, 0.5), pct_ms(scheduled, completed, 0.99),
           pct_ms(scheduled, completed, 0.999));
    return 0;
}
