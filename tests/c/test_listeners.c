/*
 * Listeners: every callback with its data and in order, add/remove and their bad input,
 * free_user_data, slow listeners that must never hold up deliveries.
 */
#include "recorder.h"

/* Handler whose verdict depends on the payload: "ack", "nack" (with a reason), "rq" (requeue
 * on the first attempt, then ack). */
static brokk_verdict by_payload(void *ud, const brokk_message *m) {
    (void)ud;
    brokk_str p = brokk_message_payload(m);
    if (view_eq(p, "\"nack\"")) {
        brokk_message_set_failure_reason(m, "nope", 4);
        return BROKK_VERDICT_NACK;
    }
    if (view_eq(p, "\"rq\"") && brokk_message_attempt(m) == 1) {
        brokk_message_set_failure_reason(m, "later please", 12);
        return BROKK_VERDICT_REQUEUE;
    }
    return BROKK_VERDICT_ACK;
}

static size_t index_of(evlog *l, ev_kind kind, const char *parent_or_id) {
    for (size_t i = 0; i < l->n; i++) {
        ev *e = &l->evs[i];
        if (e->kind != kind) continue;
        if (parent_or_id == NULL) return i;
        const char *key = kind == EV_PUBLISH ? e->id : e->parent_id;
        if (key && strcmp(key, parent_or_id) == 0) return i;
    }
    return (size_t)-1;
}

static void publish_with_id(const brokk_broker *b, const char *topic, const char *id,
                            const char *payload) {
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.priority = 4;
    o.id = id;
    o.id_len = strlen(id);
    CHECK_OK(brokk_broker_publish(b, topic, strlen(topic), payload, strlen(payload), &o, NULL, 0));
}

