/* brokk_broker_new and brokk_broker_free: URLs, options, bad input, several brokers. */
#include "check.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define SENTINEL ((brokk_broker *)(uintptr_t)0xB0B0B0B0u)

/* Expects brokk_broker_new(url, opts, &out) to fail with `want` and leave out untouched. */
static void expect_new_fails(const char *url, const brokk_broker_options *opts, brokk_status want,
                             const char *what) {
    brokk_broker *out = SENTINEL;
    brokk_status st = brokk_broker_new(url, opts, &out);
    const char *err = brokk_last_error();
    if (st != want)
        FAILF("%s: brokk_broker_new returned %u (%s), want %u (%s)", what, (unsigned)st,
              brokk_status_str(st), (unsigned)want, brokk_status_str(want));
    if (st != BROKK_STATUS_OK && (err == NULL || err[0] == '\0'))
        FAILF("%s: brokk_last_error() is empty after a failure", what);
    if (out != SENTINEL) {
        FAILF("%s: *broker_out was written on failure", what);
        if (st == BROKK_STATUS_OK) brokk_broker_free(out);
    }
}

static void new_with_null_url_is_memory(void) {
    brokk_broker *b = SENTINEL;
    if (!CHECK_OK(brokk_broker_new(NULL, NULL, &b))) return;
    CHECK(b != NULL && b != SENTINEL);
    brokk_stats s = stats_of(b);
    CHECK(s.workers >= 2); /* 0 means one per CPU, at least 2 */
    CHECK_EQ(s.topics, 0);
    CHECK_EQ(s.subscriptions, 0);
    CHECK_EQ(s.listeners, 0);
    CHECK_EQ(s.published, 0);
    brokk_broker_free(b);
}

static void new_with_memory_url(void) {
    brokk_broker *b = NULL;
    if (!CHECK_OK(brokk_broker_new("memory://", NULL, &b))) return;
    CHECK(b != NULL);
    CHECK_OK(publish_str(b, "t", "1"));
    brokk_broker_free(b);
}

static void new_rejects_bad_urls(void) {
    static const char *bad[] = {"nonsense", "ftp://x", "memory://extra", "memory", "memory:/",
                                "://",      "http://localhost/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_new_fails(bad[i], NULL, BROKK_STATUS_INVALID_URL, bad[i]);
}

static void new_rejects_unsupported_backends(void) {
    expect_new_fails("sqlite:///nonexistent-brokk-dir/x.db", NULL, BROKK_STATUS_CANNOT_OPEN_STORE, "nonexistent-brokk-dir");
    /* A Redis Cluster over TLS is not in this build (docs/redis.md); rediss:// to one server is. */
    expect_new_fails("rediss+cluster://localhost:6379", NULL, BROKK_STATUS_UNSUPPORTED_BACKEND, "rediss");
}

static void new_rejects_invalid_utf8_url(void) {
    expect_new_fails("\xff\xfe://", NULL, BROKK_STATUS_INVALID_UTF8, "\\xff\\xfe://");
    expect_new_fails("memory://\xc3", NULL, BROKK_STATUS_INVALID_UTF8, "truncated sequence");
}

static void new_rejects_null_out(void) {
    CHECK_STATUS(brokk_broker_new(NULL, NULL, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_new("memory://", NULL, NULL), BROKK_STATUS_NULL_ARGUMENT);
}

static void new_rejects_too_many_workers(void) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1025;
    expect_new_fails(NULL, &o, BROKK_STATUS_INVALID_ARGUMENT, "worker_threads 1025");
    o.worker_threads = UINT32_MAX;
    expect_new_fails(NULL, &o, BROKK_STATUS_INVALID_ARGUMENT, "worker_threads UINT32_MAX");
}

static void new_rejects_max_payload_above_4gib(void) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    o.max_payload_bytes = 4294967296ull; /* 4 GiB: one past the documented limit */
    expect_new_fails(NULL, &o, BROKK_STATUS_INVALID_ARGUMENT, "max_payload_bytes 4 GiB");
    o.max_payload_bytes = UINT64_MAX;
    expect_new_fails(NULL, &o, BROKK_STATUS_INVALID_ARGUMENT, "max_payload_bytes UINT64_MAX");
    o.max_payload_bytes = 4294967295ull; /* 4 GiB - 1: allowed */
    brokk_broker *b = new_broker_opts(&o);
    if (b) brokk_broker_free(b);
}

static void new_checks_retention_options(void) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    static const uint32_t bad[] = {4, 5, 100, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.retention_policy = bad[i];
        expect_new_fails(NULL, &o, BROKK_STATUS_INVALID_ARGUMENT, "unknown retention_policy");
    }
    static const uint32_t good[] = {BROKK_RETENTION_REJECT, BROKK_RETENTION_DROP_OLDEST,
                                    BROKK_RETENTION_DROP_NEWEST, BROKK_RETENTION_OFF};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        o.retention_policy = good[i];
        o.retention_limit = i == 0 ? 0 : (i == 1 ? 1 : UINT64_MAX);
        brokk_broker *b = new_broker_opts(&o);
        if (b) brokk_broker_free(b);
    }
}

