/*
 * Shared by every C benchmark program (brokk and ZeroMQ): the payload, clocks, pacing,
 * latency percentiles, RSS, and the one-line JSON records that bench/run.py collects.
 *
 * A program prints each result as one line of JSON on stdout, starting with {"scenario":
 * (run.py keeps only such lines), and everything meant for people on stderr.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <unistd.h>

/* ---- the payload: {"i": n, "s": "<32 chars>"}, the same bytes in every implementation ---- */

#define BENCH_S32 "abcdefghijklmnopqrstuvwxyz012345"
#define BENCH_PAYLOAD_MAX 96

/* Writes the payload of message `n` into buf; returns its length. */
static inline size_t bench_payload(char *buf, uint64_t n) {
    /* A hand-rolled formatter: snprintf would cost more than some of the queues measured. */
    static const char head[] = "{\"i\": ";
    static const char tail[] = ", \"s\": \"" BENCH_S32 "\"}";
    char digits[24];
    int d = 0;
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    size_t len = sizeof head - 1;
    memcpy(buf, head, len);
    while (d) buf[len++] = digits[--d];
    memcpy(buf + len, tail, sizeof tail - 1);
    return len + sizeof tail - 1;
}

/* The message number of a payload made by bench_payload (its "i"). */
static inline uint64_t bench_payload_index(const char *p, size_t len) {
    uint64_t n = 0;
    size_t k = 6; /* past {"i":  */
    while (k < len && p[k] >= '0' && p[k] <= '9') n = n * 10 + (uint64_t)(p[k++] - '0');
    return n;
}

/* ---- clocks -------------------------------------------------------------------------------- */

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until CLOCK_MONOTONIC reaches `t_ns`: clock_nanosleep (absolute) while more than
 * `spin_ns` is left, then a busy-wait. spin_ns = 0 only sleeps: the core stays free for the
 * threads measured, at the cost of a few µs of jitter in when each send starts (the send time
 * is read after the wait, so the latency itself is not skewed). */
static inline void pace_until(uint64_t t_ns, uint64_t spin_ns) {
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_ns) return;
        if (t_ns - now > spin_ns) {
            uint64_t wake = t_ns - spin_ns;
            struct timespec ts = {(time_t)(wake / 1000000000ull), (long)(wake % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else {
            cpu_relax();
        }
    }
}

/* ---- percentiles ----------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double p50, p90, p99, p999, max, mean;
    uint64_t samples;
} latency_us;

/* Sorts `ns` in place (n samples, nanoseconds) and summarises it in microseconds. */
static inline latency_us latency_summary(uint64_t *ns, size_t n) {
    latency_us r = {0};
    if (n == 0) return r;
    qsort(ns, n, sizeof *ns, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += (double)ns[i];
#define PCT(q) ((double)ns[(size_t)((double)(n - 1) * (q))] / 1000.0)
    r.p50 = PCT(0.50);
    r.p90 = PCT(0.90);
    r.p99 = PCT(0.99);
    r.p999 = PCT(0.999);
#undef PCT
    r.max = (double)ns[n - 1] / 1000.0;
    r.mean = sum / (double)n / 1000.0;
    r.samples = n;
    return r;
}

/* ---- memory ---------------------------------------------------------------------------------- */

/* Resident set size in bytes, from /proc/self/statm. */
static inline uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- options: every program takes the same few flags ------------------------------------------ */

typedef struct {
    const char *scenario;
    uint64_t messages; /* upper bound on measured messages */
    uint64_t warmup;   /* messages sent before measuring */
    double seconds;    /* time bound of the measured phase */
    double rate;       /* messages/s for the latency scenario */
    uint64_t batch;    /* batch size (batch scenario) */
    uint64_t spin_us;  /* latency pacing: busy-wait window before each send (0: sleep only) */
    const char *url;   /* backend URL (brokk_bench only; "memory://" unless --url) */
    uint64_t threads;  /* publisher threads (publish-threads scenario) */
    uint64_t backlog;  /* messages kept queued while measuring (pull-backlog scenario) */
} bench_opts;

static inline void bench_usage(const char *prog, const char *scenarios) {
    fprintf(stderr,
            "usage: %s SCENARIO [--messages N] [--warmup N] [--seconds S] [--rate R] [--batch B] "
            "[--spin-us U] [--url URL] [--threads T] [--backlog N]\n"
            "scenarios: %s\n",
            prog, scenarios);
    exit(2);
}

static inline bench_opts bench_parse(int argc, char **argv, const char *scenarios) {
    bench_opts o = {.scenario = NULL, .messages = 2000000, .warmup = 200000, .seconds = 5.0,
                    .rate = 50000.0, .batch = 100, .spin_us = 0, .url = "memory://",
                    .threads = 4, .backlog = 1000};
    if (argc < 2) bench_usage(argv[0], scenarios);
    o.scenario = argv[1];
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) bench_usage(argv[0], scenarios);
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--messages")) o.messages = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--warmup")) o.warmup = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--seconds")) o.seconds = strtod(v, NULL);
        else if (!strcmp(k, "--rate")) o.rate = strtod(v, NULL);
        else if (!strcmp(k, "--batch")) o.batch = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--spin-us")) o.spin_us = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--url")) o.url = v;
        else if (!strcmp(k, "--threads")) o.threads = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--backlog")) o.backlog = strtoull(v, NULL, 10);
        else bench_usage(argv[0], scenarios);
    }
    if (o.messages == 0) o.messages = 1;
    /* Sleeps end when asked, not up to 50 µs later (the default timer slack). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    return o;
}

/* ---- result records ----------------------------------------------------------------------------
 * One JSON object per line. Fields that do not apply are left out; run.py adds the rest. */

