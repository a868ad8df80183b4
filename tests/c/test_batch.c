/*
 * The batch calls of the pull side and the one-call message read: brokk_broker_fetch_batch
 * (order, partial and oversized batches, waiting, groups, options, closing, bad input),
 * brokk_broker_ack_batch (whole batches, failures in the middle, bad input, closing) and
 * brokk_message_read (on a handler's, a listener's and a fetched delivery's view; NULLs).
 */
#include "recorder.h"

#define DELIVERY_SENTINEL ((brokk_delivery *)(uintptr_t)0xD0D0D0D0u)
#define COUNT_SENTINEL ((size_t)0xC0FFEEu)
#define MAX_BATCH 64

/* A deliveries_out array whose every slot holds DELIVERY_SENTINEL. */
static void fill_sentinels(brokk_delivery **d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = DELIVERY_SENTINEL;
}

/* Whether d[from..n) still hold DELIVERY_SENTINEL. */
static bool sentinels_from(brokk_delivery *const *d, size_t from, size_t n) {
    for (size_t i = from; i < n; i++)
        if (d[i] != DELIVERY_SENTINEL) return false;
    return true;
}

/*
 * fetch_batch into d[0..max) (max <= MAX_BATCH) and checks the status is OK, that count_out
 * was written, that every returned slot holds a delivery and every slot past it is untouched.
 * Returns the count (0 on failure).
 */
static size_t fetch_batch_at(const brokk_broker *b, const char *topic,
                             const brokk_fetch_options *o, size_t max, uint64_t timeout_ms,
                             brokk_delivery **d, int line) {
    size_t n = COUNT_SENTINEL;
    fill_sentinels(d, MAX_BATCH);
    brokk_status st = brokk_broker_fetch_batch(b, topic, strlen(topic), o, max, timeout_ms, d, &n);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "fetch_batch(%s, max %zu) returned %s: %s", topic, max,
                    brokk_status_str(st), brokk_last_error());
        return 0;
    }
    if (n == COUNT_SENTINEL) {
        check_fail_(__FILE__, line, "fetch_batch returned OK without writing count_out");
        return 0;
    }
    if (n > max) {
        check_fail_(__FILE__, line, "fetch_batch returned %zu deliveries, max %zu", n, max);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (d[i] == NULL || d[i] == DELIVERY_SENTINEL)
            check_fail_(__FILE__, line, "fetch_batch slot %zu of %zu holds no delivery", i, n);
    if (!sentinels_from(d, n, MAX_BATCH))
        check_fail_(__FILE__, line, "fetch_batch wrote past *count_out (%zu)", n);
    return n;
}
#define FETCH_BATCH(b, topic, opts, max, timeout, d) \
    fetch_batch_at((b), (topic), (opts), (max), (timeout), (d), __LINE__)

static const brokk_message *msg_of(const brokk_delivery *d) { return brokk_delivery_message(d); }
static uint64_t id_of(const brokk_delivery *d) { return brokk_message_delivery_id(msg_of(d)); }

static void free_all(brokk_delivery **d, size_t n) {
    for (size_t i = 0; i < n; i++) brokk_delivery_free(d[i]);
}

/* The delivery ids of d[0..n) into ids. */
static void ids_of(brokk_delivery *const *d, size_t n, uint64_t *ids) {
    for (size_t i = 0; i < n; i++) ids[i] = id_of(d[i]);
}

/* ack_batch of d[0..n), expecting every one acked. */
static void ack_all_at(const brokk_broker *b, brokk_delivery *const *d, size_t n, int line) {
    uint64_t ids[MAX_BATCH];
    ids_of(d, n, ids);
    size_t acked = COUNT_SENTINEL;
    brokk_status st = brokk_broker_ack_batch(b, ids, n, &acked);
    if (st != BROKK_STATUS_OK)
        check_fail_(__FILE__, line, "ack_batch of %zu returned %s: %s", n, brokk_status_str(st),
                    brokk_last_error());
    if (acked != n) check_fail_(__FILE__, line, "ack_batch acked %zu of %zu", acked, n);
}
#define ACK_ALL(b, d, n) ack_all_at((b), (d), (n), __LINE__)

/* Publishes "0", "1", ... "n-1" on topic, priority 0. */
static void publish_numbers(const brokk_broker *b, const char *topic, unsigned n) {
    for (unsigned i = 0; i < n; i++) {
        char p[16];
        snprintf(p, sizeof p, "%u", i);
        CHECK_OK(publish_str(b, topic, p));
    }
}

/* Whether text contains `value` in decimal as a whole number (not part of a longer one). */
static bool names_number(const char *text, uint64_t value) {
    char dec[32];
    snprintf(dec, sizeof dec, "%" PRIu64, value);
    size_t len = strlen(dec);
    for (const char *p = strstr(text, dec); p; p = strstr(p + 1, dec)) {
        bool digit_before = p > text && p[-1] >= '0' && p[-1] <= '9';
        bool digit_after = p[len] >= '0' && p[len] <= '9';
        if (!digit_before && !digit_after) return true;
    }
    return false;
}

static bool stats_reconcile(const brokk_stats *s) {
    return s->dispatched == s->processed + s->failed + s->requeued && s->in_flight == 0 &&
           s->queued == 0;
}

/* ---- fetch_batch: normal use ----------------------------------------------------------------- */

/* Retained messages (no group yet) go to the "default" group of the first fetch_batch, highest
 * priority first, FIFO within a priority; one ack_batch settles the whole batch. */
