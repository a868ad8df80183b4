/*
 * Delivery: what a handler sees, fan-out, unrouted messages, ordering and concurrency,
 * subscribe/unsubscribe and their bad input, and when free_user_data runs.
 */
#include "recorder.h"

static brokk_verdict ack_handler(void *ud, const brokk_message *m) {
    (void)ud;
    (void)m;
    return BROKK_VERDICT_ACK;
}

static void delivery_shows_the_published_message(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid = 0;
    CHECK_OK(subscribe_simple(b, "orders.eu", recorder_handler, &r, recorder_free, false, 1,
                              &sid));
    CHECK(sid != 0);
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "msg-1";
    o.id_len = 5;
    o.metadata = "{\"trace\":\"t-9\"}";
    o.metadata_len = strlen(o.metadata);
    o.priority = 7; /* above the next message's 0: first either way */
    const char *payload = "{\"qty\": 3, \"sku\": \"A-1\", \"note\": \"caf\xc3\xa9\"}";
    char id[BROKK_ID_BUFFER_SIZE];
    uint64_t before = wall_ms();
    CHECK_OK(brokk_broker_publish(b, "orders.eu", 9, payload, strlen(payload), &o, id, sizeof id));
    uint64_t after = wall_ms();
    CHECK_STREQ(id, "msg-1");
    CHECK_OK(publish_str(b, "orders.eu", "[]")); /* no metadata */
    JOIN_OK(b);
    if (CHECK_EQ(recorder_count(&r), 2)) {
        rec *x = &r.recs[0];
        CHECK_STREQ(x->topic, "orders.eu");
        CHECK_MEM(x->payload, x->payload_len, payload, strlen(payload));
        CHECK_STREQ(x->metadata, "{\"trace\":\"t-9\"}");
        CHECK_STREQ(x->parent_id, "msg-1");
        CHECK(x->delivery_id != 0);
        char dec[32];
        snprintf(dec, sizeof dec, "%" PRIu64, x->delivery_id);
        CHECK_STREQ(x->id, dec);
        CHECK_EQ(x->attempt, 1);
        CHECK_EQ(x->subscription_id, sid);
        CHECK_EQ(x->priority, 7);
        CHECK_STREQ(x->group, ""); /* an ungrouped subscription's delivery */
        CHECK(x->timestamp_ms != 0);
        /* Wall clock ms at publish; generous slack for clock granularity, not a timing test. */
        CHECK(x->timestamp_ms + 1000 >= before && x->timestamp_ms <= after + 1000);
        CHECK(!pthread_equal(x->thread, pthread_self()));
        rec *y = &r.recs[1];
        CHECK_STREQ(y->metadata, "{}");
        CHECK_EQ(y->priority, 0);
        CHECK_STREQ(y->payload, "[]");
        CHECK(y->delivery_id != x->delivery_id);
        snprintf(dec, sizeof dec, "%" PRIu64, y->delivery_id);
        CHECK_STREQ(y->id, dec);
        CHECK(strlen(y->parent_id) > 0);
        CHECK(strcmp(y->parent_id, "msg-1") != 0);
    }
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 2);
    CHECK_EQ(s.dispatched, 2);
    CHECK_EQ(s.processed, 2);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r.freed), 1);
    recorder_destroy(&r);
}

static void message_accessors_accept_null(void) {
    brokk_str v[] = {brokk_message_topic(NULL), brokk_message_payload(NULL),
                     brokk_message_metadata(NULL), brokk_message_id(NULL),
                     brokk_message_parent_id(NULL), brokk_message_group(NULL)};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        CHECK(v[i].ptr != NULL); /* "never NULL" */
        CHECK_EQ(v[i].len, 0);
    }
    CHECK_EQ(brokk_message_delivery_id(NULL), 0);
    CHECK_EQ(brokk_message_subscription_id(NULL), 0);
    CHECK_EQ(brokk_message_attempt(NULL), 0);
    CHECK_EQ(brokk_message_timestamp_ms(NULL), 0);
    CHECK_EQ(brokk_message_priority(NULL), 0);
    CHECK_STATUS(brokk_message_set_failure_reason(NULL, "x", 1), BROKK_STATUS_NULL_ARGUMENT);
}

