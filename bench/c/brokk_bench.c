/*
 * brokk through its C ABI: one scenario per process run (see bench/README.md).
 *
 *   brokk_bench 1to1      1 publisher -> 1 auto-ack subscriber
 *   brokk_bench fanout4   1 publisher -> 4 ungrouped subscribers (deliveries/s)
 *   brokk_bench group4x2  4 publishers -> 1 group of 2 subscriptions
 *   brokk_bench pull      fetch + ack on one thread, messages published beforehand
 *   brokk_bench pull-batch  the same with fetch_batch + ack_batch, --batch B per call
 *   brokk_bench batch     brokk_broker_publish_batch (--batch B) -> 1 auto-ack subscriber
 *   brokk_bench latency   publish -> handler latency at a fixed rate (--rate R)
 *   brokk_bench memory    RSS per message queued in a named group with no consumer
 *   brokk_bench memory-retained   the same, retained by a topic that has no group yet
 *   brokk_bench publish-threads   --threads T publishers, single publishes into a named group
 *                         with no consumer (on SQLite: each publish returns after its commit)
 *   brokk_bench pull-backlog      fetch + ack one at a time while --backlog N messages stay
 *                         queued (refilled between timed rounds)
 *   brokk_bench probe     opens and closes a broker on --url: exit 0 if the library accepts it,
 *                         3 if it refuses the URL (bench/run.py skips such rows)
 *
 * --url URL picks the backend (default memory://). "sqlite://" with no path, optionally with a
 * query ("sqlite://?synchronous=full"), means a fresh file in a new directory under
 * $BENCH_TMPDIR, $TMPDIR or /tmp, deleted with its -wal and -shm at exit; a URL with a path is
 * used as given and left in place. On SQLite every record's scenario gets the prefix "sqlite-"
 * ("sqlite-full-" with synchronous=full), and the batch scenario measures the publish calls
 * into a named group with no consumer instead of publish -> subscriber.
 *
 * "redis://HOST:PORT/DB?prefix=NAME" (or redis+cluster://) runs on that server; without a
 * prefix= option the program adds a fresh one (bench-<pid>-<time>), so runs never share keys.
 * Its keys stay on the server (bench/run.py flushes its throwaway server between rows). On
 * Redis the records are named "redis-<scenario>" and batch measures the publish calls, as on
 * SQLite.
 *
 * Each measured phase follows a warm-up and is bounded by --messages and --seconds, whichever
 * comes first. Throughput counts from the first publish to the moment join() returns, i.e.
 * until the last delivery is settled.
 */
#define _GNU_SOURCE
#include "common.h"

#include <brokk.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define TOPIC "bench"
#define TOPIC_LEN (sizeof TOPIC - 1)
#define SCENARIOS                                                                                   \
    "1to1 fanout4 group4x2 pull pull-batch batch latency memory memory-retained publish-threads " \
    "pull-backlog procs-publish procs-pull probe"

static void check(brokk_status s, const char *what) {
    if (s != BROKK_STATUS_OK) DIE("%s: %s (%s)", what, brokk_status_str(s), brokk_last_error());
}

/* ---- the backend: --url ------------------------------------------------------------------- */

static const char *g_url = "memory://"; /* what brokk_broker_new gets */
static bool g_sqlite;                   /* a SQLite store */
static bool g_redis;                    /* a Redis store */
/* of every scenario name: "", "sqlite-", "sqlite-full-", "redis-" */
static const char *g_prefix = "";
static char g_tmpdir[PATH_MAX];         /* the temporary directory to remove at exit, if any */
static char g_tmpdb[PATH_MAX + 16];
static char g_url_buf[PATH_MAX + 160];
/* How often the measured loops read the clock: every 1024 calls in memory, every 64 on a
 * store, whose calls are 100x slower. */
static uint64_t g_check_mask = 1023;

static void remove_temp_store(void) {
    if (!g_tmpdir[0]) return;
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[PATH_MAX + 32];
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s%s", g_tmpdb, suffixes[i]);
        unlink(path);
    }
    rmdir(g_tmpdir);
    g_tmpdir[0] = 0;
}