static void fetch_batch_takes_highest_priority_first(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog log;
    evlog_add(b, &log);
    static const int32_t prio[] = {0, 5, -3, 5, 10, 0, INT32_MIN, INT32_MAX};
    static const char *const want[] = {"7", "4", "1", "3", "0", "5", "2", "6"};
    enum { N = 8 };
    char ids[N][BROKK_ID_BUFFER_SIZE];
    for (int i = 0; i < N; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        brokk_publish_options o;
        memset(&o, 0, sizeof o);
        o.priority = prio[i];
        CHECK_OK(brokk_broker_publish(b, "prio", 4, p, strlen(p), &o, ids[i], sizeof ids[i]));
    }
    CHECK_EQ(count_of(b, "prio"), N);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "prio", NULL, N, 0, d);
    if (CHECK_EQ(n, N)) {
        for (size_t i = 0; i < n; i++) {
            const brokk_message *m = msg_of(d[i]);
            CHECK_STR(brokk_message_payload(m), want[i]);
            int k = atoi(want[i]);
            CHECK_STR(brokk_message_parent_id(m), ids[k]);
            CHECK_EQ(brokk_message_priority(m), prio[k]);
            CHECK_STR(brokk_message_group(m), "default");
            CHECK_STR(brokk_message_topic(m), "prio");
            CHECK_EQ(brokk_message_attempt(m), 1);
            CHECK_EQ(brokk_message_subscription_id(m), 0);
            CHECK(id_of(d[i]) != 0);
            for (size_t j = 0; j < i; j++) CHECK(id_of(d[i]) != id_of(d[j]));
        }
    }
    CHECK_EQ(count_of(b, "prio"), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, N);
    CHECK_EQ(s.in_flight, N);
    CHECK_EQ(s.retained, 0);
    ACK_ALL(b, d, n);
    free_all(d, n);
    JOIN_OK(b);
    s = stats_of(b);
    CHECK_EQ(s.processed, N);
    CHECK_EQ(s.in_flight, 0);
    CHECK(stats_reconcile(&s));
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), N);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), N);
    CHECK_EQ(evlog_count(&log, EV_FAILED), 0);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

/* A batch smaller than the backlog takes its head; the next batch continues in order. */
static void fetch_batch_smaller_than_backlog_continues_in_order(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    publish_numbers(b, "backlog", 10);
    static const size_t want_counts[] = {4, 4, 2, 0};
    unsigned next = 0;
    brokk_delivery *d[MAX_BATCH];
    for (size_t round = 0; round < 4; round++) {
        size_t n = FETCH_BATCH(b, "backlog", NULL, 4, 0, d);
        CHECK_EQ(n, want_counts[round]);
        for (size_t i = 0; i < n; i++) {
            char p[16];
            snprintf(p, sizeof p, "%u", next++);
            CHECK_STR(brokk_message_payload(msg_of(d[i])), p);
        }
        CHECK_EQ(count_of(b, "backlog"), 10 - next);
        ACK_ALL(b, d, n);
        free_all(d, n);
    }
    CHECK_EQ(next, 10);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, 10);
    CHECK(stats_reconcile(&s));
    brokk_broker_free(b);
}

/* A batch larger than the backlog takes all of it and leaves the rest of the array alone. */
static void fetch_batch_larger_than_backlog(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    publish_numbers(b, "short", 3);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "short", NULL, MAX_BATCH, 0, d); /* also checks slots 3..63 */
    if (CHECK_EQ(n, 3))
        for (size_t i = 0; i < 3; i++) {
            char p[16];
            snprintf(p, sizeof p, "%zu", i);
            CHECK_STR(brokk_message_payload(msg_of(d[i])), p);
        }
    /* A huge max is only an upper bound: nothing more is there, nothing more is written. */
    brokk_delivery *more[MAX_BATCH];
    CHECK_EQ(FETCH_BATCH(b, "short", NULL, MAX_BATCH, 0, more), 0);
    ACK_ALL(b, d, n);
    free_all(d, n);
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 3);
    brokk_broker_free(b);
}

/* Timeout 0 on an empty queue: OK with a count of 0, at once; a short timeout likewise after it. */
static void fetch_batch_empty_queue_returns_zero(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d[MAX_BATCH];
    uint64_t start = mono_ms();
    CHECK_EQ(FETCH_BATCH(b, "empty", NULL, 8, 0, d), 0);
    CHECK_EQ(FETCH_BATCH(b, "empty", FOPTS("g", 1), 8, 0, d), 0);
    /* "not at all": a generous bound, only there to catch a wait for the full timeout or more. */
    CHECK(mono_ms() - start < short_wait_ms());
    CHECK_EQ(FETCH_BATCH(b, "empty", NULL, 8, 20, d), 0); /* waits 20 ms, then OK with 0 */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.topics, 1); /* fetch_batch creates the topic, */
    CHECK_EQ(s.groups, 2); /* and the groups "default" and "g" */
    CHECK_EQ(s.dispatched, 0);
    brokk_broker_free(b);
}

typedef struct later_batch {
    const brokk_broker *b;
    unsigned delay_ms;
    brokk_status st;
} later_batch;

static void *publish_batch_later(void *arg) {
    later_batch *p = arg;
    sleep_ms(p->delay_ms);
    brokk_batch_message m[3];
    memset(m, 0, sizeof m);
    static const char *const payloads[3] = {"\"a\"", "\"b\"", "\"c\""};
    for (int i = 0; i < 3; i++) {
        m[i].payload = payloads[i];
        m[i].payload_len = strlen(payloads[i]);
    }
    p->st = brokk_broker_publish_batch(p->b, "wait", 4, m, 3, NULL, 0);
    return NULL;
}

/* Waits for the first delivery, then takes what is queued: a publish_batch reaches the group at
 * once, so the waiting fetch_batch gets all three. */
