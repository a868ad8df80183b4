/*
 * What happens to deliveries that are not settled in time or keep failing, and to publishes
 * that find a group's queue full: ack deadlines, attempt limits, dead-letter topics, requeue
 * delays (brokk_message_set_requeue_delay and nack's requeue_delay_ms), and backpressure.
 * Time is only ever a lower bound here ("no earlier than"), never an upper one.
 */
#include "recorder.h"

static brokk_status subscribe_policy(const brokk_broker *b, const char *topic,
                                     brokk_handler_cb h, void *ud, bool manual,
                                     uint64_t ack_deadline_ms, uint32_t max_attempts,
                                     const char *dlq, uint64_t *sid) {
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    o.manual_ack = manual;
    o.ack_deadline_ms = ack_deadline_ms;
    o.max_attempts = max_attempts;
    o.dead_letter_topic = dlq;
    o.dead_letter_topic_len = dlq ? strlen(dlq) : 0;
    return brokk_broker_subscribe(b, topic, strlen(topic), h, ud, NULL, &o, sid);
}

/* Records every attempt (and when it came) and answers with `verdict`. */
typedef struct attempts {
    pthread_mutex_t m;
    uint32_t attempt[32];
    uint64_t delivery[32];
    uint64_t at_ms[32];
    unsigned n;
    brokk_verdict verdict;
    uint64_t requeue_delay_ms; /* set with brokk_message_set_requeue_delay before REQUEUE */
    brokk_status delay_status;
} attempts;

static void attempts_init(attempts *a, brokk_verdict v) {
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->m, NULL);
    a->verdict = v;
}

static unsigned attempts_count(attempts *a) {
    pthread_mutex_lock(&a->m);
    unsigned n = a->n;
    pthread_mutex_unlock(&a->m);
    return n;
}

static brokk_verdict attempts_handler(void *ud, const brokk_message *m) {
    attempts *a = ud;
    pthread_mutex_lock(&a->m);
    if (a->n < 32) {
        a->attempt[a->n] = brokk_message_attempt(m);
        a->delivery[a->n] = brokk_message_delivery_id(m);
        a->at_ms[a->n] = mono_ms();
        a->n++;
    }
    pthread_mutex_unlock(&a->m);
    if (a->requeue_delay_ms)
        a->delay_status = brokk_message_set_requeue_delay(m, a->requeue_delay_ms);
    return a->verdict;
}

static bool wait_attempts(attempts *a, unsigned n) {
    uint64_t end = mono_ms() + wait_ms();
    while (attempts_count(a) < n) {
        if (mono_ms() > end) return false;
        sleep_ms(1);
    }
    return true;
}

/* ---- ack deadlines ---------------------------------------------------------------------------- */

/* A manual-ack delivery left unsettled past its deadline comes back with attempt + 1. */
static void ack_deadline_redelivers_subscription(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog log;
    evlog_init(&log);
    brokk_listener l = evlog_listener(&log);
    uint64_t lid, sid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    attempts a;
    attempts_init(&a, BROKK_VERDICT_LATER); /* never acks */
    CHECK_OK(subscribe_policy(b, "dl", attempts_handler, &a, true, 40, 0, NULL, &sid));
    /* The deadline runs from the hand-out, which comes after the publish but can come well
     * before the handler starts (under valgrind): measure from the publish. */
    uint64_t t0 = mono_ms();
    CHECK_OK(publish_str(b, "dl", "1"));
    CHECK(wait_attempts(&a, 2));
    pthread_mutex_lock(&a.m);
    uint32_t a0 = a.attempt[0], a1 = a.attempt[1];
    uint64_t d0 = a.delivery[0], d1 = a.delivery[1], t1 = a.at_ms[1];
    pthread_mutex_unlock(&a.m);
    CHECK_EQ(a0, 1);
    CHECK_EQ(a1, 2);
    CHECK_EQ(d1, d0); /* the same delivery, again */
    CHECK(t1 + 1 >= t0 + 40); /* not before the deadline */
    CHECK_OK(brokk_broker_ack(b, d1)); /* settle the redelivery */
    /* Stop further expiries from racing the checks: unsubscribe, then let things settle. */
    CHECK_OK(brokk_broker_unsubscribe(b, sid));
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK(s.expired >= 1);
    CHECK(s.requeued >= 1);
    CHECK_EQ(s.dispatched, s.processed + s.failed + s.requeued + s.dropped);
    bool saw_deadline = false;
    pthread_mutex_lock(&log.m);
    for (size_t i = 0; i < log.n; i++)
        if (log.evs[i].kind == EV_FAILED && log.evs[i].reason &&
            strstr(log.evs[i].reason, "deadline"))
            saw_deadline = true;
    pthread_mutex_unlock(&log.m);
    if (!saw_deadline) FAILF("no on_failed event mentions the ack deadline");
    brokk_broker_free(b);
    evlog_destroy(&log);
}