static void on_signal(int sig) {
    remove_temp_store(); /* unlink and rmdir are async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Resolves --url: "sqlite://" with no path becomes a fresh file in a new temporary directory. */
static void setup_url(const char *url) {
    g_url = url;
    if (!strncmp(url, "redis://", 8) || !strncmp(url, "redis+cluster://", 16)) {
        g_redis = true;
        g_check_mask = 63;
        g_prefix = "redis-";
        if (!strstr(url, "prefix=")) {
            /* A fresh namespace: this run's keys cannot meet another run's. */
            snprintf(g_url_buf, sizeof g_url_buf, "%s%cprefix=bench-%ld-%" PRIu64, url,
                     strchr(url, '?') ? '&' : '?', (long)getpid(), (uint64_t)(now_ns() % 1000000000ull));
            g_url = g_url_buf;
        }
        return;
    }
    if (strncmp(url, "sqlite://", 9) != 0) return;
    g_sqlite = true;
    g_check_mask = 63;
    g_prefix = strstr(url, "synchronous=full") ? "sqlite-full-" : "sqlite-";
    const char *rest = url + 9;
    if (*rest && *rest != '?') return; /* a path: used as given */
    const char *dir = getenv("BENCH_TMPDIR");
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/brokk-bench-XXXXXX", dir);
    if (!mkdtemp(g_tmpdir)) DIE("mkdtemp %s: %s", g_tmpdir, strerror(errno));
    snprintf(g_tmpdb, sizeof g_tmpdb, "%s/store.db", g_tmpdir);
    snprintf(g_url_buf, sizeof g_url_buf, "sqlite://%s%s", g_tmpdb, rest);
    g_url = g_url_buf;
    atexit(remove_temp_store);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

/* The scenario name a record carries: the backend's prefix, then `name`. */
static const char *scenario_name(const char *name) {
    static char buf[8][64];
    static int next;
    char *s = buf[next++ % 8];
    snprintf(s, sizeof buf[0], "%s%s", g_prefix, name);
    return s;
}

/* Prints a record, its scenario prefixed by the backend's, with the store it ran on. */
static void emit(bench_record *r) {
    r->scenario = scenario_name(r->scenario);
    if (g_sqlite)
        bench_extra(r, "\"store\": \"sqlite\", \"synchronous\": \"%s\", \"store_file\": \"%s\"",
                    strstr(g_url, "synchronous=full") ? "full" : "normal",
                    g_tmpdir[0] ? "fresh temporary file" : "given by --url");
    if (g_redis) {
        const char *p = strstr(g_url, "prefix=");
        int n = p ? (int)strcspn(p + 7, "&") : 0;
        bench_extra(r, "\"store\": \"redis\", \"redis_prefix\": \"%.*s\"", n, p ? p + 7 : "");
    }
    bench_emit(r);
}

static brokk_broker *open_broker(const brokk_broker_options *o) {
    brokk_broker *b;
    check(brokk_broker_new(g_url, o, &b), "brokk_broker_new");
    return b;
}

static void join_all(brokk_broker *b) {
    uint64_t left = 0;
    brokk_status s = brokk_broker_join(b, 120000, &left);
    if (s != BROKK_STATUS_OK) DIE("join: %s, %" PRIu64 " left", brokk_status_str(s), left);
}

static void finish(brokk_broker *b) {
    check(brokk_broker_close(b, 10000, false, NULL), "close");
    brokk_broker_free(b);
}

static void publish_one(brokk_broker *b, uint64_t n) {
    char buf[BENCH_PAYLOAD_MAX];
    size_t len = bench_payload(buf, n);
    /* No id buffer: the bench has no use for the generated id. */
    brokk_status s = brokk_broker_publish(b, TOPIC, TOPIC_LEN, buf, len, NULL, NULL, 0);
    if (s != BROKK_STATUS_OK) check(s, "publish");
}

/* ---- a counting handler -------------------------------------------------------------------- */

/* One per subscription, on its own cache line, so that handlers never share a counter. */
typedef struct {
    _Alignas(64) _Atomic uint64_t delivered;
    uint64_t bytes; /* payload bytes seen: the handler reads what it is given */
} counter;

static brokk_verdict count_handler(void *user_data, const brokk_message *msg) {
    counter *c = user_data;
    brokk_str p = brokk_message_payload(msg);
    c->bytes += p.len + (p.ptr[0] != '{'); /* concurrency 1: one handler call at a time */
    atomic_fetch_add_explicit(&c->delivered, 1, memory_order_relaxed);
    return BROKK_VERDICT_ACK;
}

static void subscribe(brokk_broker *b, counter *c, const char *group) {
    brokk_subscription_options so = {0};
    if (group) {
        so.group = group;
        so.group_len = strlen(group);
    }
    uint64_t id;
    check(brokk_broker_subscribe(b, TOPIC, TOPIC_LEN, count_handler, c, NULL, &so, &id),
          "subscribe");
}

static uint64_t delivered(counter *c, int n) {
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) sum += atomic_load(&c[i].delivered);
    return sum;
}

static void reset(counter *c, int n) {
    for (int i = 0; i < n; i++) atomic_store(&c[i].delivered, 0);
}

/* Publishes messages [first, first + max) until `deadline_ns`; returns how many. */
static uint64_t publish_until(brokk_broker *b, uint64_t first, uint64_t max, uint64_t deadline_ns) {
    uint64_t n = 0;
    while (n < max) {
        publish_one(b, first + n);
        n++;
        if ((n & g_check_mask) == 0 && now_ns() >= deadline_ns) break;
    }
    return n;
}

/* ---- 1to1, fanout4 ---------------------------------------------------------------------------- */

static void run_push(const bench_opts *o, int subscribers, const char *scenario) {
    brokk_broker *b = open_broker(NULL);
    counter c[4] = {0};
    for (int i = 0; i < subscribers; i++) subscribe(b, &c[i], NULL);
    publish_until(b, 0, o->warmup, UINT64_MAX);
    join_all(b);
    reset(c, subscribers);

    uint64_t t0 = now_ns();
    uint64_t sent = publish_until(b, o->warmup, o->messages, t0 + (uint64_t)(o->seconds * 1e9));
    uint64_t t_pub = now_ns();
    join_all(b);
    uint64_t t1 = now_ns();
    uint64_t got = delivered(c, subscribers);
    if (got != sent * (uint64_t)subscribers)
        DIE("%s: %" PRIu64 " deliveries for %" PRIu64 " messages", scenario, got, sent);

    bench_record r = {.scenario = scenario, .impl = "brokk-c"};
    r.unit = subscribers > 1 ? "deliveries" : "messages";
    r.messages = sent;
    r.deliveries = got;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)got / r.seconds;
    bench_extra(&r, "\"publish_rate\": %.1f, \"subscribers\": %d",
                (double)sent / ((double)(t_pub - t0) / 1e9), subscribers);
    finish(b);
    emit(&r);
}