static void worker_threads_option_is_used(void) {
    for (uint32_t n = 1; n <= 3; n++) {
        brokk_broker *b = new_broker(n);
        if (!b) return;
        CHECK_EQ(stats_of(b).workers, n);
        brokk_broker_free(b);
    }
}

static void options_are_copied(void) {
    brokk_broker_options *o = calloc(1, sizeof *o);
    o->worker_threads = 3;
    brokk_broker *b = new_broker_opts(o);
    o->worker_threads = 7;
    free(o); /* no pointer to the options may be kept */
    if (!b) return;
    CHECK_EQ(stats_of(b).workers, 3);
    brokk_broker_free(b);
}

static void url_is_copied(void) {
    char *url = strdup("memory://");
    brokk_broker *b = NULL;
    CHECK_OK(brokk_broker_new(url, NULL, &b));
    memset(url, 'x', strlen(url));
    free(url);
    if (!b) return;
    CHECK_OK(publish_str(b, "t", "{}"));
    JOIN_OK(b);
    brokk_broker_free(b);
}

static void free_null_is_noop(void) {
    brokk_broker_free(NULL);
    brokk_broker_free(NULL);
    CHECK(1);
}

static brokk_verdict ack_handler(void *ud, const brokk_message *m) {
    (void)ud;
    (void)m;
    return BROKK_VERDICT_ACK;
}

/* Several brokers alive at once are independent, and may be freed in any order. */
static void several_brokers_are_independent(void) {
    enum { N = 6 };
    brokk_broker *b[N];
    atomic_uint freed[N];
    for (int i = 0; i < N; i++) {
        atomic_init(&freed[i], 0);
        b[i] = new_broker(1);
        if (!b[i]) return;
        uint64_t sid = 0;
        CHECK_OK(subscribe_simple(b[i], "shared.name", ack_handler, &freed[i], count_free, false,
                                  1, &sid));
    }
    CHECK_OK(publish_str(b[2], "shared.name", "2"));
    CHECK_OK(publish_str(b[2], "shared.name", "2"));
    for (int i = 0; i < N; i++) JOIN_OK(b[i]);
    for (int i = 0; i < N; i++) {
        brokk_stats s = stats_of(b[i]);
        CHECK_EQ(s.published, i == 2 ? 2 : 0);
        CHECK_EQ(s.processed, i == 2 ? 2 : 0);
    }
    static const int order[N] = {3, 0, 5, 1, 4, 2};
    for (int k = 0; k < N; k++) {
        int i = order[k];
        brokk_broker_free(b[i]);
        CHECK_EQ(atomic_load(&freed[i]), 1);
        for (int j = 0; j < N; j++) {
            bool gone = false;
            for (int q = 0; q <= k; q++) gone = gone || order[q] == j;
            if (!gone) CHECK_EQ(atomic_load(&freed[j]), 0);
        }
    }
}

/* Create and free repeatedly: threads are joined and nothing leaks (valgrind/ASan check). */
static void create_and_free_repeatedly(void) {
    unsigned n = scaled_count(40);
    for (unsigned i = 0; i < n; i++) {
        brokk_broker *b = new_broker(1 + i % 3);
        if (!b) return;
        if (i % 2) CHECK_OK(publish_str(b, "t", "[1,2,3]"));
        brokk_broker_free(b);
    }
}

/* An idle broker freed without close: its subscriptions' finalisers run before free returns. */
static void free_without_close_runs_finalisers(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    atomic_uint freed = 0;
    uint64_t s1 = 0, s2 = 0;
    CHECK_OK(subscribe_simple(b, "a", ack_handler, &freed, count_free, false, 1, &s1));
    CHECK_OK(subscribe_simple(b, "b", ack_handler, &freed, count_free, true, 4, &s2));
    CHECK(s1 != s2);
    CHECK_OK(publish_str(b, "a", "1"));
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&freed), 0);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 2);
}

/*
 * listener_queue_capacity has no documented upper bound, so any uint32_t must either work or
 * fail with INVALID_ARGUMENT ("options out of range"); it must not take the process down.
 * Run in a child process with its address space capped at 2 GiB so that a library that tries
 * to allocate the whole queue up front fails fast instead of exhausting the machine.
 * Not under valgrind or ASan: both need far more address space than the cap allows.
 */