static void fetch_batch_waits_for_the_first(void) {
    static const uint64_t timeouts[] = {0, BROKK_WAIT_FOREVER};
    for (int k = 0; k < 2; k++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        brokk_delivery *d[MAX_BATCH];
        CHECK_EQ(FETCH_BATCH(b, "wait", FOPTS("w", 1), 8, 0, d), 0); /* group w: publishes queue */
        later_batch p = {b, 30, BROKK_STATUS_PANIC};
        pthread_t t;
        pthread_create(&t, NULL, publish_batch_later, &p);
        size_t n = FETCH_BATCH(b, "wait", FOPTS("w", 1), 8, timeouts[k] ? timeouts[k] : wait_ms(), d);
        pthread_join(t, NULL);
        CHECK_EQ(p.st, BROKK_STATUS_OK);
        if (CHECK_EQ(n, 3)) {
            CHECK_STR(brokk_message_payload(msg_of(d[0])), "\"a\"");
            CHECK_STR(brokk_message_payload(msg_of(d[1])), "\"b\"");
            CHECK_STR(brokk_message_payload(msg_of(d[2])), "\"c\"");
            CHECK_STR(brokk_message_group(msg_of(d[2])), "w");
        }
        ACK_ALL(b, d, n);
        free_all(d, n);
        JOIN_OK(b);
        brokk_broker_free(b);
    }
}

/* Nack one of a batch with requeue, ack the others in one call: the nacked one comes back in the
 * next batch with attempt 2 and the same delivery id; the counters add up. */
static void fetch_batch_nack_one_ack_the_rest(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    publish_numbers(b, "mixed", 4);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "mixed", NULL, 8, 0, d);
    if (!CHECK_EQ(n, 4)) {
        free_all(d, n);
        brokk_broker_free(b);
        return;
    }
    uint64_t ids[4];
    ids_of(d, 4, ids);
    CHECK_OK(brokk_broker_nack(b, ids[1], true, 0, "later", 5));
    uint64_t rest[3] = {ids[0], ids[2], ids[3]};
    size_t acked = COUNT_SENTINEL;
    CHECK_OK(brokk_broker_ack_batch(b, rest, 3, &acked));
    CHECK_EQ(acked, 3);
    free_all(d, n);
    n = FETCH_BATCH(b, "mixed", NULL, 8, 0, d);
    if (CHECK_EQ(n, 1)) {
        CHECK_EQ(id_of(d[0]), ids[1]);
        CHECK_EQ(brokk_message_attempt(msg_of(d[0])), 2);
        CHECK_STR(brokk_message_payload(msg_of(d[0])), "1");
    }
    ACK_ALL(b, d, n);
    free_all(d, n);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, 5);
    CHECK_EQ(s.processed, 4);
    CHECK_EQ(s.requeued, 1);
    CHECK_EQ(s.failed, 0);
    CHECK(stats_reconcile(&s));
    brokk_broker_free(b);
}

/* The fetch options apply to every delivery of the batch: an ack deadline takes back all of an
 * unsettled batch, whose deliveries come back with attempt 2 and the same ids. */
static void fetch_batch_options_apply_to_each_delivery(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    publish_numbers(b, "dl", 3);
    brokk_fetch_options o;
    memset(&o, 0, sizeof o);
    o.group = "dlg";
    o.group_len = 3;
    o.ack_deadline_ms = 50;
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "dl", &o, 8, 0, d);
    uint64_t first[3] = {0, 0, 0};
    if (CHECK_EQ(n, 3)) ids_of(d, 3, first);
    free_all(d, n); /* unsettled: the deadline will take them back */
    o.ack_deadline_ms = 0;
    size_t got = 0;
    uint64_t again[3] = {0, 0, 0};
    uint64_t end = mono_ms() + wait_ms();
    while (got < 3 && mono_ms() < end) {
        size_t m = FETCH_BATCH(b, "dl", &o, 3 - got, wait_ms(), d);
        for (size_t i = 0; i < m; i++) {
            CHECK_EQ(brokk_message_attempt(msg_of(d[i])), 2);
            again[got + i] = id_of(d[i]);
        }
        ACK_ALL(b, d, m);
        free_all(d, m);
        got += m;
    }
    CHECK_EQ(got, 3);
    for (int i = 0; i < 3; i++) { /* the same delivery ids come back (in whatever order) */
        bool found = false;
        for (int j = 0; j < 3; j++) found = found || again[j] == first[i];
        if (!found) FAILF("delivery %" PRIu64 " did not come back after its deadline", first[i]);
    }
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.expired, 3);
    CHECK_EQ(s.processed, 3);
    CHECK_EQ(s.dispatched, 6);
    brokk_broker_free(b);
}

/* Several threads batch-fetching from one group: each message is taken exactly once. */
typedef struct batch_worker {
    const brokk_broker *b;
    unsigned n;
    atomic_uint *taken;   /* per message index */
    atomic_uint *total;   /* over all workers */
    atomic_uint failures; /* calls that did not return OK */
    pthread_t thread;
} batch_worker;

static void *batch_worker_main(void *arg) {
    batch_worker *w = arg;
    uint64_t end = mono_ms() + wait_ms();
    while (atomic_load(w->total) < w->n && mono_ms() < end) {
        brokk_delivery *d[7];
        size_t n = 0;
        if (brokk_broker_fetch_batch(w->b, "many", 4, FOPTS("crowd", 5), 7, 1, d, &n) !=
            BROKK_STATUS_OK) {
            atomic_fetch_add(&w->failures, 1);
            break;
        }
        uint64_t ids[7];
        for (size_t i = 0; i < n; i++) {
            char buf[16];
            unsigned long k = strtoul(view_cstr(brokk_message_payload(msg_of(d[i])), buf, sizeof buf),
                                      NULL, 10);
            if (k < w->n) atomic_fetch_add(&w->taken[k], 1);
            ids[i] = id_of(d[i]);
        }
        size_t acked = 0;
        if (brokk_broker_ack_batch(w->b, ids, n, &acked) != BROKK_STATUS_OK || acked != n)
            atomic_fetch_add(&w->failures, 1);
        free_all(d, n);
        atomic_fetch_add(w->total, (unsigned)n);
    }
    return NULL;
}