/* ---- group4x2 ------------------------------------------------------------------------------- */

typedef struct {
    brokk_broker *b;
    uint64_t first, max, deadline_ns, sent;
} pub_job;

static void *publisher_thread(void *arg) {
    pub_job *j = arg;
    j->sent = publish_until(j->b, j->first, j->max, j->deadline_ns);
    return NULL;
}

static void run_group(const bench_opts *o) {
    enum { PUBLISHERS = 4, WORKERS = 2 };
    brokk_broker *b = open_broker(NULL);
    counter c[WORKERS] = {0};
    for (int i = 0; i < WORKERS; i++) subscribe(b, &c[i], "workers");
    publish_until(b, 0, o->warmup, UINT64_MAX);
    join_all(b);
    reset(c, WORKERS);

    pthread_t th[PUBLISHERS];
    pub_job jobs[PUBLISHERS];
    uint64_t t0 = now_ns();
    for (int i = 0; i < PUBLISHERS; i++) {
        jobs[i] = (pub_job){b, o->warmup + (uint64_t)i * o->messages, o->messages / PUBLISHERS,
                            t0 + (uint64_t)(o->seconds * 1e9), 0};
        pthread_create(&th[i], NULL, publisher_thread, &jobs[i]);
    }
    uint64_t sent = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        pthread_join(th[i], NULL);
        sent += jobs[i].sent;
    }
    join_all(b);
    uint64_t t1 = now_ns();
    uint64_t got = delivered(c, WORKERS);
    if (got != sent) DIE("group4x2: %" PRIu64 " deliveries for %" PRIu64 " messages", got, sent);

    bench_record r = {.scenario = "group4x2", .impl = "brokk-c", .unit = "messages"};
    r.messages = sent;
    r.deliveries = got;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)got / r.seconds;
    bench_extra(&r, "\"publishers\": %d, \"workers\": %d, \"split\": [%" PRIu64 ", %" PRIu64 "]",
                PUBLISHERS, WORKERS, atomic_load(&c[0].delivered), atomic_load(&c[1].delivered));
    finish(b);
    emit(&r);
}

/* ---- pull ----------------------------------------------------------------------------------- */

/* Publishes `count` messages with publish_batch in chunks of 10 000 (not timed; on SQLite
 * each chunk is one commit). */
static void prepublish(brokk_broker *b, uint64_t first, uint64_t count) {
    enum { CHUNK = 10000 };
    static char bufs[CHUNK][BENCH_PAYLOAD_MAX];
    static brokk_batch_message msgs[CHUNK];
    for (uint64_t done = 0; done < count;) {
        size_t k = 0;
        for (; k < CHUNK && done + k < count; k++) {
            msgs[k] = (brokk_batch_message){0};
            msgs[k].payload = bufs[k];
            msgs[k].payload_len = bench_payload(bufs[k], first + done + k);
        }
        check(brokk_broker_publish_batch(b, TOPIC, TOPIC_LEN, msgs, k, NULL, 0), "publish_batch");
        done += k;
    }
}

/* Fetches and acks up to `max` deliveries until the deadline; returns how many. */
static uint64_t fetch_ack(brokk_broker *b, uint64_t max, uint64_t deadline_ns, uint64_t *bytes) {
    uint64_t n = 0;
    while (n < max) {
        brokk_delivery *d = NULL;
        check(brokk_broker_fetch(b, TOPIC, TOPIC_LEN, NULL, 0, &d), "fetch");
        if (!d) DIE("pull: queue empty after %" PRIu64 " fetches", n);
        const brokk_message *m = brokk_delivery_message(d);
        *bytes += brokk_message_payload(m).len;
        check(brokk_broker_ack(b, brokk_message_delivery_id(m)), "ack");
        brokk_delivery_free(d);
        n++;
        if ((n & g_check_mask) == 0 && now_ns() >= deadline_ns) break;
    }
    return n;
}