static int child_new_with_capacity(uint32_t capacity) {
    struct rlimit rl = {2048ul << 20, 2048ul << 20};
    if (setrlimit(RLIMIT_AS, &rl) != 0) return 10;
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    o.listener_queue_capacity = capacity;
    brokk_broker *b = NULL;
    brokk_status st = brokk_broker_new(NULL, &o, &b);
    if (st == BROKK_STATUS_OK) {
        brokk_broker_free(b);
        return 0;
    }
    return st == BROKK_STATUS_INVALID_ARGUMENT ? 0 : 11;
}

static void huge_listener_queue_capacity_does_not_crash(void) {
    if (under_tool("valgrind") || under_tool("asan")) {
        test_skip("needs an address-space cap that valgrind and ASan cannot run under");
        return;
    }
    static const uint32_t caps[] = {1, 1024, UINT32_MAX};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            /* The allocator's abort message and backtrace would only clutter the log. */
            if (!freopen("/dev/null", "w", stderr)) _exit(12);
            _exit(child_new_with_capacity(caps[i]));
        }
        if (!CHECK(pid > 0)) return;
        int ws = 0;
        waitpid(pid, &ws, 0);
        if (WIFSIGNALED(ws))
            FAILF("brokk_broker_new with listener_queue_capacity %u killed the process "
                  "(signal %d) instead of returning a status",
                  caps[i], WTERMSIG(ws));
        else if (WEXITSTATUS(ws) != 0)
            FAILF("brokk_broker_new with listener_queue_capacity %u: child exit %d", caps[i],
                  WEXITSTATUS(ws));
    }
}


/* The fork contract: in a child, every call on the parent's broker is FORKED and does nothing,
 * and freeing it is safe (it releases nothing: no joins of threads the child does not have, no
 * close of the parent's store). The child can make brokers of its own. The parent's broker is
 * untouched. Worker threads run in the parent while it forks. */
static brokk_verdict fork_count_handler(void *ud, const brokk_message *m) {
    (void)m;
    atomic_fetch_add((atomic_uint *)ud, 1);
    return BROKK_VERDICT_ACK;
}

/* The child's report: 0 on success, its failing step, or 255 if it did not answer in time. */
static int wait_for_child(pid_t pid, int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    unsigned char step = 255;
    if (poll(&p, 1, (int)wait_ms() * 2) == 1 && read(fd, &step, 1) != 1) step = 254;
    if (step == 255) kill(pid, SIGKILL);
    int ws = 0;
    waitpid(pid, &ws, 0);
    if (WIFSIGNALED(ws) && step != 255) return 253;
    return step;
}

/* Runs child(arg) in a forked child, which reports its result through a pipe rather than its
 * exit status: a leak checker (valgrind, LeakSanitizer) in the child counts what the threads
 * that a fork does not copy were holding as lost, and would change the exit status. Returns the
 * child's report (see wait_for_child), or 252 if the fork failed. */
static int run_in_child(int (*child)(const void *), const void *arg) {
    int fds[2];
    if (pipe(fds) != 0) return 252;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        unsigned char step = (unsigned char)child(arg);
        _exit(write(fds[1], &step, 1) == 1 ? 0 : 1);
    }
    close(fds[1]);
    int step = pid > 0 ? wait_for_child(pid, fds[0]) : 252;
    close(fds[0]);
    return step;
}

static int child_after_fork(const void *arg) {
    brokk_broker *parents = (brokk_broker *)arg;
    if (publish_str(parents, "fk", "2") != BROKK_STATUS_FORKED) return 10;
    if (strstr(brokk_last_error(), "fork") == NULL) return 11;
    uint64_t n = 7;
    if (brokk_broker_count(parents, NULL, 0, &n) != BROKK_STATUS_FORKED || n != 7) return 12;
    if (brokk_status_classify(BROKK_STATUS_FORKED) != BROKK_STATUS_CLASS_TERMINAL) return 13;
    brokk_broker_free(parents);
    brokk_broker *own = NULL;
    if (brokk_broker_new("memory://", NULL, &own) != BROKK_STATUS_OK) return 14;
    if (publish_str(own, "fk", "3") != BROKK_STATUS_OK) return 15;
    brokk_broker_free(own);
    return 0;
}

static void a_child_cannot_use_its_parents_broker_and_may_free_it(void) {
    if (under_tool("asan")) {
        /* GCC 12's ASan allocator is not fork-safe: a lock a parent thread held at the fork
         * stays held in the child, whose first allocation then waits for ever. */
        test_skip("ASan's allocator deadlocks in a child forked from a threaded process");
        return;
    }
    brokk_broker *b = new_broker(2);
    if (!b) return;
    atomic_uint calls;
    atomic_init(&calls, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "fk", fork_count_handler, &calls, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "fk", "1"));
    int step = run_in_child(child_after_fork, b);
    if (step != 0) FAILF("the child failed at step %d (253: killed by a signal, 255: no answer)", step);
    /* The parent goes on as before. */
    CHECK_OK(publish_str(b, "fk", "4"));
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&calls), 2);
    brokk_broker_free(b);
}

