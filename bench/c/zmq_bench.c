/*
 * ZeroMQ inproc peers of the brokk scenarios, with the same payloads and bounds.
 *
 *   zmq_bench pushpull   PUSH -> PULL, one thread each (peer of brokk 1to1)
 *   zmq_bench pubsub4    PUB -> 4 SUB sockets, one thread each (peer of brokk fanout4);
 *                        deliveries/s. ZMQ_XPUB_NODROP makes the PUB wait at its high-water
 *                        mark instead of dropping, so every subscriber gets every message, as
 *                        in brokk.
 *   zmq_bench latency    PUSH -> PULL at a fixed rate (peer of brokk latency)
 *
 * High-water marks are set to brokk's default queue capacity (100 000). zmq_send copies each
 * payload into a fresh zmq message; receivers get a copy they read and release.
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <zmq.h>

#define SCENARIOS "pushpull pubsub4 latency"
#define HWM 100000
#define END "E" /* sent after the measured messages; payloads start with '{' */
#define MARK "W" /* pub/sub: warm-up marker */

static void zcheck(int rc, const char *what) {
    if (rc < 0) DIE("%s: %s", what, zmq_strerror(zmq_errno()));
}

static void set_int(void *s, int opt, int v) { zcheck(zmq_setsockopt(s, opt, &v, sizeof v), "setsockopt"); }

static void send_msg(void *s, const char *buf, size_t len) {
    /* With ZMQ_XPUB_NODROP a PUB at its high-water mark fails with EAGAIN: wait and retry. */
    while (zmq_send(s, buf, len, 0) < 0) {
        if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) zcheck(-1, "zmq_send");
        sched_yield();
    }
}

/* ---- receiver thread ------------------------------------------------------------------------ */

typedef struct {
    void *ctx;
    const char *endpoint;
    int type; /* ZMQ_PULL or ZMQ_SUB */
    _Atomic int ready;
    _Atomic int seen_mark;
    _Atomic uint64_t received; /* payloads, warm-up included (written by the receiver only) */
    uint64_t bytes;
    uint64_t end_ns;
    uint64_t *recv_ns; /* latency: receive time by message number */
    uint64_t recv_cap;
} receiver;

static void *receiver_main(void *arg) {
    receiver *r = arg;
    void *s = zmq_socket(r->ctx, r->type);
    set_int(s, ZMQ_RCVHWM, HWM);
    if (r->type == ZMQ_SUB) zcheck(zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0), "subscribe");
    zcheck(zmq_connect(s, r->endpoint), "connect");
    atomic_store(&r->ready, 1);
    char buf[BENCH_PAYLOAD_MAX];
    uint64_t received = 0;
    for (;;) {
        int n = zmq_recv(s, buf, sizeof buf, 0);
        if (n < 0) {
            if (zmq_errno() == EINTR) continue;
            zcheck(n, "zmq_recv");
        }
        if (buf[0] == '{') {
            if (r->recv_ns) {
                uint64_t t = now_ns();
                uint64_t i = bench_payload_index(buf, (size_t)n);
                if (i < r->recv_cap) r->recv_ns[i] = t;
            }
            /* a plain store: the count is read by the main thread while this one runs */
            atomic_store_explicit(&r->received, ++received, memory_order_relaxed);
            r->bytes += (uint64_t)n;
        } else if (buf[0] == MARK[0]) {
            atomic_store(&r->seen_mark, 1);
        } else if (buf[0] == END[0]) {
            r->end_ns = now_ns();
            if (r->type == ZMQ_PULL && !atomic_load(&r->seen_mark)) {
                /* push/pull: the first END closes the warm-up */
                atomic_store(&r->seen_mark, 1);
                continue;
            }
            break;
        }
    }
    zmq_close(s);
    return NULL;
}

static uint64_t send_range(void *s, uint64_t first, uint64_t max, uint64_t deadline_ns) {
    char buf[BENCH_PAYLOAD_MAX];
    uint64_t n = 0;
    while (n < max) {
        send_msg(s, buf, bench_payload(buf, first + n));
        n++;
        if ((n & 1023) == 0 && now_ns() >= deadline_ns) break;
    }
    return n;
}

/* ---- pushpull -------------------------------------------------------------------------------- */

static void run_pushpull(const bench_opts *o) {
    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    set_int(push, ZMQ_SNDHWM, HWM);
    zcheck(zmq_bind(push, "inproc://pp"), "bind");
    receiver r = {.ctx = ctx, .endpoint = "inproc://pp", .type = ZMQ_PULL};
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, &r);
    while (!atomic_load(&r.ready)) sched_yield();

    send_range(push, 0, o->warmup, UINT64_MAX);
    send_msg(push, END, 1);
    while (!atomic_load(&r.seen_mark)) sched_yield();

    uint64_t t0 = now_ns();
    uint64_t sent = send_range(push, o->warmup, o->messages, t0 + (uint64_t)(o->seconds * 1e9));
    send_msg(push, END, 1);
    pthread_join(th, NULL);
    uint64_t got = atomic_load(&r.received) - o->warmup;
    if (got != sent) DIE("pushpull: received %" PRIu64 " of %" PRIu64, got, sent);

    bench_record rec = {.scenario = "1to1", .impl = "zmq-pushpull", .unit = "messages"};
    rec.messages = sent;
    rec.deliveries = got;
    rec.seconds = (double)(r.end_ns - t0) / 1e9;
    rec.rate = (double)got / rec.seconds;
    bench_extra(&rec, "\"hwm\": %d", HWM);
    zmq_close(push);
    zmq_ctx_term(ctx);
    bench_emit(&rec);
}