static void fetch_batch_concurrent_fetchers_take_each_once(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    unsigned n = scaled_count(500);
    brokk_delivery *d[MAX_BATCH];
    CHECK_EQ(FETCH_BATCH(b, "many", FOPTS("crowd", 5), 1, 0, d), 0);
    atomic_uint *taken = calloc(n, sizeof *taken);
    atomic_uint total;
    atomic_init(&total, 0);
    for (unsigned i = 0; i < n; i++) atomic_init(&taken[i], 0);
    enum { W = 4 };
    batch_worker w[W];
    for (int i = 0; i < W; i++) {
        w[i].b = b;
        w[i].n = n;
        w[i].taken = taken;
        w[i].total = &total;
        atomic_init(&w[i].failures, 0);
        pthread_create(&w[i].thread, NULL, batch_worker_main, &w[i]);
    }
    publish_numbers(b, "many", n);
    for (int i = 0; i < W; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK_EQ(atomic_load(&w[i].failures), 0);
    }
    CHECK_EQ(atomic_load(&total), n);
    unsigned bad = 0;
    for (unsigned i = 0; i < n; i++)
        if (atomic_load(&taken[i]) != 1) bad++;
    if (bad) FAILF("%u of %u messages not taken exactly once", bad, n);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, n);
    CHECK_EQ(s.processed, n);
    CHECK(stats_reconcile(&s));
    brokk_broker_free(b);
    free(taken);
}

/* ---- fetch_batch: bad input ------------------------------------------------------------------- */

static void fetch_batch_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "t", "1")); /* something to take, were a bad call to take it */
    char long_name[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_name, 'a', sizeof long_name);
    brokk_delivery *d[4];
    fill_sentinels(d, 4);
    size_t n = COUNT_SENTINEL;
    const brokk_fetch_options bad_dlq = {.dead_letter_topic = "dead letters", .dead_letter_topic_len = 12};
#define BAD_FETCH(call, want) CHECK_STATUS(call, want)
    BAD_FETCH(brokk_broker_fetch_batch(NULL, "t", 1, NULL, 4, 0, d, &n), BROKK_STATUS_NULL_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, NULL, 1, NULL, 4, 0, d, &n), BROKK_STATUS_NULL_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, NULL, 4, 0, NULL, &n), BROKK_STATUS_NULL_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, NULL, 4, 0, d, NULL), BROKK_STATUS_NULL_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, "", 0, NULL, 4, 0, d, &n), BROKK_STATUS_INVALID_TOPIC);
    BAD_FETCH(brokk_broker_fetch_batch(b, "a b", 3, NULL, 4, 0, d, &n), BROKK_STATUS_INVALID_TOPIC);
    BAD_FETCH(brokk_broker_fetch_batch(b, long_name, sizeof long_name, NULL, 4, 0, d, &n),
              BROKK_STATUS_INVALID_TOPIC);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t\xff", 2, NULL, 4, 0, d, &n), BROKK_STATUS_INVALID_UTF8);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS("", 0), 4, 0, d, &n), BROKK_STATUS_INVALID_GROUP);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS("a b", 3), 4, 0, d, &n),
              BROKK_STATUS_INVALID_GROUP);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS(long_name, sizeof long_name), 4, 0, d, &n),
              BROKK_STATUS_INVALID_GROUP);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS("g\xc3", 2), 4, 0, d, &n),
              BROKK_STATUS_INVALID_UTF8);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, &bad_dlq, 4, 0, d, &n), BROKK_STATUS_INVALID_TOPIC);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, NULL, 0, 0, d, &n), BROKK_STATUS_INVALID_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS("g", 1), 0, 0, d, &n),
              BROKK_STATUS_INVALID_ARGUMENT);
    /* Bad input never waits, even with a timeout. */
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, NULL, 0, BROKK_WAIT_FOREVER, d, &n),
              BROKK_STATUS_INVALID_ARGUMENT);
    BAD_FETCH(brokk_broker_fetch_batch(b, "t", 1, FOPTS("a b", 3), 4, BROKK_WAIT_FOREVER, d, &n),
              BROKK_STATUS_INVALID_GROUP);
#undef BAD_FETCH
    /* Outputs untouched, nothing taken, no topic but "t" (from the publish) and no group made. */
    CHECK_EQ(n, COUNT_SENTINEL);
    CHECK(sentinels_from(d, 0, 4));
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.topics, 1);
    CHECK_EQ(s.groups, 0);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(count_of(b, "t"), 1);
    brokk_broker_free(b);
}

/* ---- fetch_batch and ack_batch around close ---------------------------------------------------- */

typedef struct blocked_batch {
    const brokk_broker *b;
    brokk_status st;
    brokk_delivery *d[4];
    size_t n;
    atomic_uint started;
} blocked_batch;

static void *fetch_batch_forever(void *arg) {
    blocked_batch *f = arg;
    atomic_store(&f->started, 1);
    f->st = brokk_broker_fetch_batch(f->b, "idle", 4, NULL, 4, BROKK_WAIT_FOREVER, f->d, &f->n);
    return NULL;
}