/* set_failure_reason's own bad input, from inside a handler. */
typedef struct reason_probe {
    brokk_status null_reason, bad_utf8, ok;
    atomic_uint done;
} reason_probe;

static brokk_verdict reason_probe_handler(void *ud, const brokk_message *m) {
    reason_probe *p = ud;
    p->null_reason = brokk_message_set_failure_reason(m, NULL, 3);
    p->bad_utf8 = brokk_message_set_failure_reason(m, "bad \xff", 5);
    p->ok = brokk_message_set_failure_reason(m, "", 0);
    atomic_fetch_add(&p->done, 1);
    return BROKK_VERDICT_ACK;
}

static void set_failure_reason_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    reason_probe p;
    memset(&p, 0, sizeof p);
    atomic_init(&p.done, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "r", reason_probe_handler, &p, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "r", "1"));
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&p.done), 1);
    CHECK_EQ(p.null_reason, BROKK_STATUS_NULL_ARGUMENT);
    CHECK_EQ(p.bad_utf8, BROKK_STATUS_INVALID_UTF8);
    CHECK_EQ(p.ok, BROKK_STATUS_OK);
    /* A reason alone does not fail an acked delivery. */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, 1);
    CHECK_EQ(s.failed, 0);
    brokk_broker_free(b);
}

/* With retention OFF, a message on a topic without any group is unrouted and goes nowhere. */
static void unrouted_message_goes_nowhere(void) {
    brokk_broker *b = new_broker_retention(2, BROKK_RETENTION_OFF, 0);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "somebody", recorder_handler, &r, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "nobody", "{\"lost\":true}"));
    CHECK_OK(publish_str(b, "nobody", "2"));
    JOIN_OK(b); /* must not wait for a delivery that will never happen */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 2);
    CHECK_EQ(s.unrouted, 2);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(s.topics, 2);
    CHECK_EQ(count_of(b, "nobody"), 0);
    CHECK_EQ(recorder_count(&r), 0);
    brokk_broker_free(b);
    recorder_destroy(&r);
}

/* With the default policy the same messages are retained, delivered to nobody yet, and join
 * does not wait for them. */
static void message_without_group_is_retained(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "somebody", recorder_handler, &r, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "nobody", "{\"kept\":true}"));
    CHECK_OK(publish_str(b, "nobody", "2"));
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 2);
    CHECK_EQ(s.unrouted, 0);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(count_of(b, "nobody"), 2);
    CHECK_EQ(count_of(b, "somebody"), 0);
    CHECK_EQ(recorder_count(&r), 0);
    brokk_broker_free(b);
    recorder_destroy(&r);
}

static void only_messages_after_subscribe_are_delivered(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(publish_str(b, "late", "\"before\""));
    CHECK_OK(subscribe_simple(b, "late", recorder_handler, &r, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "late", "\"after\""));
    JOIN_OK(b);
    if (CHECK_EQ(recorder_count(&r), 1)) CHECK_STREQ(r.recs[0].payload, "\"after\"");
    /* The earlier one stays retained: an ungrouped subscription does not take it over. */
    CHECK_EQ(count_of(b, "late"), 1);
    brokk_broker_free(b);
    recorder_destroy(&r);
}

/* Ordered / concurrent consumption of numbered messages. */
typedef struct numbered {
    unsigned n;
    atomic_uint *count;  /* per message index */
    atomic_int last;     /* highest index seen so far (ordered runs) */
    atomic_uint out_of_order;
    atomic_uint inside, max_inside;
    atomic_uint total;
} numbered;

static void numbered_init(numbered *x, unsigned n) {
    x->n = n;
    x->count = calloc(n, sizeof *x->count);
    for (unsigned i = 0; i < n; i++) atomic_init(&x->count[i], 0);
    atomic_init(&x->last, -1);
    atomic_init(&x->out_of_order, 0);
    atomic_init(&x->inside, 0);
    atomic_init(&x->max_inside, 0);
    atomic_init(&x->total, 0);
}