/* The same with brokk_broker_fetch_batch + brokk_broker_ack_batch, `batch` per call. */
static uint64_t fetch_ack_batch(brokk_broker *b, size_t batch, uint64_t max, uint64_t deadline_ns,
                                uint64_t *bytes) {
    brokk_delivery *ds[1024];
    uint64_t ids[1024];
    if (batch > 1024) batch = 1024;
    uint64_t n = 0;
    while (n < max) {
        size_t want = max - n < batch ? (size_t)(max - n) : batch, got = 0;
        check(brokk_broker_fetch_batch(b, TOPIC, TOPIC_LEN, NULL, want, 0, ds, &got), "fetch_batch");
        if (!got) DIE("pull: queue empty after %" PRIu64 " fetches", n);
        for (size_t i = 0; i < got; i++) {
            const brokk_message *m = brokk_delivery_message(ds[i]);
            *bytes += brokk_message_payload(m).len;
            ids[i] = brokk_message_delivery_id(m);
        }
        size_t acked = 0;
        check(brokk_broker_ack_batch(b, ids, got, &acked), "ack_batch");
        for (size_t i = 0; i < got; i++) brokk_delivery_free(ds[i]);
        n += got;
        if (now_ns() >= deadline_ns) break;
    }
    return n;
}

static void run_pull(const bench_opts *o, size_t B /* 0: one fetch and one ack per message */) {
    brokk_broker_options bo = {0};
    bo.queue_capacity = o->warmup + o->messages + 1;
    brokk_broker *b = open_broker(&bo);
    brokk_delivery *none = NULL;
    /* A fetch names the "default" group, so what follows is queued for it. */
    check(brokk_broker_fetch(b, TOPIC, TOPIC_LEN, NULL, 0, &none), "fetch");
    if (none) DIE("pull: unexpected delivery");
    prepublish(b, 0, o->warmup + o->messages);
    uint64_t bytes = 0;
    uint64_t t0 = 0, got = 0;
    if (B) {
        fetch_ack_batch(b, B, o->warmup, UINT64_MAX, &bytes);
        t0 = now_ns();
        got = fetch_ack_batch(b, B, o->messages, t0 + (uint64_t)(o->seconds * 1e9), &bytes);
    } else {
        fetch_ack(b, o->warmup, UINT64_MAX, &bytes);
        t0 = now_ns();
        got = fetch_ack(b, o->messages, t0 + (uint64_t)(o->seconds * 1e9), &bytes);
    }
    uint64_t t1 = now_ns();

    char scenario[32];
    snprintf(scenario, sizeof scenario, B ? "pull-batch%zu" : "pull", B);
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = got;
    r.deliveries = got;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)got / r.seconds;
    bench_extra(&r, "\"prepublished\": %" PRIu64, o->warmup + o->messages);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    emit(&r);
}

/* ---- batch -------------------------------------------------------------------------------- */

static void run_batch(const bench_opts *o) {
    size_t B = (size_t)(o->batch ? o->batch : 100);
    char (*bufs)[BENCH_PAYLOAD_MAX] = malloc(B * sizeof *bufs);
    brokk_batch_message *msgs = calloc(B, sizeof *msgs);
    if (!bufs || !msgs) DIE("out of memory");
    brokk_broker *b = open_broker(NULL);
    counter c = {0};
    subscribe(b, &c, NULL);
    uint64_t next = 0;
    uint64_t warm_until = o->warmup, t0 = 0, deadline = UINT64_MAX, sent = 0;
    for (int phase = 0; phase < 2; phase++) {
        uint64_t limit = phase == 0 ? warm_until : o->messages;
        uint64_t n = 0;
        if (phase == 1) {
            join_all(b);
            reset(&c, 1);
            t0 = now_ns();
            deadline = t0 + (uint64_t)(o->seconds * 1e9);
        }
        while (n < limit) {
            size_t k = 0;
            for (; k < B && n + k < limit; k++) {
                msgs[k].payload = bufs[k];
                msgs[k].payload_len = bench_payload(bufs[k], next++);
            }
            check(brokk_broker_publish_batch(b, TOPIC, TOPIC_LEN, msgs, k, NULL, 0),
                  "publish_batch");
            n += k;
            if (now_ns() >= deadline) break;
        }
        sent = n;
    }
    uint64_t t_pub = now_ns();
    join_all(b);
    uint64_t t1 = now_ns();
    uint64_t got = delivered(&c, 1);
    if (got != sent) DIE("batch: %" PRIu64 " deliveries for %" PRIu64 " messages", got, sent);

    char scenario[32];
    snprintf(scenario, sizeof scenario, "batch%zu", B);
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = sent;
    r.deliveries = got;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)got / r.seconds;
    bench_extra(&r, "\"batch\": %zu, \"publish_rate\": %.1f", B,
                (double)sent / ((double)(t_pub - t0) / 1e9));
    finish(b);
    free(bufs);
    free(msgs);
    emit(&r);
}