/* "once closed, a blocked fetch returns CLOSED", for a batch too; outputs untouched. */
static void blocked_fetch_batch_returns_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        blocked_batch f;
        f.b = b;
        f.st = BROKK_STATUS_PANIC;
        fill_sentinels(f.d, 4);
        f.n = COUNT_SENTINEL;
        atomic_init(&f.started, 0);
        pthread_t t;
        pthread_create(&t, NULL, fetch_batch_forever, &f);
        while (!atomic_load(&f.started)) sleep_ms(1);
        sleep_ms(20); /* most likely blocked by now; CLOSED is right either way */
        CHECK_OK(brokk_broker_close(b, wait_ms(), force, NULL));
        pthread_join(t, NULL);
        CHECK_EQ(f.st, BROKK_STATUS_CLOSED);
        CHECK_EQ(f.n, COUNT_SENTINEL);
        CHECK(sentinels_from(f.d, 0, 4));
        brokk_broker_free(b);
    }
}

/* While a graceful close waits, fetch_batch still serves what is queued and ack_batch settles
 * it; then the close returns with nothing remaining. */
static void batch_calls_serve_queued_while_closing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d[MAX_BATCH];
    CHECK_EQ(FETCH_BATCH(b, "drain", FOPTS("g", 1), 8, 0, d), 0);
    publish_numbers(b, "drain", 3);
    graceful_close c;
    graceful_close_start(&c, b);
    size_t n = FETCH_BATCH(b, "drain", FOPTS("g", 1), 8, wait_ms(), d);
    CHECK_EQ(n, 3);
    CHECK_EQ(atomic_load(&c.returned), 0); /* still waiting for these */
    ACK_ALL(b, d, n);
    free_all(d, n);
    pthread_join(c.t, NULL);
    CHECK_EQ(c.st, BROKK_STATUS_OK);
    CHECK_EQ(c.r.remaining, 0);
    CHECK_EQ(c.r.dropped, 0);
    brokk_broker_free(b);
}

/* After a close, both batch calls fail with CLOSED: fetch_batch writes nothing, ack_batch acks
 * nothing and says so. */
static void batch_calls_after_close_are_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        publish_numbers(b, "late", 2);
        brokk_delivery *d[MAX_BATCH];
        size_t n = FETCH_BATCH(b, "late", NULL, 8, 0, d);
        CHECK_EQ(n, 2);
        uint64_t ids[MAX_BATCH];
        ids_of(d, n, ids);
        if (force) {
            CHECK_OK(brokk_broker_close(b, 0, true, NULL));
        } else {
            CHECK_STATUS(brokk_broker_close(b, 10, false, NULL), BROKK_STATUS_TIMEOUT);
        }
        brokk_delivery *more[4];
        fill_sentinels(more, 4);
        size_t count = COUNT_SENTINEL;
        CHECK_STATUS(brokk_broker_fetch_batch(b, "late", 4, NULL, 4, 0, more, &count),
                     BROKK_STATUS_CLOSED);
        CHECK_STATUS(brokk_broker_fetch_batch(b, "late", 4, FOPTS("g", 1), 4, BROKK_WAIT_FOREVER,
                                              more, &count),
                     BROKK_STATUS_CLOSED);
        CHECK_EQ(count, COUNT_SENTINEL);
        CHECK(sentinels_from(more, 0, 4));
        size_t acked = COUNT_SENTINEL;
        CHECK_STATUS(brokk_broker_ack_batch(b, ids, n, &acked), BROKK_STATUS_CLOSED);
        CHECK_EQ(acked, 0);
        /* The handles stay readable until freed, broker closed or not. */
        if (n == 2) CHECK_STR(brokk_message_payload(msg_of(d[1])), "1");
        free_all(d, n);
        brokk_broker_free(b);
    }
}

/* ---- ack_batch ------------------------------------------------------------------------------- */

/* An empty batch: OK with ids NULL or not, acked_out 0 (or NULL). acked_out may be NULL. */
static void ack_batch_empty_and_acked_out_optional(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    size_t acked = COUNT_SENTINEL;
    CHECK_OK(brokk_broker_ack_batch(b, NULL, 0, &acked));
    CHECK_EQ(acked, 0);
    uint64_t unused = 12345;
    acked = COUNT_SENTINEL;
    CHECK_OK(brokk_broker_ack_batch(b, &unused, 0, &acked)); /* count 0: ids not read */
    CHECK_EQ(acked, 0);
    CHECK_OK(brokk_broker_ack_batch(b, NULL, 0, NULL));
    publish_numbers(b, "opt", 2);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "opt", NULL, 8, 0, d);
    uint64_t ids[MAX_BATCH];
    ids_of(d, n, ids);
    CHECK_OK(brokk_broker_ack_batch(b, ids, n, NULL)); /* no acked_out */
    free_all(d, n);
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 2);
    brokk_broker_free(b);
}

static void ack_batch_rejects_null_arguments(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    publish_numbers(b, "na", 2);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "na", NULL, 8, 0, d);
    uint64_t ids[MAX_BATCH];
    ids_of(d, n, ids);
    size_t acked = COUNT_SENTINEL;
    CHECK_STATUS(brokk_broker_ack_batch(NULL, ids, n, &acked), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_ack_batch(NULL, NULL, 0, &acked), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_ack_batch(b, NULL, 2, &acked), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_ack_batch(b, NULL, 1, NULL), BROKK_STATUS_NULL_ARGUMENT);
    /* None of that acked anything. */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.in_flight, 2);
    CHECK_EQ(s.processed, 0);
    ACK_ALL(b, d, n);
    free_all(d, n);
    JOIN_OK(b);
    brokk_broker_free(b);
}

/*
 * Failures in the middle of a batch do not stop it: every good id is acked, acked_out counts
 * them, the status is the first failure's and brokk_last_error() names its index and id.
 */