static brokk_verdict numbered_handler(void *ud, const brokk_message *m) {
    numbered *x = ud;
    unsigned now = atomic_fetch_add(&x->inside, 1) + 1;
    unsigned max = atomic_load(&x->max_inside);
    while (now > max && !atomic_compare_exchange_weak(&x->max_inside, &max, now)) {
    }
    char buf[32];
    long i = strtol(view_cstr(brokk_message_payload(m), buf, sizeof buf), NULL, 10);
    if (i >= 0 && (unsigned long)i < x->n) {
        atomic_fetch_add(&x->count[i], 1);
        int prev = atomic_exchange(&x->last, (int)i);
        if (prev >= (int)i) atomic_fetch_add(&x->out_of_order, 1);
    } else {
        FAILF("unexpected payload %s", buf);
    }
    atomic_fetch_add(&x->total, 1);
    atomic_fetch_sub(&x->inside, 1);
    return BROKK_VERDICT_ACK;
}

static void run_numbered(uint32_t workers, uint32_t concurrency, bool want_order) {
    brokk_broker *b = new_broker(workers);
    if (!b) return;
    numbered x;
    numbered_init(&x, scaled_count(1000));
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "num", numbered_handler, &x, NULL, false, concurrency, &sid));
    for (unsigned i = 0; i < x.n; i++) {
        char p[16];
        snprintf(p, sizeof p, "%u", i);
        if (!CHECK_OK(publish_str(b, "num", p))) break;
    }
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&x.total), x.n);
    for (unsigned i = 0; i < x.n; i++)
        if (atomic_load(&x.count[i]) != 1)
            FAILF("message %u handled %u times", i, atomic_load(&x.count[i]));
    unsigned limit = concurrency == 0 ? 1 : concurrency;
    if (atomic_load(&x.max_inside) > limit)
        FAILF("%u handler invocations ran at once; concurrency is %u", atomic_load(&x.max_inside),
              limit);
    if (want_order) CHECK_EQ(atomic_load(&x.out_of_order), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, x.n);
    CHECK_EQ(s.dispatched, x.n);
    brokk_broker_free(b);
    free(x.count);
}

static void concurrency_1_keeps_order(void) { run_numbered(4, 1, true); }
static void concurrency_0_means_1(void) { run_numbered(4, 0, true); }
static void concurrency_4_delivers_each_once(void) { run_numbered(4, 4, false); }
static void concurrency_above_workers_is_fine(void) { run_numbered(2, 64, false); }

/* subscribe: every bad input fails with its status, creates nothing, and keeps user_data. */
static void subscribe_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    atomic_uint freed = 0;
    const uint64_t SENT = 0xDEADBEEFull;
    uint64_t sid = SENT;
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    char long_topic[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_topic, 'a', sizeof long_topic);
    CHECK_STATUS(brokk_broker_subscribe(NULL, "t", 1, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_subscribe(b, NULL, 1, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, NULL, &freed, count_free, &o, &sid),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, ack_handler, &freed, count_free, &o, NULL),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_subscribe(b, "", 0, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_subscribe(b, "a b", 3, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_subscribe(b, "a/b", 3, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_subscribe(b, long_topic, sizeof long_topic, ack_handler, &freed,
                                        count_free, &o, &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_subscribe(b, "t\xff", 2, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_UTF8);
    o.concurrency = BROKK_MAX_CONCURRENCY + 1;
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_ARGUMENT);
    o.concurrency = UINT32_MAX;
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_ARGUMENT);
    /* Group names follow the topic rules. */
    o.concurrency = 0;
    static const struct {
        const char *g;
        size_t len;
        brokk_status want;
    } groups[] = {
        {"", 0, BROKK_STATUS_INVALID_GROUP},        {"a b", 3, BROKK_STATUS_INVALID_GROUP},
        {"a/b", 3, BROKK_STATUS_INVALID_GROUP},     {"x\0y", 3, BROKK_STATUS_INVALID_GROUP},
        {"caf\xc3\xa9", 5, BROKK_STATUS_INVALID_GROUP}, {"g\xff", 2, BROKK_STATUS_INVALID_UTF8},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        o.group = groups[i].g;
        o.group_len = groups[i].len;
        CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, ack_handler, &freed, count_free, &o, &sid),
                     groups[i].want);
    }
    o.group = long_topic;
    o.group_len = sizeof long_topic; /* 256 bytes */
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, ack_handler, &freed, count_free, &o, &sid),
                 BROKK_STATUS_INVALID_GROUP);
    o.group = NULL;
    CHECK_EQ(sid, SENT);
    CHECK_EQ(atomic_load(&freed), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.subscriptions, 0);
    CHECK_EQ(s.topics, 0);
    /* Nothing was delivered to a failed subscription. */
    CHECK_OK(publish_str(b, "t", "1"));
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).dispatched, 0);
    CHECK_EQ(count_of(b, "t"), 1); /* retained: no group */
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 0); /* never taken, never freed */
}