typedef struct {
    const char *scenario; /* e.g. "1to1" */
    const char *impl;     /* e.g. "brokk-c" */
    const char *unit;     /* what msgs_per_s counts: "messages" or "deliveries" */
    uint64_t messages;    /* messages published in the measured phase */
    uint64_t deliveries;  /* deliveries (or receives) counted in the measured phase */
    double seconds;       /* measured wall time */
    double rate;          /* the headline figure per second, in `unit` */
    bool has_latency;
    latency_us lat;
    double target_rate;   /* latency scenario: the rate asked for */
    double achieved_rate; /* latency scenario: the rate achieved */
    bool has_memory;
    double bytes_per_msg;      /* RSS growth per queued message, payload included */
    double overhead_per_msg;   /* the same minus the payload bytes */
    double payload_bytes;      /* mean payload length */
    uint64_t rss_before, rss_after;
    char extra[512]; /* more JSON members, already formatted ("\"k\": v, ...") or empty */
} bench_record;

static inline void bench_extra(bench_record *r, const char *fmt, ...) {
    size_t used = strlen(r->extra);
    if (used && used + 2 < sizeof r->extra) {
        memcpy(r->extra + used, ", ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->extra + used, sizeof r->extra - used, fmt, ap);
    va_end(ap);
}

static inline void bench_emit(const bench_record *r) {
    printf("{\"scenario\": \"%s\", \"impl\": \"%s\", \"unit\": \"%s\", \"messages\": %" PRIu64
           ", \"deliveries\": %" PRIu64 ", \"seconds\": %.6f, \"rate\": %.1f",
           r->scenario, r->impl, r->unit ? r->unit : "messages", r->messages, r->deliveries,
           r->seconds, r->rate);
    if (r->has_latency)
        printf(", \"latency_us\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, "
               "\"max\": %.3f, \"mean\": %.3f, \"samples\": %" PRIu64
               "}, \"target_rate\": %.1f, \"achieved_rate\": %.1f",
               r->lat.p50, r->lat.p90, r->lat.p99, r->lat.p999, r->lat.max, r->lat.mean,
               r->lat.samples, r->target_rate, r->achieved_rate);
    if (r->has_memory)
        printf(", \"bytes_per_msg\": %.1f, \"overhead_per_msg\": %.1f, \"payload_bytes\": %.1f, "
               "\"rss_before\": %" PRIu64 ", \"rss_after\": %" PRIu64,
               r->bytes_per_msg, r->overhead_per_msg, r->payload_bytes, r->rss_before,
               r->rss_after);
    if (r->extra[0]) printf(", %s", r->extra);
    printf("}\n");
    fflush(stdout);
    fprintf(stderr, "  %-10s %-16s %12.0f %s/s", r->scenario, r->impl, r->rate,
            r->unit ? r->unit : "messages");
    if (r->has_latency)
        fprintf(stderr, "  p50 %.2f us  p99 %.2f us  p99.9 %.2f us", r->lat.p50, r->lat.p99,
                r->lat.p999);
    if (r->has_memory) fprintf(stderr, "  %.1f B/msg beyond payload", r->overhead_per_msg);
    fprintf(stderr, "\n");
}

#define DIE(...)                                                                                  \
    do {                                                                                          \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fputc('\n', stderr);                                                                      \
        exit(1);                                                                                  \
    } while (0)

#endif /* BENCH_COMMON_H */