static void ack_batch_acks_around_failures(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog log;
    evlog_add(b, &log);
    publish_numbers(b, "mid", 8);
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "mid", NULL, 8, 0, d);
    if (!CHECK_EQ(n, 8)) {
        free_all(d, n);
        brokk_broker_free(b);
        evlog_destroy(&log);
        return;
    }
    uint64_t id[8];
    ids_of(d, 8, id);
    CHECK_OK(brokk_broker_ack(b, id[1])); /* id[1] is already acked below */
    const uint64_t unknown = 987654321;

    /* 1. An unknown id at index 3 and an already-acked one at index 5: UNKNOWN_DELIVERY, the
     *    first failure, named; the four good ids acked. */
    uint64_t batch1[7] = {id[0], id[2], id[3], unknown, id[4], id[1], id[5]};
    size_t acked = COUNT_SENTINEL;
    brokk_status st = brokk_broker_ack_batch(b, batch1, 7, &acked);
    const char *err = brokk_last_error();
    CHECK_EQ(st, BROKK_STATUS_UNKNOWN_DELIVERY);
    CHECK_EQ(acked, 5);
    if (!names_number(err, 3) || !names_number(err, unknown))
        FAILF("last error \"%s\" does not name index 3 and id %" PRIu64, err, unknown);

    /* 2. Already acked first (index 1), then an unknown: ALREADY_SETTLED, named; one acked. */
    uint64_t batch2[3] = {id[6], id[0], unknown};
    acked = COUNT_SENTINEL;
    st = brokk_broker_ack_batch(b, batch2, 3, &acked);
    err = brokk_last_error();
    CHECK_EQ(st, BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(acked, 1);
    if (!names_number(err, 1) || !names_number(err, id[0]))
        FAILF("last error \"%s\" does not name index 1 and id %" PRIu64, err, id[0]);

    /* 3. The same id twice in one batch: the second is ALREADY_SETTLED (index 1). */
    uint64_t batch3[2] = {id[7], id[7]};
    acked = COUNT_SENTINEL;
    CHECK_STATUS(brokk_broker_ack_batch(b, batch3, 2, &acked), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(acked, 1);

    /* 4. Only bad ids: nothing acked, and acked_out says 0. */
    uint64_t batch4[3] = {0, unknown, id[3]};
    acked = COUNT_SENTINEL;
    CHECK_STATUS(brokk_broker_ack_batch(b, batch4, 3, &acked), BROKK_STATUS_UNKNOWN_DELIVERY);
    CHECK_EQ(acked, 0);

    /* Every delivery acked exactly once: 1 + 5 + 1 + 1 = 8. */
    free_all(d, n);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, 8);
    CHECK_EQ(s.failed, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK(stats_reconcile(&s));
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), 8);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

/* ack_batch takes any delivery awaiting an ack, not only fetched ones: a manual-ack handler's
 * LATER deliveries too; an auto-acked delivery is ALREADY_SETTLED. */
typedef struct keep_ids {
    _Atomic uint64_t ids[8];
    atomic_uint n;
    brokk_verdict verdict;
} keep_ids;

static brokk_verdict keep_ids_handler(void *ud, const brokk_message *m) {
    keep_ids *k = ud;
    unsigned i = atomic_fetch_add(&k->n, 1);
    if (i < 8) atomic_store(&k->ids[i], brokk_message_delivery_id(m));
    return k->verdict;
}

static void ack_batch_of_handler_deliveries(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    keep_ids manual, automatic;
    memset(&manual, 0, sizeof manual);
    memset(&automatic, 0, sizeof automatic);
    manual.verdict = BROKK_VERDICT_LATER;
    automatic.verdict = BROKK_VERDICT_ACK;
    uint64_t s1, s2;
    CHECK_OK(subscribe_simple(b, "hm", keep_ids_handler, &manual, NULL, true, 1, &s1));
    CHECK_OK(subscribe_simple(b, "ha", keep_ids_handler, &automatic, NULL, false, 1, &s2));
    publish_numbers(b, "hm", 3);
    CHECK_OK(publish_str(b, "ha", "1"));
    CHECK(wait_atomic_ge(&manual.n, 3));
    CHECK(wait_atomic_ge(&automatic.n, 1));
    uint64_t ids[4] = {atomic_load(&manual.ids[0]), atomic_load(&manual.ids[1]),
                       atomic_load(&automatic.ids[0]), atomic_load(&manual.ids[2])};
    /* The auto-acked one may still be running its handler: wait until only the three LATER
     * deliveries are in flight, so that it is settled when the batch reaches it. */
    uint64_t end = mono_ms() + wait_ms();
    while (stats_of(b).processed < 1 && mono_ms() < end) sleep_ms(1);
    size_t acked = COUNT_SENTINEL;
    CHECK_STATUS(brokk_broker_ack_batch(b, ids, 4, &acked), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(acked, 3);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, 4);
    CHECK(stats_reconcile(&s));
    brokk_broker_free(b);
}

/* ---- brokk_message_read ------------------------------------------------------------------------ */

/* Every field read by brokk_message_read equals what the single accessor returns. */
static void check_fields_match_at(const brokk_message *m, const brokk_message_fields *f, int line) {
    struct {
        const char *name;
        brokk_str got, want;
    } views[] = {
        {"topic", f->topic, brokk_message_topic(m)},
        {"id", f->id, brokk_message_id(m)},
        {"parent_id", f->parent_id, brokk_message_parent_id(m)},
        {"payload", f->payload, brokk_message_payload(m)},
        {"metadata", f->metadata, brokk_message_metadata(m)},
        {"group", f->group, brokk_message_group(m)},
    };
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++) {
        brokk_str g = views[i].got, w = views[i].want;
        if (g.ptr == NULL)
            check_fail_(__FILE__, line, "fields.%s.ptr is NULL", views[i].name);
        else if (g.len != w.len || (g.len && memcmp(g.ptr, w.ptr, g.len) != 0))
            check_fail_(__FILE__, line, "fields.%s \"%.*s\" != accessor \"%.*s\"", views[i].name,
                        (int)g.len, g.ptr, (int)w.len, w.ptr);
    }