static void subscribe_options_limits_and_defaults(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    atomic_uint freed = 0;
    uint64_t a = 0, c = 0, d = 0;
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    o.concurrency = BROKK_MAX_CONCURRENCY;
    CHECK_OK(brokk_broker_subscribe(b, "lim", 3, ack_handler, &freed, count_free, &o, &a));
    CHECK_OK(brokk_broker_subscribe(b, "lim", 3, ack_handler, &freed, count_free, NULL, &c));
    CHECK_OK(brokk_broker_subscribe(b, "lim", 3, ack_handler, NULL, NULL, NULL, &d));
    CHECK(a != 0 && c != 0 && d != 0 && a != c && c != d && a != d);
    CHECK_OK(publish_str(b, "lim", "1"));
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.subscriptions, 3);
    CHECK_EQ(s.processed, 3);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 2);
}

/* Subscribe copies the topic it is given. */
static void subscribe_copies_topic(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    char *topic = strdup("copied.topic");
    uint64_t sid;
    CHECK_OK(brokk_broker_subscribe(b, topic, strlen(topic), recorder_handler, &r, NULL, NULL,
                                    &sid));
    memset(topic, 'x', strlen(topic));
    free(topic);
    CHECK_OK(publish_str(b, "copied.topic", "1"));
    JOIN_OK(b);
    if (CHECK_EQ(recorder_count(&r), 1)) CHECK_STREQ(r.recs[0].topic, "copied.topic");
    brokk_broker_free(b);
    recorder_destroy(&r);
}

static void unsubscribe_stops_delivery(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "u", recorder_handler, &r, recorder_free, false, 1, &sid));
    CHECK_OK(publish_str(b, "u", "1"));
    JOIN_OK(b);
    CHECK_OK(brokk_broker_unsubscribe(b, sid));
    CHECK(wait_atomic_ge(&r.freed, 1)); /* finaliser once the subscription is gone */
    for (int i = 0; i < 5; i++) CHECK_OK(publish_str(b, "u", "2"));
    JOIN_OK(b);
    CHECK_EQ(recorder_count(&r), 1);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.subscriptions, 0);
    CHECK_EQ(s.dispatched, 1);
    CHECK_EQ(count_of(b, "u"), 5); /* the topic has no group left: retained */
    CHECK_EQ(s.topics, 1); /* topics live as long as the broker */
    CHECK_STATUS(brokk_broker_unsubscribe(b, sid), BROKK_STATUS_UNKNOWN_SUBSCRIPTION);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r.freed), 1); /* not again at free */
    recorder_destroy(&r);
}

static void unsubscribe_unknown_ids(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_STATUS(brokk_broker_unsubscribe(b, 0), BROKK_STATUS_UNKNOWN_SUBSCRIPTION);
    CHECK_STATUS(brokk_broker_unsubscribe(b, 12345), BROKK_STATUS_UNKNOWN_SUBSCRIPTION);
    CHECK_STATUS(brokk_broker_unsubscribe(b, UINT64_MAX), BROKK_STATUS_UNKNOWN_SUBSCRIPTION);
    CHECK_STATUS(brokk_broker_unsubscribe(NULL, 1), BROKK_STATUS_NULL_ARGUMENT);
    /* A subscription id of one broker means nothing to another. */
    brokk_broker *other = new_broker(1);
    uint64_t sid;
    if (other) {
        CHECK_OK(subscribe_simple(other, "x", ack_handler, NULL, NULL, false, 1, &sid));
        CHECK_STATUS(brokk_broker_unsubscribe(b, sid), BROKK_STATUS_UNKNOWN_SUBSCRIPTION);
        CHECK_OK(brokk_broker_unsubscribe(other, sid));
        brokk_broker_free(other);
    }
    brokk_broker_free(b);
}