/* ---- latency ------------------------------------------------------------------------------- */

typedef struct {
    uint64_t *recv_ns; /* indexed by message number */
    uint64_t count;
    _Atomic uint64_t delivered;
} lat_state;

static brokk_verdict latency_handler(void *user_data, const brokk_message *msg) {
    uint64_t t = now_ns();
    lat_state *s = user_data;
    brokk_str p = brokk_message_payload(msg);
    uint64_t i = bench_payload_index(p.ptr, p.len);
    if (i < s->count) s->recv_ns[i] = t;
    atomic_fetch_add_explicit(&s->delivered, 1, memory_order_relaxed);
    return BROKK_VERDICT_ACK;
}

static void run_latency(const bench_opts *o) {
    uint64_t measured = (uint64_t)(o->rate * o->seconds);
    if (measured > o->messages) measured = o->messages;
    uint64_t warm = (uint64_t)(o->rate * 0.5);
    if (warm > o->warmup) warm = o->warmup;
    uint64_t total = warm + measured;
    uint64_t *send_ns = calloc(total, sizeof *send_ns);
    lat_state s = {calloc(total, sizeof(uint64_t)), total, 0};
    if (!send_ns || !s.recv_ns) DIE("out of memory");

    brokk_broker *b = open_broker(NULL);
    uint64_t id;
    check(brokk_broker_subscribe(b, TOPIC, TOPIC_LEN, latency_handler, &s, NULL, NULL, &id),
          "subscribe");
    uint64_t period = (uint64_t)(1e9 / o->rate);
    uint64_t t0 = now_ns() + 1000000;
    uint64_t behind = 0;
    for (uint64_t i = 0; i < total; i++) {
        uint64_t due = t0 + i * period;
        pace_until(due, o->spin_us * 1000);
        char buf[BENCH_PAYLOAD_MAX];
        size_t len = bench_payload(buf, i);
        send_ns[i] = now_ns();
        if (send_ns[i] > due + period) behind++;
        brokk_status st = brokk_broker_publish(b, TOPIC, TOPIC_LEN, buf, len, NULL, NULL, 0);
        if (st != BROKK_STATUS_OK) check(st, "publish");
    }
    uint64_t t_end = now_ns();
    join_all(b);

    uint64_t *lat = malloc(measured * sizeof *lat);
    size_t n = 0;
    for (uint64_t i = warm; i < total; i++)
        if (s.recv_ns[i] >= send_ns[i]) lat[n++] = s.recv_ns[i] - send_ns[i];
    bench_record r = {.scenario = "latency", .impl = "brokk-c", .unit = "messages"};
    r.messages = measured;
    r.deliveries = n;
    r.seconds = (double)(t_end - (t0 + warm * period)) / 1e9;
    r.rate = (double)measured / r.seconds;
    r.has_latency = true;
    r.lat = latency_summary(lat, n);
    r.target_rate = o->rate;
    r.achieved_rate = r.rate;
    bench_extra(&r, "\"sends_late\": %" PRIu64 ", \"spin_us\": %" PRIu64, behind, o->spin_us);
    finish(b);
    free(send_ns);
    free(s.recv_ns);
    free(lat);
    emit(&r);
}

/* ---- memory ------------------------------------------------------------------------------- */

static void run_memory(const bench_opts *o, bool retained) {
    uint64_t n = o->messages;
    brokk_broker_options bo = {0};
    bo.queue_capacity = n + 1;
    bo.retention_limit = n + 1;
    brokk_broker *b = open_broker(&bo);
    if (!retained) {
        /* A fetch names the "default" group: messages queue there, with no consumer. */
        brokk_delivery *none = NULL;
        check(brokk_broker_fetch(b, TOPIC, TOPIC_LEN, NULL, 0, &none), "fetch");
    }
    /* Warm the allocator and the topic, then measure from an empty queue. */
    publish_until(b, 0, 10000, UINT64_MAX);
    uint64_t purged = 0;
    check(brokk_broker_purge(b, NULL, 0, &purged), "purge");

    uint64_t before = rss_bytes();
    uint64_t payload_total = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        char buf[BENCH_PAYLOAD_MAX];
        size_t len = bench_payload(buf, i);
        payload_total += len;
        brokk_status s = brokk_broker_publish(b, TOPIC, TOPIC_LEN, buf, len, NULL, NULL, 0);
        if (s != BROKK_STATUS_OK) check(s, "publish");
    }
    uint64_t t1 = now_ns();
    uint64_t after = rss_bytes();
    uint64_t waiting = 0;
    brokk_str topic = {TOPIC, TOPIC_LEN};
    check(brokk_broker_count(b, &topic, 1, &waiting), "count");
    if (waiting != n) DIE("memory: %" PRIu64 " waiting, expected %" PRIu64, waiting, n);

    bench_record r = {.scenario = retained ? "memory-retained" : "memory", .impl = "brokk-c"};
    r.unit = "messages";
    r.messages = n;
    r.deliveries = waiting;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)n / r.seconds;
    r.has_memory = true;
    r.rss_before = before;
    r.rss_after = after;
    r.bytes_per_msg = ((double)after - (double)before) / (double)n;
    r.payload_bytes = (double)payload_total / (double)n;
    r.overhead_per_msg = r.bytes_per_msg - r.payload_bytes;
    bench_extra(&r, "\"how\": \"%s\"",
                retained ? "retained by a topic with no group (retention_limit above N)"
                         : "queued in the group 'default' named by a fetch, no consumer");
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    emit(&r);
}