#define SAME_NUMBER(field, accessor)                                                             \
    if ((unsigned long long)f->field != (unsigned long long)accessor(m))                        \
        check_fail_(__FILE__, line, "fields." #field " %llu != " #accessor " %llu",              \
                    (unsigned long long)f->field, (unsigned long long)accessor(m));
    SAME_NUMBER(delivery_id, brokk_message_delivery_id)
    SAME_NUMBER(subscription_id, brokk_message_subscription_id)
    SAME_NUMBER(timestamp_ms, brokk_message_timestamp_ms)
    SAME_NUMBER(priority, brokk_message_priority)
    SAME_NUMBER(attempt, brokk_message_attempt)
#undef SAME_NUMBER
}

/* Reads msg with brokk_message_read (expecting OK) and compares with the accessors. */
static brokk_message_fields read_and_compare_at(const brokk_message *m, int line) {
    brokk_message_fields f;
    memset(&f, 0xAB, sizeof f);
    brokk_status st = brokk_message_read(m, &f);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "brokk_message_read returned %s: %s", brokk_status_str(st),
                    brokk_last_error());
        memset(&f, 0, sizeof f);
        return f;
    }
    check_fields_match_at(m, &f, line);
    return f;
}
#define READ_AND_COMPARE(m) read_and_compare_at((m), __LINE__)

/* What a handler read, copied out for the test thread. */
typedef struct read_probe {
    recorder rec;             /* the accessors' view of each call */
    brokk_status null_out;    /* brokk_message_read(msg, NULL) inside the handler */
    brokk_message_fields last; /* the last read, views not to be followed after the call */
    uint32_t attempts[4];
    atomic_uint calls;
} read_probe;

static brokk_verdict read_probe_handler(void *ud, const brokk_message *m) {
    read_probe *p = ud;
    unsigned i = atomic_fetch_add(&p->calls, 1);
    brokk_message_fields f = READ_AND_COMPARE(m);
    p->null_out = brokk_message_read(m, NULL);
    if (i < 4) p->attempts[i] = f.attempt;
    p->last = f;
    recorder_add(&p->rec, m);
    return f.attempt == 1 ? BROKK_VERDICT_REQUEUE : BROKK_VERDICT_ACK;
}

static void message_read_in_a_handler(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    read_probe p;
    memset(&p, 0, sizeof p);
    recorder_init(&p.rec, BROKK_VERDICT_ACK);
    atomic_init(&p.calls, 0);
    p.null_out = BROKK_STATUS_PANIC;
    brokk_subscription_options so;
    memset(&so, 0, sizeof so);
    so.group = "readers";
    so.group_len = 7;
    uint64_t sid;
    CHECK_OK(brokk_broker_subscribe(b, "read.h", 6, read_probe_handler, &p, NULL, &so, &sid));
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "read-1";
    o.id_len = 6;
    o.metadata = "{\"k\":[1,2]}";
    o.metadata_len = strlen(o.metadata);
    o.priority = -42;
    const char *payload = "{\"caf\xc3\xa9\": true}";
    CHECK_OK(brokk_broker_publish(b, "read.h", 6, payload, strlen(payload), &o, NULL, 0));
    JOIN_OK(b);
    if (CHECK_EQ(atomic_load(&p.calls), 2)) {
        CHECK_EQ(p.attempts[0], 1); /* requeued once, then acked */
        CHECK_EQ(p.attempts[1], 2);
        rec *x = &p.rec.recs[1];
        /* The fields themselves, besides agreeing with the accessors (checked in the handler). */
        CHECK_STREQ(x->payload, payload);
        CHECK_STREQ(x->metadata, "{\"k\":[1,2]}");
        CHECK_STREQ(x->parent_id, "read-1");
        CHECK_STREQ(x->group, "readers");
        CHECK_EQ(p.last.subscription_id, sid);
        CHECK_EQ(p.last.priority, -42);
        CHECK_EQ(p.last.delivery_id, x->delivery_id);
        CHECK(p.last.timestamp_ms != 0);
    }
    CHECK_EQ(p.null_out, BROKK_STATUS_NULL_ARGUMENT);
    brokk_broker_free(b);
    recorder_destroy(&p.rec);
}

/* In a listener: on_publish's view (no delivery yet) and on_dispatched's. */
typedef struct read_listener {
    atomic_uint publishes, dispatches;
    uint64_t publish_delivery_id;
    uint32_t publish_attempt;
    size_t publish_parent_len;
    char publish_id[BROKK_ID_BUFFER_SIZE];
} read_listener;

static void read_on_publish(void *ud, const brokk_message *m) {
    read_listener *r = ud;
    brokk_message_fields f = READ_AND_COMPARE(m);
    r->publish_delivery_id = f.delivery_id;
    r->publish_attempt = f.attempt;
    r->publish_parent_len = f.parent_id.len;
    view_cstr(f.id, r->publish_id, sizeof r->publish_id);
    atomic_fetch_add(&r->publishes, 1);
}

static void read_on_dispatched(void *ud, const brokk_message *m) {
    READ_AND_COMPARE(m);
    atomic_fetch_add(&((read_listener *)ud)->dispatches, 1);
}

