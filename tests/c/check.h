/*
 * check.h: the tiny test harness of brokk's C suite, shared by every tests/c/test_*.c program.
 *
 * - CHECK(cond), CHECK_EQ(a, b), CHECK_STATUS(call, status), CHECK_OK(call), CHECK_STR(view, "text")
 *   report "file:line: what" and count a failure against the test that is running. They may be
 *   used from broker threads (handlers, listeners, finalisers) too: the failure is counted
 *   against the test running at that moment. Each returns whether it held, so a test can bail.
 * - CHECK_STATUS on a failing status also checks that brokk_last_error() is not empty, since
 *   the header promises a description of every failure on the calling thread.
 * - run_tests() runs a table of tests (argv[1], if given, keeps only tests whose name contains
 *   it), prints "ok - name" / "not ok - name" and finally "<program>: N passed, N failed";
 *   tests/c/run.sh adds those lines up over the programs.
 * - Waits never assert a duration: they use wait_ms(), a 5000 ms base multiplied by the env
 *   var BROKK_TEST_TIMEOUT_SCALE (default 1; the valgrind run sets 20), as an upper bound only.
 *
 * Everything is static (inline) because each test program is a single translation unit.
 */
#ifndef BROKK_TEST_CHECK_H
#define BROKK_TEST_CHECK_H

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <brokk.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- failure accounting ------------------------------------------------------------------ */

static atomic_uint check_failures_;
static pthread_mutex_t check_print_lock_ = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 3, 4))) static inline void check_fail_(const char *file, int line,
                                                                     const char *fmt, ...) {
    va_list ap;
    atomic_fetch_add(&check_failures_, 1);
    pthread_mutex_lock(&check_print_lock_);
    fprintf(stdout, "#   %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&check_print_lock_);
}

static inline bool check_true_(bool ok, const char *expr, const char *file, int line) {
    if (!ok) check_fail_(file, line, "CHECK(%s) failed", expr);
    return ok;
}

static inline bool check_eq_(unsigned long long a, unsigned long long b, const char *ea,
                             const char *eb, const char *file, int line) {
    if (a != b) check_fail_(file, line, "CHECK_EQ(%s, %s): %llu != %llu", ea, eb, a, b);
    return a == b;
}

static inline bool check_status_(brokk_status got, brokk_status want, const char *expr,
                                 const char *file, int line) {
    /* Read at once, on this thread, before any other brokk call. */
    const char *err = got != BROKK_STATUS_OK ? brokk_last_error() : "";
    if (got != want) {
        check_fail_(file, line, "%s returned %u (%s), want %u (%s); last error: \"%s\"", expr,
                    (unsigned)got, brokk_status_str(got), (unsigned)want, brokk_status_str(want),
                    err ? err : "(NULL)");
        return false;
    }
    if (got != BROKK_STATUS_OK && (err == NULL || err[0] == '\0')) {
        check_fail_(file, line, "%s returned %s but brokk_last_error() is empty", expr,
                    brokk_status_str(got));
        return false;
    }
    return true;
}

static inline bool check_mem_(const char *a, size_t alen, const char *b, size_t blen,
                              const char *ea, const char *eb, const char *file, int line) {
    if (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0)) return true;
    check_fail_(file, line, "%s != %s: \"%.*s\" (%zu bytes) vs \"%.*s\" (%zu bytes)", ea, eb,
                (int)(alen > 200 ? 200 : alen), a ? a : "", alen, (int)(blen > 200 ? 200 : blen),
                b ? b : "", blen);
    return false;
}

static inline bool check_view_(brokk_str v, const char *text, const char *ev, const char *et,
                               const char *file, int line) {
    return check_mem_(v.ptr, v.len, text, strlen(text), ev, et, file, line);
}

static inline bool check_streq_(const char *a, const char *b, const char *ea, const char *eb,
                                const char *file, int line) {
    return check_mem_(a, a ? strlen(a) : 0, b, b ? strlen(b) : 0, ea, eb, file, line);
}