/* ---- publish-threads: durable single publishes from several threads ------------------------- */

/* Messages waiting on the topic (brokk_broker_count). */
static uint64_t waiting(brokk_broker *b) {
    uint64_t n = 0;
    brokk_str topic = {TOPIC, TOPIC_LEN};
    check(brokk_broker_count(b, &topic, 1, &n), "count");
    return n;
}

/* A broker whose topic has the group "default", named by a fetch: what is published queues
 * there, with no consumer. */
static brokk_broker *open_queueing(uint64_t capacity) {
    brokk_broker_options bo = {0};
    bo.queue_capacity = capacity + 1;
    bo.retention_limit = capacity + 1;
    brokk_broker *b = open_broker(&bo);
    brokk_delivery *none = NULL;
    check(brokk_broker_fetch(b, TOPIC, TOPIC_LEN, NULL, 0, &none), "fetch");
    if (none) DIE("unexpected delivery on a new store");
    return b;
}

static void run_publish_threads(const bench_opts *o) {
    int T = o->threads ? (int)o->threads : 4;
    if (T > 64) T = 64;
    brokk_broker *b = open_queueing(o->warmup + o->messages);
    publish_until(b, 0, o->warmup, UINT64_MAX);

    pthread_t th[64];
    pub_job jobs[64];
    uint64_t t0 = now_ns();
    for (int i = 0; i < T; i++) {
        uint64_t share = o->messages / (uint64_t)T + ((uint64_t)i < o->messages % (uint64_t)T);
        jobs[i] = (pub_job){b, o->warmup + (uint64_t)i * o->messages, share,
                            t0 + (uint64_t)(o->seconds * 1e9), 0};
        pthread_create(&th[i], NULL, publisher_thread, &jobs[i]);
    }
    uint64_t sent = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        sent += jobs[i].sent;
    }
    uint64_t t1 = now_ns();
    uint64_t queued = waiting(b);
    if (queued != o->warmup + sent)
        DIE("publish-threads: %" PRIu64 " queued for %" PRIu64 " published", queued, o->warmup + sent);

    char scenario[32];
    snprintf(scenario, sizeof scenario, "publish-threads%d", T);
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = sent;
    r.deliveries = 0;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)sent / r.seconds;
    bench_extra(&r, "\"threads\": %d, \"queued\": %" PRIu64 ", \"note\": \"%d threads, "
                "brokk_broker_publish one message at a time%s\"",
                T, queued, T,
                g_sqlite  ? ", each returning after its commit"
                : g_redis ? ", each returning after its script ran on the server"
                          : "");
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    emit(&r);
}

/* ---- batch publish into a store: what the publish calls sustain ----------------------------- */

static void run_batch_store(const bench_opts *o) {
    size_t B = (size_t)(o->batch ? o->batch : 100);
    char (*bufs)[BENCH_PAYLOAD_MAX] = malloc(B * sizeof *bufs);
    brokk_batch_message *msgs = calloc(B, sizeof *msgs);
    if (!bufs || !msgs) DIE("out of memory");
    brokk_broker *b = open_queueing(o->warmup + o->messages + B);
    uint64_t next = 0, sent = 0, calls = 0, t0 = 0, t1 = 0;
    for (int phase = 0; phase < 2; phase++) {
        uint64_t limit = phase == 0 ? o->warmup : o->messages, n = 0;
        uint64_t deadline = UINT64_MAX;
        if (phase == 1) {
            t0 = now_ns();
            deadline = t0 + (uint64_t)(o->seconds * 1e9);
        }
        while (n < limit) {
            size_t k = 0;
            for (; k < B && n + k < limit; k++) {
                msgs[k].payload = bufs[k];
                msgs[k].payload_len = bench_payload(bufs[k], next++);
            }
            check(brokk_broker_publish_batch(b, TOPIC, TOPIC_LEN, msgs, k, NULL, 0),
                  "publish_batch");
            n += k;
            calls += phase;
            if (now_ns() >= deadline) break;
        }
        sent = n;
    }
    t1 = now_ns();
    uint64_t queued = waiting(b);
    if (queued != next) DIE("batch: %" PRIu64 " queued for %" PRIu64 " published", queued, next);

    char scenario[32];
    snprintf(scenario, sizeof scenario, "batch%zu", B);
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = sent;
    r.deliveries = 0;
    r.seconds = (double)(t1 - t0) / 1e9;
    r.rate = (double)sent / r.seconds;
    bench_extra(&r, "\"batch\": %zu, \"calls\": %" PRIu64 ", \"queued_at_end\": %" PRIu64
                ", \"note\": \"publish_batch calls alone (each returns after its %s), into a "
                "named group with no consumer; %" PRIu64 " already queued at the start\"",
                B, calls, queued, g_redis ? "script call" : "commit", o->warmup);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    free(bufs);
    free(msgs);
    emit(&r);
}