/* A child opens the parent's store for itself while the parent's threads are inside it (3
 * publishers, 4 workers delivering): SQLite's process-wide mutexes must not be copied held into
 * the child (the library holds forks off while its threads are inside SQLite), or the child's
 * open waits for ever. Each child reports through a pipe; one that does not within the bound is
 * killed and counted as hung. */
typedef struct {
    brokk_broker *b;
    atomic_bool stop;
    atomic_uint published, delivered;
} fork_load;

static brokk_verdict fork_load_handler(void *ud, const brokk_message *m) {
    (void)m;
    atomic_fetch_add(&((fork_load *)ud)->delivered, 1);
    return BROKK_VERDICT_ACK;
}

/* Publishes until stopped, at most 200 ahead of the deliveries (so that the join is short),
 * pausing between publishes: a process that writes flat out holds SQLite's write lock nearly
 * all the time, and another process (the child) then waits for it past the busy timeout. */
static void *fork_publisher(void *arg) {
    fork_load *l = arg;
    while (!atomic_load(&l->stop)) {
        if (atomic_load(&l->published) - atomic_load(&l->delivered) > 200) {
            sched_yield();
            continue;
        }
        brokk_status st = publish_str(l->b, "load", "1");
        if (st == BROKK_STATUS_OK)
            atomic_fetch_add(&l->published, 1);
        else if (brokk_status_classify(st) != BROKK_STATUS_CLASS_TRANSIENT)
            break;
        sleep_ms(1);
    }
    return NULL;
}

static int child_opens_the_store(const void *url) {
    brokk_broker *own = NULL;
    if (brokk_broker_new(url, NULL, &own) != BROKK_STATUS_OK) {
        fprintf(stderr, "# child: %s\n", brokk_last_error());
        return 20;
    }
    if (publish_str(own, "from-child", "1") != BROKK_STATUS_OK) return 21;
    brokk_broker_free(own);
    return 0;
}

static void a_child_opens_the_store_while_the_parents_threads_are_inside_it(void) {
    if (under_tool("asan")) {
        test_skip("ASan's allocator deadlocks in a child forked from a threaded process");
        return;
    }
    char url_buf[400];
    const char *url = test_url(url_buf, sizeof url_buf, NULL);
    brokk_broker *b = NULL;
    if (!CHECK_OK(brokk_broker_new(url, NULL, &b))) return;
    fork_load load = {.b = b};
    atomic_init(&load.stop, false);
    atomic_init(&load.published, 0);
    atomic_init(&load.delivered, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "load", fork_load_handler, &load, NULL, false, 4, &sid));
    pthread_t publishers[3];
    for (int i = 0; i < 3; i++) pthread_create(&publishers[i], NULL, fork_publisher, &load);
    unsigned forks = under_tool("valgrind") ? 3 : 20, hung = 0, failed = 0;
    for (unsigned i = 0; i < forks; i++) {
        int step = run_in_child(child_opens_the_store, url);
        if (step == 255)
            hung++;
        else if (step != 0 && failed++ == 0)
            FAILF("fork %u: the child failed at step %d", i, step);
    }
    atomic_store(&load.stop, true);
    for (int i = 0; i < 3; i++) pthread_join(publishers[i], NULL);
    if (hung) FAILF("%u of %u children hung opening the store", hung, forks);
    JOIN_OK(b);
    CHECK(atomic_load(&load.delivered) > 0);
    CHECK_EQ(atomic_load(&load.delivered), atomic_load(&load.published));
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(new_with_null_url_is_memory),
    TEST_CASE(a_child_cannot_use_its_parents_broker_and_may_free_it),
    TEST_CASE(a_child_opens_the_store_while_the_parents_threads_are_inside_it),
    TEST_CASE(new_with_memory_url),
    TEST_CASE(new_rejects_bad_urls),
    TEST_CASE(new_rejects_unsupported_backends),
    TEST_CASE(new_rejects_invalid_utf8_url),
    TEST_CASE(new_rejects_null_out),
    TEST_CASE(new_rejects_too_many_workers),
    TEST_CASE(new_rejects_max_payload_above_4gib),
    TEST_CASE(new_checks_retention_options),
    TEST_CASE(worker_threads_option_is_used),
    TEST_CASE(options_are_copied),
    TEST_CASE(url_is_copied),
    TEST_CASE(free_null_is_noop),
    TEST_CASE(several_brokers_are_independent),
    TEST_CASE(create_and_free_repeatedly),
    TEST_CASE(free_without_close_runs_finalisers),
    TEST_CASE(huge_listener_queue_capacity_does_not_crash),
};

int main(int argc, char **argv) { return RUN_TESTS("test_lifecycle", TESTS, argc, argv); }