static void listener_sees_every_event(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog log;
    evlog_init(&log);
    brokk_listener l = evlog_listener(&log);
    uint64_t lid = 0;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    CHECK(lid != 0);
    CHECK_EQ(stats_of(b).listeners, 1);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "lt", by_payload, NULL, NULL, false, 1, &sid));
    publish_with_id(b, "lt", "m-ack", "\"ack\"");
    publish_with_id(b, "lt", "m-nack", "\"nack\"");
    publish_with_id(b, "lt", "m-rq", "\"rq\"");
    JOIN_OK(b);
    CHECK_OK(brokk_broker_unsubscribe(b, sid));
    publish_with_id(b, "other", "m-lost", "{}");
    JOIN_OK(b); /* every listener event delivered */
    brokk_stats s = stats_of(b);

    /* Counts match the stats. */
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), s.published);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), s.dispatched);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), s.processed);
    CHECK_EQ(evlog_count(&log, EV_FAILED), s.failed + s.requeued);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 4);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), 4);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), 2);
    CHECK_EQ(evlog_count(&log, EV_FAILED), 2);
    CHECK_EQ(evlog_count(&log, EV_SUBSCRIBE), 1);
    CHECK_EQ(evlog_count(&log, EV_UNSUBSCRIBE), 1);
    CHECK_EQ(evlog_count(&log, EV_TOPIC), 2);

    pthread_mutex_lock(&log.m);
    for (size_t i = 0; i < log.n; i++) {
        ev *e = &log.evs[i];
        /* One listener thread, never the caller's. */
        CHECK(pthread_equal(e->thread, log.evs[0].thread));
        CHECK(!pthread_equal(e->thread, pthread_self()));
        switch (e->kind) {
        case EV_TOPIC:
            CHECK(strcmp(e->topic, "lt") == 0 || strcmp(e->topic, "other") == 0);
            break;
        case EV_SUBSCRIBE:
        case EV_UNSUBSCRIBE:
            CHECK_STREQ(e->topic, "lt");
            CHECK_EQ(e->subscription_id, sid);
            break;
        case EV_PUBLISH:
            CHECK_EQ(e->delivery_id, 0);
            CHECK_EQ(e->subscription_id, 0);
            CHECK_EQ(e->attempt, 0);
            CHECK_STREQ(e->parent_id, "");
            CHECK_STREQ(e->group, "");
            CHECK_EQ(e->priority, 4);
            CHECK(strncmp(e->id, "m-", 2) == 0);
            CHECK_STREQ(e->topic, strcmp(e->id, "m-lost") == 0 ? "other" : "lt");
            break;
        case EV_DISPATCHED:
        case EV_PROCESSED:
        case EV_FAILED: {
            char dec[32];
            snprintf(dec, sizeof dec, "%" PRIu64, e->delivery_id);
            CHECK(e->delivery_id != 0);
            CHECK_STREQ(e->id, dec);
            CHECK_EQ(e->subscription_id, sid);
            CHECK_STREQ(e->topic, "lt");
            CHECK(strncmp(e->parent_id, "m-", 2) == 0);
            CHECK(e->attempt >= 1);
            CHECK_EQ(e->priority, 4);
            CHECK_STREQ(e->group, ""); /* an ungrouped subscription's deliveries */
            break;
        }
        default:
            FAILF("unexpected event kind %d", (int)e->kind);
        }
    }
    /* Payload of the publish event, and the failed events' reasons and flags. */
    size_t p_ack = index_of(&log, EV_PUBLISH, "m-ack");
    if (CHECK(p_ack != (size_t)-1)) CHECK_STREQ(log.evs[p_ack].payload, "\"ack\"");
    size_t f_nack = index_of(&log, EV_FAILED, "m-nack");
    if (CHECK(f_nack != (size_t)-1)) {
        CHECK_STREQ(log.evs[f_nack].reason, "nope");
        CHECK(!log.evs[f_nack].requeued);
    }
    size_t f_rq = index_of(&log, EV_FAILED, "m-rq");
    if (CHECK(f_rq != (size_t)-1)) {
        CHECK_STREQ(log.evs[f_rq].reason, "later please");
        CHECK(log.evs[f_rq].requeued);
        CHECK_EQ(log.evs[f_rq].attempt, 1);
    }
    /* In the order things happened. */
    size_t t_lt = index_of(&log, EV_TOPIC, NULL), sub = index_of(&log, EV_SUBSCRIBE, NULL);
    CHECK(t_lt < sub);
    size_t d_ack = index_of(&log, EV_DISPATCHED, "m-ack");
    size_t pr_ack = index_of(&log, EV_PROCESSED, "m-ack");
    CHECK(p_ack < d_ack && d_ack < pr_ack && pr_ack != (size_t)-1);
    size_t unsub = index_of(&log, EV_UNSUBSCRIBE, NULL);
    size_t p_lost = index_of(&log, EV_PUBLISH, "m-lost");
    CHECK(sub < unsub && unsub < p_lost && p_lost != (size_t)-1);
    size_t pr_rq = index_of(&log, EV_PROCESSED, "m-rq");
    CHECK(f_rq < pr_rq && pr_rq != (size_t)-1);
    if (pr_rq != (size_t)-1) CHECK_EQ(log.evs[pr_rq].attempt, 2);
    pthread_mutex_unlock(&log.m);

    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&log.freed), 1);
    evlog_destroy(&log);
}

static void listener_sees_only_later_events(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "early", "1"));
    evlog log;
    evlog_add(b, &log);
    CHECK_OK(publish_str(b, "early", "2"));
    CHECK_OK(publish_str(b, "early", "3"));
    JOIN_OK(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 2);
    CHECK_EQ(evlog_count(&log, EV_TOPIC), 0); /* "early" existed before */
    brokk_broker_free(b);
    evlog_destroy(&log);
}

static void remove_listener_stops_events_and_frees_once(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog log;
    uint64_t lid = evlog_add(b, &log);
    CHECK_OK(publish_str(b, "r", "1"));
    JOIN_OK(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 1);
    CHECK_OK(brokk_broker_remove_listener(b, lid));
    CHECK(wait_atomic_ge(&log.freed, 1));
    CHECK_EQ(stats_of(b).listeners, 0);
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "r", "2"));
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "r2", by_payload, NULL, NULL, false, 1, &sid));
    JOIN_OK(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 1);
    CHECK_EQ(evlog_count(&log, EV_SUBSCRIBE), 0);
    CHECK_STATUS(brokk_broker_remove_listener(b, lid), BROKK_STATUS_UNKNOWN_LISTENER);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&log.freed), 1);
    evlog_destroy(&log);
}