/* ---- pull-backlog: fetch + ack while a large backlog waits ---------------------------------- */

/* "1k", "100k", "1m", or the number. */
static void size_label(char *buf, size_t cap, uint64_t n) {
    if (n >= 1000000 && n % 1000000 == 0) snprintf(buf, cap, "%" PRIu64 "m", n / 1000000);
    else if (n >= 1000 && n % 1000 == 0) snprintf(buf, cap, "%" PRIu64 "k", n / 1000);
    else snprintf(buf, cap, "%" PRIu64, n);
}

static void run_pull_backlog(const bench_opts *o) {
    uint64_t N = o->backlog ? o->backlog : 1000;
    /* Timed rounds of R fetch + ack, each followed by an untimed batch publish of R more, so the
     * backlog stays between N - R and N. */
    uint64_t R = N / 10 < 100 ? (N / 10 ? N / 10 : 1) : 100;
    brokk_broker *b = open_queueing(N + R);
    uint64_t tp = now_ns();
    prepublish(b, 0, N);
    double fill_s = (double)(now_ns() - tp) / 1e9;
    uint64_t next = N, bytes = 0, busy_ns = 0, got = 0;
    for (int phase = 0; phase < 2; phase++) {
        uint64_t limit = phase == 0 ? o->warmup : o->messages, n = 0;
        busy_ns = 0;
        while (n < limit) {
            uint64_t k = limit - n < R ? limit - n : R;
            uint64_t t = now_ns();
            fetch_ack(b, k, UINT64_MAX, &bytes);
            busy_ns += now_ns() - t;
            prepublish(b, next, k);
            next += k;
            n += k;
            if (phase == 1 && (double)busy_ns / 1e9 >= o->seconds) break;
        }
        got = n;
    }
    uint64_t queued = waiting(b);
    if (queued != N) DIE("pull-backlog: %" PRIu64 " queued, expected %" PRIu64, queued, N);

    char label[24], scenario[48];
    size_label(label, sizeof label, N);
    snprintf(scenario, sizeof scenario, "pull-backlog-%s", label);
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = got;
    r.deliveries = got;
    r.seconds = (double)busy_ns / 1e9;
    r.rate = (double)got / r.seconds;
    bench_extra(&r, "\"backlog\": %" PRIu64 ", \"refill\": %" PRIu64 ", \"fill_seconds\": %.3f, "
                "\"fill_rate\": %.1f, \"note\": \"fetch + ack one at a time, backlog held between "
                "%" PRIu64 " and %" PRIu64 " (filled at %.0f msgs/s)\"",
                N, R, fill_s, (double)N / fill_s, N - R, N, (double)N / fill_s);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    emit(&r);
}

/* ---- several processes on one store file ---------------------------------------------------- */

/* What one child of run_procs reports to the parent: calls done and when it stopped. */
typedef struct {
    uint64_t done;
    uint64_t end_ns;
} proc_report;

/* A child of run_procs: its own broker on the shared file, one message a call (a publish, or a
 * fetch + ack) from when `go` closes until the deadline; writes its report and exits without
 * running the parent's atexit handlers (the parent removes the file). */
static void proc_child(const bench_opts *o, bool pull, uint64_t capacity, int ready_fd, int go_fd, int report_fd,
                       int index) {
    brokk_broker_options bo = {0};
    bo.queue_capacity = capacity + 1;
    bo.retention_limit = capacity + 1;
    brokk_broker *b = open_broker(&bo);
    char byte = 1, sink;
    if (write(ready_fd, &byte, 1) != 1) _exit(10);
    if (read(go_fd, &sink, 1) < 0) _exit(11); /* 0 when the parent closes it: go */
    uint64_t deadline = now_ns() + (uint64_t)(o->seconds * 1e9), n = 0, bytes = 0;
    if (pull) {
        n = fetch_ack(b, o->messages, deadline, &bytes);
    } else {
        n = publish_until(b, (uint64_t)(index + 1) * 1000000000ull, o->messages, deadline);
    }
    proc_report rep = {n, now_ns()};
    if (write(report_fd, &rep, sizeof rep) != (ssize_t)sizeof rep) _exit(12);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);
    _exit(0);
}

/* `--threads P` processes on one SQLite file, each with its own broker, publishing one message
 * a call (procs-publish) or fetching and acking one at a time (procs-pull, from a prepublished
 * queue); the rate is what they do together. With P = 1 it is the one-process figure the
 * aggregate is compared with. */