static void ack_deadline_redelivers_fetch(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "fd", "\"x\""));
    brokk_fetch_options o;
    memset(&o, 0, sizeof o);
    o.ack_deadline_ms = 30;
    brokk_delivery *d = NULL;
    uint64_t t0 = mono_ms();
    CHECK_OK(brokk_broker_fetch(b, "fd", 2, &o, 0, &d));
    if (!CHECK(d != NULL)) {
        brokk_broker_free(b);
        return;
    }
    uint64_t id = brokk_message_delivery_id(brokk_delivery_message(d));
    brokk_delivery_free(d); /* not settled */
    d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "fd", 2, &o, wait_ms(), &d));
    uint64_t t1 = mono_ms();
    if (CHECK(d != NULL)) {
        CHECK_EQ(brokk_message_delivery_id(brokk_delivery_message(d)), id);
        CHECK_EQ(brokk_message_attempt(brokk_delivery_message(d)), 2);
        CHECK(t1 + 1 >= t0 + 30);
        CHECK_OK(brokk_broker_ack(b, id));
        brokk_delivery_free(d);
    }
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.expired, 1);
    CHECK_EQ(s.processed, 1);
    brokk_broker_free(b);
}

/* Acked in time: no redelivery, nothing expires. */
static void ack_within_deadline_settles(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "ok", "1"));
    brokk_fetch_options o;
    memset(&o, 0, sizeof o);
    o.ack_deadline_ms = 60000;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "ok", 2, &o, 0, &d));
    if (CHECK(d != NULL)) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(brokk_delivery_message(d))));
        brokk_delivery_free(d);
    }
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).expired, 0);
    brokk_broker_free(b); /* the pending deadline job must not outlive the broker */
}

/* ---- attempt limits and dead letters --------------------------------------------------------- */

static void max_attempts_gives_up(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    attempts a;
    attempts_init(&a, BROKK_VERDICT_REQUEUE);
    uint64_t sid;
    CHECK_OK(subscribe_policy(b, "ma", attempts_handler, &a, false, 0, 3, NULL, &sid));
    CHECK_OK(publish_str(b, "ma", "1"));
    JOIN_OK(b);
    CHECK_EQ(attempts_count(&a), 3);
    for (unsigned i = 0; i < 3 && i < a.n; i++) CHECK_EQ(a.attempt[i], i + 1);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.requeued, 2);
    CHECK_EQ(s.failed, 1);
    CHECK_EQ(s.dead_lettered, 0);
    CHECK_EQ(s.dispatched, s.processed + s.failed + s.requeued);
    brokk_broker_free(b);
}

static void given_up_delivery_goes_to_dead_letter_topic(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder dead;
    recorder_init(&dead, BROKK_VERDICT_ACK);
    attempts a;
    attempts_init(&a, BROKK_VERDICT_REQUEUE);
    uint64_t s1, s2;
    CHECK_OK(subscribe_simple(b, "dlq", recorder_handler, &dead, NULL, false, 1, &s1));
    CHECK_OK(subscribe_policy(b, "work", attempts_handler, &a, false, 0, 2, "dlq", &s2));
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "job-7";
    o.id_len = 5;
    o.metadata = "{\"trace\":\"t1\"}";
    o.metadata_len = strlen(o.metadata);
    o.priority = 3;
    CHECK_OK(brokk_broker_publish(b, "work", 4, "{\"task\":1}", 10, &o, NULL, 0));
    JOIN_OK(b);
    CHECK_EQ(attempts_count(&a), 2);
    if (CHECK_EQ(recorder_count(&dead), 1)) {
        rec *r = &dead.recs[0];
        CHECK_STREQ(r->payload, "{\"task\":1}");
        CHECK_STREQ(r->topic, "dlq");
        CHECK_EQ(r->priority, 3);
        /* Its metadata is the original plus a "dead_letter" story. */
        CHECK(strstr(r->metadata, "\"trace\"") != NULL);
        CHECK(strstr(r->metadata, "\"dead_letter\"") != NULL);
        CHECK(strstr(r->metadata, "\"job-7\"") != NULL);
        CHECK(strstr(r->metadata, "\"work\"") != NULL);
        CHECK(strstr(r->metadata, "\"attempts\"") != NULL);
        CHECK(strstr(r->metadata, "\"reason\"") != NULL);
        CHECK(strcmp(r->parent_id, "job-7") != 0); /* a new message with its own id */
    }
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dead_lettered, 1);
    CHECK_EQ(s.failed, 1); /* "also in failed" */
    CHECK_EQ(s.published, 2); /* the original and the dead letter */
    brokk_broker_free(b);
    recorder_destroy(&dead);
}