static void remove_unknown_listener(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_STATUS(brokk_broker_remove_listener(b, 0), BROKK_STATUS_UNKNOWN_LISTENER);
    CHECK_STATUS(brokk_broker_remove_listener(b, 999), BROKK_STATUS_UNKNOWN_LISTENER);
    CHECK_STATUS(brokk_broker_remove_listener(b, UINT64_MAX), BROKK_STATUS_UNKNOWN_LISTENER);
    CHECK_STATUS(brokk_broker_remove_listener(NULL, 1), BROKK_STATUS_NULL_ARGUMENT);
    brokk_broker_free(b);
}

static void add_listener_bad_input_takes_nothing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog log;
    evlog_init(&log);
    brokk_listener l = evlog_listener(&log);
    const uint64_t SENT = 0xABCDEFull;
    uint64_t lid = SENT;
    CHECK_STATUS(brokk_broker_add_listener(NULL, &l, &lid), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_add_listener(b, NULL, &lid), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_add_listener(b, &l, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_EQ(lid, SENT);
    CHECK_EQ(stats_of(b).listeners, 0);
    CHECK_OK(publish_str(b, "x", "1"));
    JOIN_OK(b);
    brokk_broker_free(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 0);
    CHECK_EQ(atomic_load(&log.freed), 0);
    evlog_destroy(&log);
}

/* add_listener copies the struct: changing or freeing it afterwards changes nothing. */
static void add_listener_copies_struct(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog log;
    evlog_init(&log);
    brokk_listener *l = malloc(sizeof *l);
    *l = evlog_listener(&log);
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, l, &lid));
    memset(l, 0, sizeof *l);
    free(l);
    CHECK_OK(publish_str(b, "x", "1"));
    JOIN_OK(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 1);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&log.freed), 1);
    evlog_destroy(&log);
}

static void listeners_freed_at_broker_free(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog a, c;
    evlog_init(&a);
    evlog_init(&c);
    brokk_listener la = evlog_listener(&a), lc = evlog_listener(&c);
    uint64_t ia, ic;
    CHECK_OK(brokk_broker_add_listener(b, &la, &ia));
    CHECK_OK(brokk_broker_add_listener(b, &lc, &ic));
    CHECK(ia != ic);
    CHECK_EQ(stats_of(b).listeners, 2);
    for (int i = 0; i < 10; i++) CHECK_OK(publish_str(b, "x", "1"));
    brokk_broker_free(b); /* no join: pending events may be dropped, finalisers still run */
    CHECK_EQ(atomic_load(&a.freed), 1);
    CHECK_EQ(atomic_load(&c.freed), 1);
    unsigned na = evlog_count(&a, EV_PUBLISH), nc = evlog_count(&c, EV_PUBLISH);
    sleep_ms(20);
    CHECK_EQ(evlog_count(&a, EV_PUBLISH), na); /* nothing runs after free returns */
    CHECK_EQ(evlog_count(&c, EV_PUBLISH), nc);
    CHECK_EQ(atomic_load(&a.freed), 1);
    evlog_destroy(&a);
    evlog_destroy(&c);
}

static void null_callbacks_are_skipped(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    atomic_uint freed = 0;
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.user_data = &freed;
    l.free_user_data = count_free;
    uint64_t lid, lid2;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    memset(&l, 0, sizeof l); /* no callbacks and no finaliser at all */
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid2));
    evlog log;
    evlog_init(&log);
    brokk_listener partial = evlog_listener(&log);
    partial.on_dispatched = NULL;
    partial.on_topic_created = NULL;
    uint64_t lid3;
    CHECK_OK(brokk_broker_add_listener(b, &partial, &lid3));
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "n", by_payload, NULL, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "n", "\"nack\""));
    CHECK_OK(publish_str(b, "n", "\"ack\""));
    JOIN_OK(b);
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), 2);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), 0);
    CHECK_EQ(evlog_count(&log, EV_TOPIC), 0);
    CHECK_EQ(evlog_count(&log, EV_FAILED), 1);
    CHECK_OK(brokk_broker_remove_listener(b, lid));
    CHECK_OK(brokk_broker_remove_listener(b, lid2));
    CHECK(wait_atomic_ge(&freed, 1));
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 1);
    CHECK_EQ(atomic_load(&log.freed), 1);
    evlog_destroy(&log);
}

/* A listener blocked in a callback holds up other listeners, never deliveries; with a small
 * queue the overflow is dropped and counted. */
typedef struct stuck {
    gate g;
    atomic_uint events;
    atomic_uint sleep_ms;
} stuck;