#define CHECK(cond) check_true_(!!(cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ(a, b) \
    check_eq_((unsigned long long)(a), (unsigned long long)(b), #a, #b, __FILE__, __LINE__)
#define CHECK_STATUS(call, want) check_status_((call), (want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_STATUS(call, BROKK_STATUS_OK)
/* A brokk_str against a NUL-terminated string (each argument evaluated once). */
#define CHECK_STR(view, text) check_view_((view), (text), #view, #text, __FILE__, __LINE__)
/* Two (pointer, length) byte ranges. */
#define CHECK_MEM(p, n, q, m) check_mem_((p), (n), (q), (m), #p, #q, __FILE__, __LINE__)
/* Two NUL-terminated strings (each argument evaluated once). */
#define CHECK_STREQ(a, b) check_streq_((a), (b), #a, #b, __FILE__, __LINE__)
#define FAILF(...) check_fail_(__FILE__, __LINE__, __VA_ARGS__)

/* ---- the runner ---------------------------------------------------------------------------- */

/* Why the running test skipped itself (it then counts as passed, reported "# SKIP why"). */
static const char *check_skip_reason_;

static inline void test_skip(const char *why) { check_skip_reason_ = why; }

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

#define TEST_CASE(fn) { #fn, fn }
#define RUN_TESTS(program, table, argc, argv) \
    run_tests((program), (table), sizeof(table) / sizeof((table)[0]), (argc), (argv))

static inline void test_db_cleanup(void);
static inline bool test_sqlite(void);
static inline bool test_redis(void);

static inline int run_tests(const char *program, const test_case *tests, size_t n, int argc,
                            char **argv) {
    unsigned passed = 0, failed = 0;
    const char *filter = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# %s (%s)\n", program, test_sqlite() ? "sqlite" : test_redis() ? "redis" : "memory");
    for (size_t i = 0; i < n; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        unsigned before = atomic_load(&check_failures_);
        check_skip_reason_ = NULL;
        tests[i].fn();
        test_db_cleanup();
        unsigned after = atomic_load(&check_failures_);
        pthread_mutex_lock(&check_print_lock_);
        if (after == before) {
            passed++;
            if (check_skip_reason_)
                printf("ok - %s # SKIP %s\n", tests[i].name, check_skip_reason_);
            else
                printf("ok - %s\n", tests[i].name);
        } else {
            failed++;
            printf("not ok - %s\n", tests[i].name);
        }
        fflush(stdout);
        pthread_mutex_unlock(&check_print_lock_);
    }
    printf("%s: %u passed, %u failed\n", program, passed, failed);
    fflush(stdout);
    return failed ? 1 : 0;
}

/* ---- time: scaled upper bounds, never assertions about durations ---------------------------- */

static inline unsigned test_scale(void) {
    static atomic_uint cached;
    unsigned s = atomic_load(&cached);
    if (s == 0) {
        const char *e = getenv("BROKK_TEST_TIMEOUT_SCALE");
        long v = e ? strtol(e, NULL, 10) : 1;
        s = v >= 1 && v <= 1000 ? (unsigned)v : 1;
        atomic_store(&cached, s);
    }
    return s;
}

/* The bound for "must happen eventually". */
static inline uint64_t wait_ms(void) { return 5000ull * test_scale(); }

/*
 * The bound for something that should happen at once (a worker picking up queued work), used
 * where waiting the full wait_ms() for a library bug would slow the whole run. Still generous.
 */
static inline uint64_t short_wait_ms(void) {
    unsigned s = test_scale();
    return 1000ull * (s < 5 ? s : 5);
}

/* Fewer messages under slow instrumentation (valgrind). */
static inline unsigned scaled_count(unsigned n) {
    unsigned s = test_scale();
    if (s >= 10) {
        unsigned m = n / 5;
        return m < 10 ? (n < 10 ? n : 10) : m;
    }
    return n;
}

/* Whether the run is instrumented in a way that forbids some tests (see run.sh). */
static inline bool under_tool(const char *tool) {
    const char *e = getenv("BROKK_TEST_TOOL");
    return e && strcmp(e, tool) == 0;
}

static inline void sleep_ms(unsigned ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static inline uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline struct timespec abs_deadline(uint64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Polls until *a >= target or the scaled deadline passes; returns whether it got there. */
static inline bool wait_atomic_ge(atomic_uint *a, unsigned target) {
    uint64_t end = mono_ms() + wait_ms();
    while (atomic_load(a) < target) {
        if (mono_ms() > end) return false;
        sleep_ms(1);
    }
    return true;
}

static inline bool wait_atomic_u64_ne0(_Atomic uint64_t *a) {
    uint64_t end = mono_ms() + wait_ms();
    while (atomic_load(a) == 0) {
        if (mono_ms() > end) return false;
        sleep_ms(1);
    }
    return true;
}

/* ---- a gate: handlers block in gate_pass until the test opens it ------------------------------ */

typedef struct gate {
    pthread_mutex_t m;
    pthread_cond_t c;
    bool open;
    unsigned entered; /* calls of gate_pass so far */
    unsigned inside;  /* callers blocked in gate_pass right now */
} gate;

static inline void gate_init(gate *g) {
    pthread_mutex_init(&g->m, NULL);
    pthread_cond_init(&g->c, NULL);
    g->open = false;
    g->entered = 0;
    g->inside = 0;
}

static inline void gate_destroy(gate *g) {
    pthread_cond_destroy(&g->c);
    pthread_mutex_destroy(&g->m);
}

/* Blocks until the gate opens. Bounded: a test that forgets to open it fails instead of hanging. */
static inline void gate_pass(gate *g) {
    struct timespec dl = abs_deadline(4 * wait_ms());
    bool timed_out = false;
    pthread_mutex_lock(&g->m);
    g->entered++;
    g->inside++;
    pthread_cond_broadcast(&g->c);
    while (!g->open) {
        if (pthread_cond_timedwait(&g->c, &g->m, &dl) == ETIMEDOUT) {
            timed_out = true;
            break;
        }
    }
    g->inside--;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
    if (timed_out) FAILF("gate never opened");
}

static inline void gate_open(gate *g) {
    pthread_mutex_lock(&g->m);
    g->open = true;
    pthread_cond_broadcast(&g->c);
    pthread_mutex_unlock(&g->m);
}

/* Waits until at least n callers have entered the gate, up to ms milliseconds. */
static inline bool gate_wait_entered_for(gate *g, unsigned n, uint64_t ms) {
    struct timespec dl = abs_deadline(ms);
    bool ok = true;
    pthread_mutex_lock(&g->m);
    while (g->entered < n) {
        if (pthread_cond_timedwait(&g->c, &g->m, &dl) == ETIMEDOUT) {
            ok = g->entered >= n;
            break;
        }
    }
    pthread_mutex_unlock(&g->m);
    return ok;
}

/* Waits until at least n callers have entered the gate; returns whether they did in time. */
static inline bool gate_wait_entered(gate *g, unsigned n) {
    return gate_wait_entered_for(g, n, wait_ms());
}

static inline unsigned gate_inside(gate *g) {
    pthread_mutex_lock(&g->m);
    unsigned n = g->inside;
    pthread_mutex_unlock(&g->m);
    return n;
}

/* Opens the gate from another thread after `ms` milliseconds. */
typedef struct delayed_open {
    gate *g;
    unsigned ms;
    pthread_t thread;
} delayed_open;

static inline void *delayed_open_main_(void *arg) {
    delayed_open *d = arg;
    sleep_ms(d->ms);
    gate_open(d->g);
    return NULL;
}

static inline void delayed_open_start(delayed_open *d, gate *g, unsigned ms) {
    d->g = g;
    d->ms = ms;
    pthread_create(&d->thread, NULL, delayed_open_main_, d);
}

static inline void delayed_open_join(delayed_open *d) { pthread_join(d->thread, NULL); }

/* ---- brokk conveniences ------------------------------------------------------------------------ */

/*
 * The backend under test. BROKK_TEST_URL=sqlite runs every broker the suite creates through
 * new_broker*() on SQLite: a fresh file per broker, in a private temp directory made on first
 * use; run_tests() deletes the files (with their -wal/-shm) after each test, and an atexit hook
 * removes whatever is left and the directory. BROKK_TEST_URL=redis://127.0.0.1:PORT/0 (a server
 * run.sh started for this run, core/src/store/redis/test-server.sh) runs them on Redis: a fresh key prefix per
 * broker ("c<pid>-<n>"), so brokers share nothing unless a test passes one URL to several; the
 * keys go away with the server at the end of the run. Unset, empty or "memory": memory:// (URL
 * NULL). Tests that expect something different on SQLite or Redis branch on test_sqlite(),
 * test_redis() or test_durable() and say why.
 */
static inline bool test_sqlite(void) {
    const char *e = getenv("BROKK_TEST_URL");
    return e && strncmp(e, "sqlite", 6) == 0;
}

static inline bool test_redis(void) {
    const char *e = getenv("BROKK_TEST_URL");
    return e && strncmp(e, "redis://", 8) == 0;
}

/* A store that outlives the broker (SQLite or Redis): queues, groups and retained messages stay
 * in it at close, for the next broker on the same file or prefix. */
static inline bool test_durable(void) { return test_sqlite() || test_redis(); }

static char test_db_dir_[256];
static atomic_uint test_db_next_;    /* files handed out so far */
static atomic_uint test_db_cleaned_; /* files [0, cleaned) already deleted */
static pthread_mutex_t test_db_lock_ = PTHREAD_MUTEX_INITIALIZER;

/* Deletes db files [from, to) with their -wal, -shm and -journal companions. */
static inline void test_db_remove_range_(unsigned from, unsigned to) {
    static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
    char path[320];
    for (unsigned i = from; i < to; i++)
        for (size_t k = 0; k < sizeof suffix / sizeof suffix[0]; k++) {
            snprintf(path, sizeof path, "%s/b%u.db%s", test_db_dir_, i, suffix[k]);
            (void)remove(path);
        }
}

/* Called by run_tests after each test, when the test's brokers are freed. */
static inline void test_db_cleanup(void) {
    if (!test_db_dir_[0]) return;
    pthread_mutex_lock(&test_db_lock_);
    unsigned to = atomic_load(&test_db_next_);
    test_db_remove_range_(atomic_load(&test_db_cleaned_), to);
    atomic_store(&test_db_cleaned_, to);
    pthread_mutex_unlock(&test_db_lock_);
}

static inline void test_db_atexit_(void) {
    if (!test_db_dir_[0]) return;
    test_db_remove_range_(0, atomic_load(&test_db_next_)); /* forked children never call this */
    (void)rmdir(test_db_dir_);
}

/*
 * A fresh "sqlite:///..." URL in buf (a new file each call), a fresh
 * "redis://host:port/db?prefix=c<pid>-<n>" (a new prefix each call), or NULL when the memory
 * backend is under test. extra, if not NULL, is an option string starting with '?' (e.g.
 * "?lease_ms=500"), appended as is to a SQLite URL and after "&" to a Redis one.
 */
static inline const char *test_url(char *buf, size_t cap, const char *extra) {
    if (test_redis()) {
        unsigned n = atomic_fetch_add(&test_db_next_, 1);
        const char *opts = extra && extra[0] == '?' ? extra + 1 : extra;
        int len = snprintf(buf, cap, "%s?prefix=c%ld-%u%s%s", getenv("BROKK_TEST_URL"),
                           (long)getpid(), n, opts && opts[0] ? "&" : "", opts ? opts : "");
        if (len < 0 || (size_t)len >= cap) {
            fprintf(stderr, "test_url: %s does not fit in %zu bytes\n", buf, cap);
            abort();
        }
        return buf;
    }
    if (!test_sqlite()) return NULL;
    pthread_mutex_lock(&test_db_lock_);
    if (!test_db_dir_[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(test_db_dir_, sizeof test_db_dir_, "%s/brokk-ctest-XXXXXX",
                 tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(test_db_dir_)) {
            perror("mkdtemp");
            abort();
        }
        atexit(test_db_atexit_);
    }
    pthread_mutex_unlock(&test_db_lock_);
    unsigned n = atomic_fetch_add(&test_db_next_, 1);
    snprintf(buf, cap, "sqlite://%s/b%u.db%s", test_db_dir_, n, extra ? extra : "");
    return buf;
}

static inline brokk_broker *new_broker_opts(const brokk_broker_options *opts) {
    brokk_broker *b = NULL;
    char url[400];
    if (!CHECK_OK(brokk_broker_new(test_url(url, sizeof url, NULL), opts, &b))) return NULL;
    CHECK(b != NULL);
    return b;
}

static inline brokk_broker *new_broker(uint32_t workers) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = workers;
    return new_broker_opts(&o);
}

/* A broker whose topics without a consumer group follow `policy` (limit 0: the default). */
static inline brokk_broker *new_broker_retention(uint32_t workers, brokk_retention_policy policy,
                                                uint64_t limit) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = workers;
    o.retention_policy = policy;
    o.retention_limit = limit;
    return new_broker_opts(&o);
}

/* brokk_broker_count on one topic (NULL: every topic); UINT64_MAX if the call failed. */
static inline uint64_t count_of(const brokk_broker *b, const char *topic) {
    uint64_t n = UINT64_MAX;
    if (topic) {
        brokk_str t = {topic, strlen(topic)};
        if (!CHECK_OK(brokk_broker_count(b, &t, 1, &n))) return UINT64_MAX;
    } else if (!CHECK_OK(brokk_broker_count(b, NULL, 0, &n))) {
        return UINT64_MAX;
    }
    return n;
}

static inline brokk_stats stats_of(const brokk_broker *b) {
    brokk_stats s;
    memset(&s, 0, sizeof s);
    CHECK_OK(brokk_broker_stats(b, &s));
    return s;
}

static inline brokk_status publish_str(const brokk_broker *b, const char *topic,
                                       const char *payload) {
    return brokk_broker_publish(b, topic, strlen(topic), payload, strlen(payload), NULL, NULL, 0);
}

static inline brokk_status subscribe_simple(const brokk_broker *b, const char *topic,
                                            brokk_handler_cb h, void *ud, brokk_free_cb f,
                                            bool manual_ack, uint32_t concurrency,
                                            uint64_t *id_out) {
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    o.manual_ack = manual_ack;
    o.concurrency = concurrency;
    return brokk_broker_subscribe(b, topic, strlen(topic), h, ud, f, &o, id_out);
}

/* Fetch options naming group g (g_len bytes); everything else zero. */
#define FOPTS(g, g_len) (&(brokk_fetch_options){.group = (g), .group_len = (g_len)})

/* join with the scaled bound; checks OK and remaining == 0. */
#define JOIN_OK(b)                                                                            \
    do {                                                                                      \
        uint64_t rem_ = 12345;                                                                \
        if (CHECK_OK(brokk_broker_join((b), wait_ms(), &rem_))) CHECK_EQ(rem_, 0);           \
    } while (0)

/* Polls stats until pred(stats, arg) holds or the scaled deadline passes. */
static inline bool wait_stats(const brokk_broker *b, bool (*pred)(const brokk_stats *, void *),
                              void *arg) {
    uint64_t end = mono_ms() + wait_ms();
    for (;;) {
        brokk_stats s;
        memset(&s, 0, sizeof s);
        if (brokk_broker_stats(b, &s) == BROKK_STATUS_OK && pred(&s, arg)) return true;
        if (mono_ms() > end) return false;
        sleep_ms(1);
    }
}

/* A finaliser that counts its calls: user_data points at the counter. */
static inline void count_free(void *p) { atomic_fetch_add((atomic_uint *)p, 1); }

/* A view's bytes as a NUL-terminated copy in buf (truncated to cap - 1). */
static inline const char *view_cstr(brokk_str v, char *buf, size_t cap) {
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    if (n) memcpy(buf, v.ptr, n);
    buf[n] = '\0';
    return buf;
}

static inline bool view_eq(brokk_str v, const char *s) {
    size_t n = strlen(s);
    return v.len == n && (n == 0 || memcmp(v.ptr, s, n) == 0);
}

/* A graceful close with no time limit, run on its own thread (graceful_close_start). */
typedef struct graceful_close {
    const brokk_broker *b;
    brokk_status st;
    brokk_close_report r;
    atomic_uint returned;
    pthread_t t;
} graceful_close;

static inline void *graceful_close_thread_(void *arg) {
    graceful_close *c = arg;
    c->st = brokk_broker_close(c->b, BROKK_WAIT_FOREVER, false, &c->r);
    atomic_store(&c->returned, 1);
    return NULL;
}

/* Starts a graceful close of b on another thread and waits until it refuses publishes (to
 * "probe"), i.e. it is waiting; pthread_join(c->t, NULL) then collects c->st and c->r. */
static inline void graceful_close_start(graceful_close *c, const brokk_broker *b) {
    c->b = b;
    c->st = BROKK_STATUS_PANIC;
    memset(&c->r, 0, sizeof c->r);
    atomic_init(&c->returned, 0);
    pthread_create(&c->t, NULL, graceful_close_thread_, c);
    uint64_t end = mono_ms() + wait_ms();
    while (publish_str(b, "probe", "0") == BROKK_STATUS_OK && mono_ms() < end) sleep_ms(1);
    CHECK_STATUS(publish_str(b, "probe", "0"), BROKK_STATUS_CLOSED); /* the close is waiting */
}

#endif /* BROKK_TEST_CHECK_H */