/* The same for a fetched delivery: its fetch options carry the policy. */
static void fetched_delivery_dead_lettered_after_max_attempts(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "pf", "\"p\""));
    brokk_fetch_options o;
    memset(&o, 0, sizeof o);
    o.max_attempts = 2;
    o.dead_letter_topic = "pf.dead";
    o.dead_letter_topic_len = 7;
    for (int i = 1; i <= 2; i++) {
        brokk_delivery *d = NULL;
        CHECK_OK(brokk_broker_fetch(b, "pf", 2, &o, 0, &d));
        if (!CHECK(d != NULL)) break;
        CHECK_EQ(brokk_message_attempt(brokk_delivery_message(d)), (uint32_t)i);
        CHECK_OK(brokk_broker_nack(b, brokk_message_delivery_id(brokk_delivery_message(d)), true,
                                   0, "again", 5));
        brokk_delivery_free(d);
    }
    brokk_delivery *gone = NULL;
    CHECK_OK(brokk_broker_fetch(b, "pf", 2, &o, 0, &gone));
    CHECK(gone == NULL);
    brokk_delivery_free(gone);
    CHECK_EQ(count_of(b, "pf.dead"), 1);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dead_lettered, 1);
    CHECK_EQ(s.requeued, 1);
    brokk_broker_free(b);
}

static void delivery_policy_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    atomic_uint freed = 0;
    uint64_t sid = 0xABCull;
    brokk_subscription_options so;
    memset(&so, 0, sizeof so);
    so.dead_letter_topic = "a b";
    so.dead_letter_topic_len = 3;
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, attempts_handler, &freed,
                                        count_free, &so, &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    so.dead_letter_topic = "";
    so.dead_letter_topic_len = 0;
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, attempts_handler, &freed, count_free, &so,
                                        &sid),
                 BROKK_STATUS_INVALID_TOPIC);
    so.dead_letter_topic = "\xff";
    so.dead_letter_topic_len = 1;
    CHECK_STATUS(brokk_broker_subscribe(b, "t", 1, attempts_handler, &freed, count_free, &so,
                                        &sid),
                 BROKK_STATUS_INVALID_UTF8);
    CHECK_EQ(sid, 0xABCull);
    CHECK_EQ(atomic_load(&freed), 0);
    brokk_fetch_options fo;
    memset(&fo, 0, sizeof fo);
    fo.dead_letter_topic = "x/y";
    fo.dead_letter_topic_len = 3;
    brokk_delivery *d = (brokk_delivery *)&fo;
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, &fo, 0, &d), BROKK_STATUS_INVALID_TOPIC);
    fo.dead_letter_topic = "ok";
    fo.dead_letter_topic_len = 2;
    fo.group = "a b";
    fo.group_len = 3;
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, &fo, 0, &d), BROKK_STATUS_INVALID_GROUP);
    CHECK(d == (brokk_delivery *)&fo);
    CHECK_STATUS(brokk_message_set_requeue_delay(NULL, 5), BROKK_STATUS_NULL_ARGUMENT);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 0);
}

/* ---- requeue delays --------------------------------------------------------------------------- */

static void handler_requeue_delay_is_honoured(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    attempts a;
    attempts_init(&a, BROKK_VERDICT_REQUEUE);
    a.requeue_delay_ms = 40;
    uint64_t sid;
    CHECK_OK(subscribe_policy(b, "rd", attempts_handler, &a, false, 0, 2, NULL, &sid));
    CHECK_OK(publish_str(b, "rd", "1"));
    JOIN_OK(b); /* waits for the delayed redelivery too */
    CHECK_EQ(a.delay_status, BROKK_STATUS_OK);
    if (CHECK_EQ(attempts_count(&a), 2)) {
        CHECK_EQ(a.attempt[1], 2);
        CHECK(a.at_ms[1] + 1 >= a.at_ms[0] + 40);
    }
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.requeued, 1);
    CHECK_EQ(s.failed, 1); /* the second REQUEUE hit max_attempts 2 */
    CHECK_EQ(s.delayed, 0);
    brokk_broker_free(b);
}