static void stuck_on_publish(void *ud, const brokk_message *m) {
    (void)m;
    stuck *s = ud;
    if (atomic_fetch_add(&s->events, 1) == 0) gate_pass(&s->g);
    unsigned ms = atomic_load(&s->sleep_ms);
    if (ms) sleep_ms(ms);
}

static void stuck_on_other(void *ud, const brokk_message *m) { stuck_on_publish(ud, m); }

static bool processed_at_least(const brokk_stats *s, void *arg) {
    return s->processed >= *(unsigned *)arg;
}

static brokk_verdict ack_handler(void *ud, const brokk_message *m) {
    (void)ud;
    (void)m;
    return BROKK_VERDICT_ACK;
}

/* s with its gate closed, sleeping sleep_ms per event, and a listener l (not yet added) stuck in
 * it on publish events. */
static void stuck_init(stuck *s, brokk_listener *l, unsigned sleep_ms) {
    gate_init(&s->g);
    atomic_init(&s->events, 0);
    atomic_init(&s->sleep_ms, sleep_ms);
    memset(l, 0, sizeof *l);
    l->on_publish = stuck_on_publish;
    l->user_data = s;
}

/* A 2-worker broker with a 4-event listener queue, and a (not yet added) listener stuck at its
 * closed gate on publish, dispatched and processed events, sleeping sleep_ms in each. */
static brokk_broker *stuck_broker(stuck *s, brokk_listener *l, unsigned sleep_ms) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 2;
    o.listener_queue_capacity = 4;
    brokk_broker *b = new_broker_opts(&o);
    if (!b) return NULL;
    stuck_init(s, l, sleep_ms);
    l->on_dispatched = stuck_on_other;
    l->on_processed = stuck_on_other;
    l->user_data = s;
    return b;
}

static void blocked_listener_never_blocks_delivery(void) {
    stuck s;
    brokk_listener l;
    brokk_broker *b = stuck_broker(&s, &l, 0);
    if (!b) return;
    uint64_t lid, sid;
    /* Subscribed first, so that the only events are publish, dispatched and processed. */
    CHECK_OK(subscribe_simple(b, "busy", ack_handler, NULL, NULL, false, 2, &sid));
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    unsigned n = scaled_count(200);
    CHECK_OK(publish_str(b, "busy", "1"));
    CHECK(gate_wait_entered(&s.g, 1)); /* the listener thread is stuck from now on */
    for (unsigned i = 1; i < n; i++) CHECK_OK(publish_str(b, "busy", "1"));
    /* Every message is processed while the listener is still stuck in its first event. */
    CHECK(wait_stats(b, processed_at_least, &n));
    CHECK_EQ(gate_inside(&s.g), 1);
    brokk_stats st = stats_of(b);
    CHECK_EQ(st.processed, n);
    CHECK(st.listener_events_dropped > 0);
    gate_open(&s.g);
    JOIN_OK(b);
    st = stats_of(b);
    CHECK(st.listener_events_dropped > 0);
    /* What was not dropped was delivered: 3 events per message in all. */
    CHECK_EQ(atomic_load(&s.events) + st.listener_events_dropped, 3 * n);
    brokk_broker_free(b);
    gate_destroy(&s.g);
}

static void sleeping_listener_never_blocks_delivery(void) {
    stuck s;
    brokk_listener l;
    brokk_broker *b = stuck_broker(&s, &l, 50);
    if (!b) return;
    gate_open(&s.g);
    uint64_t lid, sid;
    CHECK_OK(subscribe_simple(b, "sleepy", ack_handler, NULL, NULL, false, 1, &sid));
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    unsigned n = 60;
    for (unsigned i = 0; i < n; i++) CHECK_OK(publish_str(b, "sleepy", "1"));
    JOIN_OK(b); /* waits for at most the few queued events, 50 ms each */
    brokk_stats st = stats_of(b);
    CHECK_EQ(st.processed, n);
    CHECK(st.listener_events_dropped > 0);
    CHECK_EQ(atomic_load(&s.events) + st.listener_events_dropped, 3 * n);
    brokk_broker_free(b);
    gate_destroy(&s.g);
}