static void run_procs(const bench_opts *o, bool pull) {
    int P = o->threads ? (int)o->threads : 4;
    if (P > 64) P = 64;
    if (!g_sqlite) DIE("procs-*: a sqlite:// store only (processes share its file)");
    /* The group "default" named, and for pull the queue filled, before any child starts. */
    uint64_t capacity = o->warmup + (uint64_t)(P + 1) * o->messages;
    brokk_broker *b = open_queueing(capacity);
    if (pull) prepublish(b, 0, (uint64_t)P * o->messages);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);

    int ready[2], go[2], report[2];
    if (pipe(ready) || pipe(go) || pipe(report)) DIE("pipe: %s", strerror(errno));
    pid_t pids[64];
    for (int i = 0; i < P; i++) {
        fflush(NULL);
        pids[i] = fork();
        if (pids[i] < 0) DIE("fork: %s", strerror(errno));
        if (pids[i] == 0) {
            close(go[1]);
            proc_child(o, pull, capacity, ready[1], go[0], report[1], i);
        }
    }
    close(go[0]);
    for (int i = 0; i < P; i++) {
        char byte;
        if (read(ready[0], &byte, 1) != 1) DIE("procs: a child did not start");
    }
    uint64_t t0 = now_ns(), done = 0, end = t0;
    close(go[1]);
    for (int i = 0; i < P; i++) {
        proc_report rep;
        if (read(report[0], &rep, sizeof rep) != (ssize_t)sizeof rep) DIE("procs: a child did not report");
        done += rep.done;
        if (rep.end_ns > end) end = rep.end_ns;
    }
    for (int i = 0; i < P; i++) {
        int status = 0;
        if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            DIE("procs: child %d failed (status %d)", i, status);
    }

    brokk_broker_options bo = {0};
    bo.queue_capacity = capacity + 1;
    b = open_broker(&bo);
    uint64_t queued = waiting(b), expected = pull ? (uint64_t)P * o->messages - done : done;
    if (queued != expected) DIE("procs: %" PRIu64 " queued, expected %" PRIu64, queued, expected);
    check(brokk_broker_close(b, 0, true, NULL), "close");
    brokk_broker_free(b);

    char scenario[48];
    snprintf(scenario, sizeof scenario, "procs%d-%s", P, pull ? "pull" : "publish");
    bench_record r = {.scenario = scenario, .impl = "brokk-c", .unit = "messages"};
    r.messages = done;
    r.deliveries = pull ? done : 0;
    r.seconds = (double)(end - t0) / 1e9;
    r.rate = (double)done / r.seconds;
    bench_extra(&r, "\"processes\": %d, \"note\": \"%d processes on one file, each its own broker, %s "
                "one message a call; the rate is their sum\"",
                P, P, pull ? "fetch + ack" : "publish");
    emit(&r);
}

/* ---- probe: does the library take this URL? ----------------------------------------------- */

static int run_probe(void) {
    brokk_broker *b = NULL;
    brokk_status s = brokk_broker_new(g_url, NULL, &b);
    if (s != BROKK_STATUS_OK) {
        printf("libbrokk refuses %s: %s (%s)\n", g_sqlite ? "sqlite:// URLs" : g_url,
               brokk_status_str(s), brokk_last_error());
        return 3;
    }
    check(brokk_broker_close(b, 1000, false, NULL), "close");
    brokk_broker_free(b);
    printf("ok\n");
    return 0;
}

int main(int argc, char **argv) {
    bench_opts o = bench_parse(argc, argv, SCENARIOS);
    if (brokk_abi_version() != BROKK_ABI_VERSION) DIE("libbrokk ABI mismatch");
    setup_url(o.url);
    if (!strcmp(o.scenario, "probe")) return run_probe();
    if (!strcmp(o.scenario, "1to1")) run_push(&o, 1, "1to1");
    else if (!strcmp(o.scenario, "fanout4")) run_push(&o, 4, "fanout4");
    else if (!strcmp(o.scenario, "group4x2")) run_group(&o);
    else if (!strcmp(o.scenario, "pull")) run_pull(&o, 0);
    else if (!strcmp(o.scenario, "pull-batch")) run_pull(&o, (size_t)o.batch);
    else if (!strcmp(o.scenario, "batch")) (g_sqlite || g_redis) ? run_batch_store(&o) : run_batch(&o);
    else if (!strcmp(o.scenario, "publish-threads")) run_publish_threads(&o);
    else if (!strcmp(o.scenario, "pull-backlog")) run_pull_backlog(&o);
    else if (!strcmp(o.scenario, "procs-publish")) run_procs(&o, false);
    else if (!strcmp(o.scenario, "procs-pull")) run_procs(&o, true);
    else if (!strcmp(o.scenario, "latency")) run_latency(&o);
    else if (!strcmp(o.scenario, "memory")) run_memory(&o, false);
    else if (!strcmp(o.scenario, "memory-retained")) run_memory(&o, true);
    else bench_usage(argv[0], SCENARIOS);
    return 0;
}