static void message_read_in_a_listener(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    read_listener r;
    memset(&r, 0, sizeof r);
    atomic_init(&r.publishes, 0);
    atomic_init(&r.dispatches, 0);
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_publish = read_on_publish;
    l.on_dispatched = read_on_dispatched;
    l.user_data = &r;
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "pub-7";
    o.id_len = 5;
    CHECK_OK(brokk_broker_publish(b, "read.l", 6, "[7]", 3, &o, NULL, 0));
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "read.l", NULL, 1, 0, d);
    ACK_ALL(b, d, n);
    free_all(d, n);
    JOIN_OK(b); /* every listener event delivered */
    CHECK_EQ(atomic_load(&r.publishes), 1);
    CHECK_EQ(atomic_load(&r.dispatches), 1);
    CHECK_EQ(r.publish_delivery_id, 0); /* on_publish: no delivery yet */
    CHECK_EQ(r.publish_attempt, 0);
    CHECK_EQ(r.publish_parent_len, 0);
    CHECK_STREQ(r.publish_id, "pub-7");
    brokk_broker_free(b);
}

/* On fetched deliveries: equal to the accessors, and the views live as long as the handle,
 * through acks and other broker activity. */
static void message_read_on_fetched_deliveries(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_batch_message m[3];
    memset(m, 0, sizeof m);
    static const char *const payloads[3] = {"{\"n\":0}", "[1]", "\"two\""};
    for (int i = 0; i < 3; i++) {
        m[i].payload = payloads[i];
        m[i].payload_len = strlen(payloads[i]);
        m[i].options.priority = 3 - i;
    }
    m[1].options.metadata = "{\"meta\":1}";
    m[1].options.metadata_len = 10;
    char ids[3 * BROKK_ID_BUFFER_SIZE];
    CHECK_OK(brokk_broker_publish_batch(b, "read.f", 6, m, 3, ids, sizeof ids));
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "read.f", FOPTS("fg", 2), 8, 0, d);
    brokk_message_fields f[3];
    if (CHECK_EQ(n, 3)) {
        for (size_t i = 0; i < 3; i++) {
            f[i] = READ_AND_COMPARE(msg_of(d[i]));
            CHECK_STR(f[i].payload, payloads[i]);
            CHECK_STR(f[i].metadata, i == 1 ? "{\"meta\":1}" : "{}");
            CHECK_STR(f[i].parent_id, ids + i * BROKK_ID_BUFFER_SIZE);
            CHECK_STR(f[i].group, "fg");
            CHECK_STR(f[i].topic, "read.f");
            CHECK_EQ(f[i].subscription_id, 0); /* a fetched delivery */
            CHECK_EQ(f[i].attempt, 1);
            CHECK_EQ(f[i].priority, 3 - (int32_t)i);
            char dec[32];
            snprintf(dec, sizeof dec, "%" PRIu64, f[i].delivery_id);
            CHECK_STR(f[i].id, dec);
        }
        ACK_ALL(b, d, n);
        for (int k = 0; k < 20; k++) CHECK_OK(publish_str(b, "other", "[0]"));
        CHECK_OK(brokk_broker_purge(b, NULL, 0, NULL));
        for (size_t i = 0; i < 3; i++) {
            CHECK_STR(f[i].payload, payloads[i]); /* still valid: the handles are not freed */
            READ_AND_COMPARE(msg_of(d[i]));
        }
    }
    brokk_broker_free(b);
    /* The handles outlive the broker as memory to read and release. */
    for (size_t i = 0; i < n; i++) {
        brokk_message_fields g = READ_AND_COMPARE(msg_of(d[i]));
        CHECK_STR(g.payload, payloads[i]);
    }
    free_all(d, n);
}

static void message_read_null_arguments(void) {
    brokk_message_fields f, untouched;
    memset(&f, 0xAB, sizeof f);
    memcpy(&untouched, &f, sizeof f);
    CHECK_STATUS(brokk_message_read(NULL, &f), BROKK_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&f, &untouched, sizeof f) == 0);
    CHECK_STATUS(brokk_message_read(NULL, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_message_read(brokk_delivery_message(NULL), &f), BROKK_STATUS_NULL_ARGUMENT);
    CHECK(memcmp(&f, &untouched, sizeof f) == 0);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "rn", "1"));
    brokk_delivery *d[MAX_BATCH];
    size_t n = FETCH_BATCH(b, "rn", NULL, 1, 0, d);
    if (CHECK_EQ(n, 1)) CHECK_STATUS(brokk_message_read(msg_of(d[0]), NULL), BROKK_STATUS_NULL_ARGUMENT);
    ACK_ALL(b, d, n);
    free_all(d, n);
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(fetch_batch_takes_highest_priority_first),
    TEST_CASE(fetch_batch_smaller_than_backlog_continues_in_order),
    TEST_CASE(fetch_batch_larger_than_backlog),
    TEST_CASE(fetch_batch_empty_queue_returns_zero),
    TEST_CASE(fetch_batch_waits_for_the_first),
    TEST_CASE(fetch_batch_nack_one_ack_the_rest),
    TEST_CASE(fetch_batch_options_apply_to_each_delivery),
    TEST_CASE(fetch_batch_concurrent_fetchers_take_each_once),
    TEST_CASE(fetch_batch_rejects_bad_input),
    TEST_CASE(blocked_fetch_batch_returns_closed),
    TEST_CASE(batch_calls_serve_queued_while_closing),
    TEST_CASE(batch_calls_after_close_are_closed),
    TEST_CASE(ack_batch_empty_and_acked_out_optional),
    TEST_CASE(ack_batch_rejects_null_arguments),
    TEST_CASE(ack_batch_acks_around_failures),
    TEST_CASE(ack_batch_of_handler_deliveries),
    TEST_CASE(message_read_in_a_handler),
    TEST_CASE(message_read_in_a_listener),
    TEST_CASE(message_read_on_fetched_deliveries),
    TEST_CASE(message_read_null_arguments),
};

int main(int argc, char **argv) { return RUN_TESTS("test_batch", TESTS, argc, argv); }