static void two_listeners_both_see_everything(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog a, c;
    evlog_init(&a);
    evlog_init(&c);
    brokk_listener la = evlog_listener(&a), lc = evlog_listener(&c);
    uint64_t ia, ic, sid;
    CHECK_OK(brokk_broker_add_listener(b, &la, &ia));
    CHECK_OK(brokk_broker_add_listener(b, &lc, &ic));
    CHECK_OK(subscribe_simple(b, "two", by_payload, NULL, NULL, false, 1, &sid));
    for (int i = 0; i < 10; i++) CHECK_OK(publish_str(b, "two", "\"ack\""));
    JOIN_OK(b);
    for (int k = 0; k < EV_KINDS; k++) CHECK_EQ(evlog_count(&a, k), evlog_count(&c, k));
    CHECK_EQ(evlog_count(&a, EV_PROCESSED), 10);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&a.freed), 1);
    CHECK_EQ(atomic_load(&c.freed), 1);
    evlog_destroy(&a);
    evlog_destroy(&c);
}

/*
 * remove_listener: "A callback of it that is running finishes; no further one starts." Two
 * listeners, L0 then L1. L0 blocks in its callback for the first event; meanwhile L1 is
 * removed from this thread. L1 must not be called for that event (or any later one).
 */
typedef struct counting {
    atomic_uint calls;
    atomic_uint after_removal;
    atomic_uint removed; /* set once remove_listener returned */
    atomic_uint freed;
    const brokk_broker *b;
    _Atomic uint64_t self_id;
    unsigned remove_on_call; /* >0: remove itself from inside this call number */
    brokk_status remove_status;
} counting;

static void counting_cb(void *ud, const brokk_message *m) {
    (void)m;
    counting *c = ud;
    if (atomic_load(&c->removed)) atomic_fetch_add(&c->after_removal, 1);
    unsigned n = atomic_fetch_add(&c->calls, 1) + 1;
    if (c->remove_on_call && n == c->remove_on_call) {
        c->remove_status = brokk_broker_remove_listener(c->b, atomic_load(&c->self_id));
        atomic_store(&c->removed, 1);
    }
}

static void counting_free(void *ud) { atomic_fetch_add(&((counting *)ud)->freed, 1); }

static void counting_init(counting *c, const brokk_broker *b, unsigned remove_on_call) {
    memset(c, 0, sizeof *c);
    atomic_init(&c->calls, 0);
    atomic_init(&c->after_removal, 0);
    atomic_init(&c->removed, 0);
    atomic_init(&c->freed, 0);
    atomic_init(&c->self_id, 0);
    c->b = b;
    c->remove_on_call = remove_on_call;
}

static brokk_listener counting_listener(counting *c) {
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_publish = counting_cb;
    l.user_data = c;
    l.free_user_data = counting_free;
    return l;
}

static void remove_listener_while_listener_thread_busy(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "rm", "0")); /* create the topic before anyone listens */
    stuck s0;
    brokk_listener l0;
    stuck_init(&s0, &l0, 0);
    counting c1;
    counting_init(&c1, b, 0);
    brokk_listener l1 = counting_listener(&c1);
    uint64_t i0, i1;
    CHECK_OK(brokk_broker_add_listener(b, &l0, &i0));
    CHECK_OK(brokk_broker_add_listener(b, &l1, &i1));
    CHECK_OK(publish_str(b, "rm", "1"));
    CHECK(gate_wait_entered(&s0.g, 1)); /* L0 is in its callback for event 1; L1 is next */
    CHECK_OK(brokk_broker_remove_listener(b, i1));
    atomic_store(&c1.removed, 1);
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "rm", "2"));
    gate_open(&s0.g);
    JOIN_OK(b);
    if (atomic_load(&c1.after_removal) != 0)
        FAILF("listener callback ran %u times after brokk_broker_remove_listener returned",
              atomic_load(&c1.after_removal));
    CHECK(wait_atomic_ge(&c1.freed, 1));
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&c1.freed), 1);
    gate_destroy(&s0.g);
}

/*
 * The same from the listener's own callback: L1 removes itself while handling event 2 of a
 * batch of queued events (events 2..10 are queued while L0 holds the listener thread in
 * event 1). Once remove_listener has returned, L1 gets no further callback.
 */