/* A requeue delayed far into the future: waiting, not queued; join and close account for it. */
static void nack_requeue_delay_holds_the_delivery(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "nd", "1"));
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "nd", 2, NULL, 0, &d));
    if (!CHECK(d != NULL)) {
        brokk_broker_free(b);
        return;
    }
    uint64_t id = brokk_message_delivery_id(brokk_delivery_message(d));
    brokk_delivery_free(d);
    CHECK_OK(brokk_broker_nack(b, id, true, 3600 * 1000, "later", 5));
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.delayed, 1);
    CHECK_EQ(s.requeued, 1);
    CHECK_EQ(count_of(b, "nd"), 0); /* not queued yet */
    d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "nd", 2, NULL, 0, &d));
    CHECK(d == NULL);
    uint64_t rem = 0;
    CHECK_STATUS(brokk_broker_join(b, 0, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 1);
    CHECK_STATUS(brokk_broker_ack(b, id), BROKK_STATUS_ALREADY_SETTLED);
    brokk_close_report r;
    CHECK_OK(brokk_broker_close(b, 0, true, &r));
    /* The fetch used the named group "default": a durable store (a SQLite file, Redis) keeps
     * its delayed delivery for later brokers, so a forced close drops nothing there. */
    CHECK_EQ(r.dropped, test_durable() ? 0 : 1);
    brokk_broker_free(b);
}

/* ---- backpressure ------------------------------------------------------------------------------ */

static brokk_broker *capped_broker(brokk_backpressure bp, uint64_t capacity, uint64_t timeout) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    o.queue_capacity = capacity;
    o.backpressure = bp;
    o.publish_timeout_ms = timeout;
    return new_broker_opts(&o);
}

static void backpressure_fail_refuses_at_once(void) {
    brokk_broker *b = capped_broker(BROKK_BACKPRESSURE_FAIL, 2, 0);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "bp", 2, FOPTS("slow", 4), 0, &d)); /* a group nobody drains */
    CHECK(d == NULL);
    CHECK_OK(brokk_broker_fetch(b, "bp", 2, FOPTS("fast", 4), 0, &d));
    CHECK_OK(publish_str(b, "bp", "1"));
    CHECK_OK(publish_str(b, "bp", "2"));
    char id[BROKK_ID_BUFFER_SIZE] = "untouched";
    CHECK_STATUS(brokk_broker_publish(b, "bp", 2, "3", 1, NULL, id, sizeof id), BROKK_STATUS_FULL);
    CHECK_STREQ(id, "untouched");
    brokk_batch_message m;
    memset(&m, 0, sizeof m);
    m.payload = "4";
    m.payload_len = 1;
    CHECK_STATUS(brokk_broker_publish_batch(b, "bp", 2, &m, 1, NULL, 0), BROKK_STATUS_FULL);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 2); /* nothing published: no group got the refused ones */
    CHECK_EQ(count_of(b, "bp"), 4);
    CHECK_EQ(s.full_dropped, 0);
    CHECK_EQ(s.groups, 2);
    brokk_broker_free(b);
}

static void backpressure_drop_skips_the_full_group(void) {
    brokk_broker *b = capped_broker(BROKK_BACKPRESSURE_DROP, 2, 0);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "bd", 2, FOPTS("slow", 4), 0, &d));
    CHECK_OK(publish_str(b, "bd", "1"));
    CHECK_OK(publish_str(b, "bd", "2"));
    /* "fast" joins now and drains as it goes; "slow" is full. */
    char buf[16];
    CHECK_OK(brokk_broker_fetch(b, "bd", 2, FOPTS("fast", 4), 0, &d));
    CHECK(d == NULL);
    CHECK_OK(publish_str(b, "bd", "3")); /* published; "slow" does not get it */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 3);
    CHECK_EQ(s.full_dropped, 1);
    CHECK_OK(brokk_broker_fetch(b, "bd", 2, FOPTS("fast", 4), 0, &d));
    if (CHECK(d != NULL)) {
        CHECK_STREQ(view_cstr(brokk_message_payload(brokk_delivery_message(d)), buf, sizeof buf),
                    "3");
        brokk_broker_ack(b, brokk_message_delivery_id(brokk_delivery_message(d)));
        brokk_delivery_free(d);
    }
    brokk_broker_free(b);
}