/* A handler that blocks on a gate and records whether its finaliser ran while it was inside. */
typedef struct blocking {
    gate g;
    atomic_uint inside;
    atomic_uint calls;
    atomic_uint done;
    atomic_uint freed;
    atomic_uint freed_while_inside;
} blocking;

static void blocking_init(blocking *x) {
    gate_init(&x->g);
    atomic_init(&x->inside, 0);
    atomic_init(&x->calls, 0);
    atomic_init(&x->done, 0);
    atomic_init(&x->freed, 0);
    atomic_init(&x->freed_while_inside, 0);
}

static brokk_verdict blocking_handler(void *ud, const brokk_message *m) {
    (void)m;
    blocking *x = ud;
    atomic_fetch_add(&x->inside, 1);
    atomic_fetch_add(&x->calls, 1);
    gate_pass(&x->g);
    atomic_fetch_sub(&x->inside, 1);
    atomic_fetch_add(&x->done, 1);
    return BROKK_VERDICT_ACK;
}

static void blocking_free(void *ud) {
    blocking *x = ud;
    if (atomic_load(&x->inside) != 0) atomic_fetch_add(&x->freed_while_inside, 1);
    atomic_fetch_add(&x->freed, 1);
}

/* free_user_data runs once, after the last running invocation, when unsubscribed mid-call. */
static void free_user_data_after_last_invocation(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    blocking x;
    blocking_init(&x);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "blk", blocking_handler, &x, blocking_free, false, 1, &sid));
    CHECK_OK(publish_str(b, "blk", "1"));
    CHECK(gate_wait_entered(&x.g, 1));
    CHECK_OK(brokk_broker_unsubscribe(b, sid));
    /* The handler cannot return before the gate opens, so the finaliser must not have run. */
    sleep_ms(10);
    CHECK_EQ(atomic_load(&x.freed), 0);
    gate_open(&x.g);
    CHECK(wait_atomic_ge(&x.freed, 1));
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&x.freed), 1);
    CHECK_EQ(atomic_load(&x.freed_while_inside), 0);
    CHECK_EQ(atomic_load(&x.done), 1);
    CHECK_EQ(stats_of(b).processed, 1);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&x.freed), 1);
    gate_destroy(&x.g);
}

/*
 * "Handler invocations that may run at once ...; above 1, concurrently": with concurrency 4,
 * four idle workers and four deliveries, all four handlers run at once. The first delivery is
 * taken by a worker before the other three are published, so the three find one invocation
 * running and must still start (they wait behind it if scheduling only compares the slots
 * taken with the queue length).
 */
static void concurrency_4_runs_four_at_once(void) {
    brokk_broker *b = new_broker(4);
    if (!b) return;
    blocking x;
    blocking_init(&x);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "par", blocking_handler, &x, blocking_free, false, 4, &sid));
    CHECK_OK(publish_str(b, "par", "1"));
    CHECK(gate_wait_entered(&x.g, 1));
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "par", "2"));
    if (!gate_wait_entered_for(&x.g, 4, short_wait_ms()))
        FAILF("only %u of 4 deliveries started while one handler was running (concurrency 4, "
              "4 workers)",
              atomic_load(&x.calls));
    gate_open(&x.g);
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&x.done), 4);
    CHECK_EQ(stats_of(b).processed, 4);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&x.freed), 1);
    CHECK_EQ(atomic_load(&x.freed_while_inside), 0);
    gate_destroy(&x.g);
}

/* Unsubscribe drops what was waiting for the subscription; a running call finishes. */
static void unsubscribe_drops_queued_deliveries(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    blocking x;
    blocking_init(&x);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "drop", blocking_handler, &x, blocking_free, false, 1, &sid));
    CHECK_OK(publish_str(b, "drop", "1"));
    CHECK(gate_wait_entered(&x.g, 1));
    for (int i = 0; i < 5; i++) CHECK_OK(publish_str(b, "drop", "2"));
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.queued, 5);
    CHECK_EQ(s.in_flight, 1);
    CHECK_OK(brokk_broker_unsubscribe(b, sid));
    s = stats_of(b);
    CHECK_EQ(s.dropped, 5);
    CHECK_EQ(s.queued, 0);
    gate_open(&x.g);
    JOIN_OK(b);
    CHECK_EQ(atomic_load(&x.calls), 1);
    s = stats_of(b);
    CHECK_EQ(s.processed, 1);
    CHECK_EQ(s.dispatched, 1);
    CHECK_EQ(s.dropped, 5);
    CHECK_EQ(s.in_flight, 0);
    CHECK(wait_atomic_ge(&x.freed, 1));
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&x.freed), 1);
    gate_destroy(&x.g);
}