static void remove_listener_from_own_callback(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "rm", "0"));
    stuck s0;
    brokk_listener l0;
    stuck_init(&s0, &l0, 0);
    counting c1;
    counting_init(&c1, b, 2);
    brokk_listener l1 = counting_listener(&c1);
    uint64_t i0, i1;
    CHECK_OK(brokk_broker_add_listener(b, &l0, &i0));
    CHECK_OK(brokk_broker_add_listener(b, &l1, &i1));
    atomic_store(&c1.self_id, i1);
    CHECK_OK(publish_str(b, "rm", "1"));
    CHECK(gate_wait_entered(&s0.g, 1));
    for (int i = 0; i < 9; i++) CHECK_OK(publish_str(b, "rm", "2"));
    gate_open(&s0.g);
    JOIN_OK(b);
    CHECK_EQ(c1.remove_status, BROKK_STATUS_OK);
    if (atomic_load(&c1.after_removal) != 0)
        FAILF("listener callback ran %u times after it removed itself",
              atomic_load(&c1.after_removal));
    CHECK(wait_atomic_ge(&c1.freed, 1));
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&c1.freed), 1);
    gate_destroy(&s0.g);
}

/* Removed while its callback runs: the finaliser waits for that callback to return. */
typedef struct stuck_owned {
    stuck s;
    atomic_uint freed;
    atomic_uint freed_inside;
} stuck_owned;

static void stuck_owned_free(void *ud) {
    stuck_owned *o = ud;
    if (gate_inside(&o->s.g)) atomic_fetch_add(&o->freed_inside, 1);
    atomic_fetch_add(&o->freed, 1);
}

static void remove_running_listener_frees_after_callback(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    stuck_owned o;
    brokk_listener l;
    stuck_init(&o.s, &l, 0);
    atomic_init(&o.freed, 0);
    atomic_init(&o.freed_inside, 0);
    l.user_data = &o; /* starts with the stuck struct */
    l.free_user_data = stuck_owned_free;
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    CHECK_OK(publish_str(b, "x", "1"));
    CHECK(gate_wait_entered(&o.s.g, 1));
    CHECK_OK(brokk_broker_remove_listener(b, lid));
    sleep_ms(10);
    CHECK_EQ(atomic_load(&o.freed), 0); /* its callback is still running */
    gate_open(&o.s.g);
    CHECK(wait_atomic_ge(&o.freed, 1));
    CHECK_EQ(atomic_load(&o.freed_inside), 0);
    JOIN_OK(b);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&o.freed), 1);
    gate_destroy(&o.s.g);
}

/* brokk_broker_free waits for a listener callback running at that moment. */
static void broker_free_waits_for_running_listener(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    stuck_owned o;
    brokk_listener l;
    stuck_init(&o.s, &l, 0);
    atomic_init(&o.freed, 0);
    atomic_init(&o.freed_inside, 0);
    l.user_data = &o; /* starts with the stuck struct */
    l.free_user_data = stuck_owned_free;
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    CHECK_OK(publish_str(b, "x", "1"));
    CHECK(gate_wait_entered(&o.s.g, 1));
    delayed_open d;
    delayed_open_start(&d, &o.s.g, 30);
    brokk_broker_free(b);
    CHECK_EQ(gate_inside(&o.s.g), 0); /* the callback had returned */
    CHECK_EQ(atomic_load(&o.freed), 1);
    CHECK_EQ(atomic_load(&o.freed_inside), 0);
    delayed_open_join(&d);
    gate_destroy(&o.s.g);
}

static const test_case TESTS[] = {
    TEST_CASE(listener_sees_every_event),
    TEST_CASE(listener_sees_only_later_events),
    TEST_CASE(remove_listener_stops_events_and_frees_once),
    TEST_CASE(remove_unknown_listener),
    TEST_CASE(add_listener_bad_input_takes_nothing),
    TEST_CASE(add_listener_copies_struct),
    TEST_CASE(listeners_freed_at_broker_free),
    TEST_CASE(null_callbacks_are_skipped),
    TEST_CASE(blocked_listener_never_blocks_delivery),
    TEST_CASE(sleeping_listener_never_blocks_delivery),
    TEST_CASE(two_listeners_both_see_everything),
    TEST_CASE(remove_listener_while_listener_thread_busy),
    TEST_CASE(remove_listener_from_own_callback),
    TEST_CASE(remove_running_listener_frees_after_callback),
    TEST_CASE(broker_free_waits_for_running_listener),
};

int main(int argc, char **argv) { return RUN_TESTS("test_listeners", TESTS, argc, argv); }