static void backpressure_block_times_out_with_full(void) {
    brokk_broker *b = capped_broker(BROKK_BACKPRESSURE_BLOCK, 1, 40);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "bb", 2, FOPTS("g", 1), 0, &d));
    CHECK_OK(publish_str(b, "bb", "1"));
    uint64_t t0 = mono_ms();
    CHECK_STATUS(publish_str(b, "bb", "2"), BROKK_STATUS_FULL);
    CHECK(mono_ms() + 1 >= t0 + 40); /* it waited out publish_timeout_ms first */
    CHECK_EQ(stats_of(b).published, 1);
    brokk_broker_free(b);
}

typedef struct drainer {
    const brokk_broker *b;
    unsigned delay_ms;
    brokk_status st;
} drainer;

static void *drain_later(void *arg) {
    drainer *x = arg;
    sleep_ms(x->delay_ms);
    brokk_delivery *d = NULL;
    x->st = brokk_broker_fetch(x->b, "bw", 2, FOPTS("g", 1), 0, &d);
    if (d) {
        brokk_broker_ack(x->b, brokk_message_delivery_id(brokk_delivery_message(d)));
        brokk_delivery_free(d);
    }
    return NULL;
}

static void backpressure_block_waits_for_room(void) {
    brokk_broker *b = capped_broker(BROKK_BACKPRESSURE_BLOCK, 1, 4 * wait_ms());
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "bw", 2, FOPTS("g", 1), 0, &d));
    CHECK_OK(publish_str(b, "bw", "1"));
    drainer x = {b, 30, BROKK_STATUS_PANIC};
    pthread_t t;
    pthread_create(&t, NULL, drain_later, &x);
    CHECK_OK(publish_str(b, "bw", "2")); /* blocks until the drainer makes room */
    pthread_join(t, NULL);
    CHECK_EQ(x.st, BROKK_STATUS_OK);
    CHECK_EQ(count_of(b, "bw"), 1);
    brokk_broker_free(b);
}

static void backpressure_options_checked(void) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    static const uint32_t bad[] = {3, 4, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o.backpressure = bad[i];
        brokk_broker *out = (brokk_broker *)&o;
        CHECK_STATUS(brokk_broker_new(NULL, &o, &out), BROKK_STATUS_INVALID_ARGUMENT);
        CHECK(out == (brokk_broker *)&o);
    }
    static const uint32_t good[] = {BROKK_BACKPRESSURE_BLOCK, BROKK_BACKPRESSURE_FAIL,
                                    BROKK_BACKPRESSURE_DROP};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        o.backpressure = good[i];
        o.queue_capacity = i == 0 ? 0 : (i == 1 ? 1 : UINT64_MAX);
        o.publish_timeout_ms = i == 2 ? UINT64_MAX : 0;
        brokk_broker *b = new_broker_opts(&o);
        if (b) {
            CHECK_OK(publish_str(b, "t", "1"));
            brokk_broker_free(b);
        }
    }
}

static const test_case TESTS[] = {
    TEST_CASE(ack_deadline_redelivers_subscription),
    TEST_CASE(ack_deadline_redelivers_fetch),
    TEST_CASE(ack_within_deadline_settles),
    TEST_CASE(max_attempts_gives_up),
    TEST_CASE(given_up_delivery_goes_to_dead_letter_topic),
    TEST_CASE(fetched_delivery_dead_lettered_after_max_attempts),
    TEST_CASE(delivery_policy_bad_input),
    TEST_CASE(handler_requeue_delay_is_honoured),
    TEST_CASE(nack_requeue_delay_holds_the_delivery),
    TEST_CASE(backpressure_fail_refuses_at_once),
    TEST_CASE(backpressure_drop_skips_the_full_group),
    TEST_CASE(backpressure_block_times_out_with_full),
    TEST_CASE(backpressure_block_waits_for_room),
    TEST_CASE(backpressure_options_checked),
};

int main(int argc, char **argv) { return RUN_TESTS("test_reliability", TESTS, argc, argv); }