/* Still subscribed at brokk_broker_free: finalised once, before free returns, never after. */
static void free_user_data_at_broker_free(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    atomic_uint freed[3] = {0, 0, 0};
    uint64_t sid;
    for (int i = 0; i < 3; i++)
        CHECK_OK(subscribe_simple(b, i == 2 ? "other" : "f", ack_handler, &freed[i], count_free,
                                  i == 1, 2, &sid));
    for (int i = 0; i < 20; i++) CHECK_OK(publish_str(b, "f", "1"));
    brokk_broker_free(b); /* without join: whatever still waits is dropped */
    for (int i = 0; i < 3; i++) CHECK_EQ(atomic_load(&freed[i]), 1);
    sleep_ms(20);
    for (int i = 0; i < 3; i++) CHECK_EQ(atomic_load(&freed[i]), 1);
}

/* brokk_broker_free waits for a running handler; its finaliser runs after it, before return. */
static void broker_free_waits_for_running_handler(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    blocking x;
    blocking_init(&x);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "w", blocking_handler, &x, blocking_free, false, 1, &sid));
    CHECK_OK(publish_str(b, "w", "1"));
    CHECK(gate_wait_entered(&x.g, 1));
    delayed_open d;
    delayed_open_start(&d, &x.g, 30);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&x.done), 1); /* the handler had returned */
    CHECK_EQ(atomic_load(&x.freed), 1);
    CHECK_EQ(atomic_load(&x.freed_while_inside), 0);
    delayed_open_join(&d);
    gate_destroy(&x.g);
}

/* With one worker thread every handler runs on that one thread, never the caller's. */
static void handlers_run_on_broker_threads(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t s1, s2;
    CHECK_OK(subscribe_simple(b, "a", recorder_handler, &r, NULL, false, 1, &s1));
    CHECK_OK(subscribe_simple(b, "b", recorder_handler, &r, NULL, false, 3, &s2));
    for (int i = 0; i < 10; i++) {
        CHECK_OK(publish_str(b, "a", "1"));
        CHECK_OK(publish_str(b, "b", "2"));
    }
    JOIN_OK(b);
    if (CHECK_EQ(recorder_count(&r), 20))
        for (size_t i = 0; i < 20; i++) {
            CHECK(!pthread_equal(r.recs[i].thread, pthread_self()));
            CHECK(pthread_equal(r.recs[i].thread, r.recs[0].thread));
        }
    brokk_broker_free(b);
    recorder_destroy(&r);
}

static const test_case TESTS[] = {
    TEST_CASE(delivery_shows_the_published_message),
    TEST_CASE(message_accessors_accept_null),
    TEST_CASE(set_failure_reason_bad_input),
    TEST_CASE(unrouted_message_goes_nowhere),
    TEST_CASE(message_without_group_is_retained),
    TEST_CASE(only_messages_after_subscribe_are_delivered),
    TEST_CASE(concurrency_1_keeps_order),
    TEST_CASE(concurrency_0_means_1),
    TEST_CASE(concurrency_4_delivers_each_once),
    TEST_CASE(concurrency_above_workers_is_fine),
    TEST_CASE(subscribe_rejects_bad_input),
    TEST_CASE(subscribe_options_limits_and_defaults),
    TEST_CASE(subscribe_copies_topic),
    TEST_CASE(unsubscribe_stops_delivery),
    TEST_CASE(unsubscribe_unknown_ids),
    TEST_CASE(free_user_data_after_last_invocation),
    TEST_CASE(concurrency_4_runs_four_at_once),
    TEST_CASE(unsubscribe_drops_queued_deliveries),
    TEST_CASE(free_user_data_at_broker_free),
    TEST_CASE(broker_free_waits_for_running_handler),
    TEST_CASE(handlers_run_on_broker_threads),
};

int main(int argc, char **argv) { return RUN_TESTS("test_delivery", TESTS, argc, argv); }