/* ---- pubsub4 --------------------------------------------------------------------------------- */

static void run_pubsub(const bench_opts *o) {
    enum { SUBS = 4 };
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    set_int(pub, ZMQ_SNDHWM, HWM);
    set_int(pub, ZMQ_XPUB_NODROP, 1);
    zcheck(zmq_bind(pub, "inproc://ps"), "bind");
    receiver r[SUBS];
    pthread_t th[SUBS];
    for (int i = 0; i < SUBS; i++) {
        r[i] = (receiver){.ctx = ctx, .endpoint = "inproc://ps", .type = ZMQ_SUB};
        pthread_create(&th[i], NULL, receiver_main, &r[i]);
    }
    /* Subscriptions reach the PUB asynchronously: send markers until every SUB has one. */
    for (;;) {
        int all = 1;
        for (int i = 0; i < SUBS; i++) all &= atomic_load(&r[i].seen_mark);
        if (all) break;
        send_msg(pub, MARK, 1);
        sleep_ms(1);
    }
    send_range(pub, 0, o->warmup, UINT64_MAX);
    for (int i = 0; i < SUBS; i++)
        while (atomic_load(&r[i].received) < o->warmup) sched_yield();

    uint64_t t0 = now_ns();
    uint64_t sent = send_range(pub, o->warmup, o->messages, t0 + (uint64_t)(o->seconds * 1e9));
    send_msg(pub, END, 1);
    uint64_t got = 0, end = t0;
    for (int i = 0; i < SUBS; i++) {
        pthread_join(th[i], NULL);
        got += atomic_load(&r[i].received) - o->warmup;
        if (r[i].end_ns > end) end = r[i].end_ns;
    }
    if (got != sent * SUBS) DIE("pubsub4: %" PRIu64 " deliveries for %" PRIu64 " messages", got, sent);
    bench_record rec = {.scenario = "fanout4", .impl = "zmq-pubsub", .unit = "deliveries"};
    rec.messages = sent;
    rec.deliveries = got;
    rec.seconds = (double)(end - t0) / 1e9;
    rec.rate = (double)got / rec.seconds;
    bench_extra(&rec, "\"hwm\": %d, \"subscribers\": %d", HWM, SUBS);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    bench_emit(&rec);
}

/* ---- latency --------------------------------------------------------------------------------- */

static void run_latency(const bench_opts *o) {
    uint64_t measured = (uint64_t)(o->rate * o->seconds);
    if (measured > o->messages) measured = o->messages;
    uint64_t warm = (uint64_t)(o->rate * 0.5);
    if (warm > o->warmup) warm = o->warmup;
    uint64_t total = warm + measured;
    uint64_t *send_ns = calloc(total, sizeof *send_ns);
    uint64_t *recv_ns = calloc(total, sizeof *recv_ns);
    if (!send_ns || !recv_ns) DIE("out of memory");

    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    set_int(push, ZMQ_SNDHWM, HWM);
    zcheck(zmq_bind(push, "inproc://lat"), "bind");
    receiver r = {.ctx = ctx, .endpoint = "inproc://lat", .type = ZMQ_PULL, .recv_ns = recv_ns,
                  .recv_cap = total};
    atomic_store(&r.seen_mark, 1); /* no warm-up END: the first END ends the run */
    pthread_t th;
    pthread_create(&th, NULL, receiver_main, &r);
    while (!atomic_load(&r.ready)) sched_yield();

    uint64_t period = (uint64_t)(1e9 / o->rate);
    uint64_t t0 = now_ns() + 1000000, behind = 0;
    char buf[BENCH_PAYLOAD_MAX];
    for (uint64_t i = 0; i < total; i++) {
        uint64_t due = t0 + i * period;
        pace_until(due, o->spin_us * 1000);
        size_t len = bench_payload(buf, i);
        send_ns[i] = now_ns();
        if (send_ns[i] > due + period) behind++;
        send_msg(push, buf, len);
    }
    uint64_t t_end = now_ns();
    send_msg(push, END, 1);
    pthread_join(th, NULL);

    uint64_t *lat = malloc(measured * sizeof *lat);
    size_t n = 0;
    for (uint64_t i = warm; i < total; i++)
        if (recv_ns[i] >= send_ns[i]) lat[n++] = recv_ns[i] - send_ns[i];
    bench_record rec = {.scenario = "latency", .impl = "zmq-pushpull", .unit = "messages"};
    rec.messages = measured;
    rec.deliveries = n;
    rec.seconds = (double)(t_end - (t0 + warm * period)) / 1e9;
    rec.rate = (double)measured / rec.seconds;
    rec.has_latency = true;
    rec.lat = latency_summary(lat, n);
    rec.target_rate = o->rate;
    rec.achieved_rate = rec.rate;
    bench_extra(&rec, "\"sends_late\": %" PRIu64 ", \"spin_us\": %" PRIu64, behind, o->spin_us);
    zmq_close(push);
    zmq_ctx_term(ctx);
    free(send_ns);
    free(recv_ns);
    free(lat);
    bench_emit(&rec);
}

int main(int argc, char **argv) {
    bench_opts o = bench_parse(argc, argv, SCENARIOS);
    if (!strcmp(o.scenario, "pushpull")) run_pushpull(&o);
    else if (!strcmp(o.scenario, "pubsub4")) run_pubsub(&o);
    else if (!strcmp(o.scenario, "latency")) run_latency(&o);
    else bench_usage(argv[0], SCENARIOS);
    return 0;
}
