/*
 * Calls back into brokk from handlers and listeners: publish, subscribe, unsubscribe, ack,
 * stats, listeners all work; join and a non-forced close say WOULD_DEADLOCK; a forced close
 * works; brokk_broker_free from inside a callback returns and the teardown completes.
 */
#include "recorder.h"

static brokk_verdict count_handler(void *ud, const brokk_message *m) {
    (void)m;
    if (ud) atomic_fetch_add((atomic_uint *)ud, 1);
    return BROKK_VERDICT_ACK;
}

/* ---- publish / subscribe / unsubscribe / ack / stats from a handler ---------------------------- */

typedef struct chain {
    const brokk_broker *b;
    char next_topic[32];
    brokk_status st;
    atomic_uint calls;
} chain;

static brokk_verdict forward_handler(void *ud, const brokk_message *m) {
    chain *c = ud;
    brokk_str p = brokk_message_payload(m);
    brokk_status st = brokk_broker_publish(c->b, c->next_topic, strlen(c->next_topic), p.ptr,
                                           p.len, NULL, NULL, 0);
    if (st != BROKK_STATUS_OK) c->st = st;
    atomic_fetch_add(&c->calls, 1);
    return BROKK_VERDICT_ACK;
}

static void handler_publishes_along_a_chain(void) {
    enum { HOPS = 8 };
    brokk_broker *b = new_broker(2);
    if (!b) return;
    chain c[HOPS];
    uint64_t sid;
    for (int i = 0; i < HOPS; i++) {
        c[i].b = b;
        c[i].st = BROKK_STATUS_OK;
        atomic_init(&c[i].calls, 0);
        snprintf(c[i].next_topic, sizeof c[i].next_topic, "hop%d", i + 1);
        char topic[32];
        snprintf(topic, sizeof topic, "hop%d", i);
        CHECK_OK(subscribe_simple(b, topic, forward_handler, &c[i], NULL, false, 1, &sid));
    }
    recorder end;
    recorder_init(&end, BROKK_VERDICT_ACK);
    char last[32];
    snprintf(last, sizeof last, "hop%d", HOPS);
    CHECK_OK(subscribe_simple(b, last, recorder_handler, &end, NULL, false, 1, &sid));
    unsigned n = scaled_count(50);
    for (unsigned i = 0; i < n; i++) CHECK_OK(publish_str(b, "hop0", "{\"hop\":true}"));
    JOIN_OK(b); /* waits for the whole chain: each hop publishes before it returns */
    for (int i = 0; i < HOPS; i++) {
        CHECK_EQ(atomic_load(&c[i].calls), n);
        CHECK_EQ(c[i].st, BROKK_STATUS_OK);
    }
    if (CHECK_EQ(recorder_count(&end), n)) CHECK_STREQ(end.recs[0].payload, "{\"hop\":true}");
    CHECK_EQ(stats_of(b).published, (HOPS + 1) * n);
    brokk_broker_free(b);
    recorder_destroy(&end);
}

typedef struct subscriber {
    const brokk_broker *b;
    atomic_uint calls;
    brokk_status sub_st, pub_st, unsub_st, ack_st, stats_st, json_st, add_st, rm_st;
    uint64_t new_sid;
    atomic_uint child_calls, child_freed;
    uint64_t own_sid;
} subscriber;

static brokk_verdict subscribing_handler(void *ud, const brokk_message *m) {
    subscriber *s = ud;
    if (atomic_fetch_add(&s->calls, 1) != 0) return BROKK_VERDICT_ACK;
    s->sub_st = subscribe_simple(s->b, "child", count_handler, &s->child_calls, count_free, false,
                                 1, &s->new_sid);
    s->pub_st = publish_str(s->b, "child", "\"from a handler\"");
    brokk_stats st;
    s->stats_st = brokk_broker_stats(s->b, &st);
    char *json = NULL;
    s->json_st = brokk_broker_stats_json(s->b, &json, NULL);
    brokk_string_free(json);
    brokk_listener l;
    memset(&l, 0, sizeof l);
    uint64_t lid = 0;
    s->add_st = brokk_broker_add_listener(s->b, &l, &lid);
    s->rm_st = brokk_broker_remove_listener(s->b, lid);
    (void)m;
    return BROKK_VERDICT_ACK;
}

static void handler_subscribes_publishes_and_reads_stats(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    subscriber s;
    memset(&s, 0, sizeof s);
    s.b = b;
    atomic_init(&s.calls, 0);
    atomic_init(&s.child_calls, 0);
    atomic_init(&s.child_freed, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "parent", subscribing_handler, &s, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "parent", "1"));
    JOIN_OK(b);
    CHECK_EQ(s.sub_st, BROKK_STATUS_OK);
    CHECK_EQ(s.pub_st, BROKK_STATUS_OK);
    CHECK_EQ(s.stats_st, BROKK_STATUS_OK);
    CHECK_EQ(s.json_st, BROKK_STATUS_OK);
    CHECK_EQ(s.add_st, BROKK_STATUS_OK);
    CHECK_EQ(s.rm_st, BROKK_STATUS_OK);
    CHECK_EQ(atomic_load(&s.child_calls), 1);
    CHECK(s.new_sid != 0 && s.new_sid != sid);
    CHECK_EQ(stats_of(b).subscriptions, 2);
    CHECK_OK(brokk_broker_unsubscribe(b, s.new_sid)); /* a subscription made in a handler */
    brokk_broker_free(b);
}

typedef struct self_unsub {
    const brokk_broker *b;
    gate g; /* the first call waits here until everything is published */
    _Atomic uint64_t sid;
    brokk_status st;
    atomic_uint calls, done, freed;
} self_unsub;

static brokk_verdict self_unsub_handler(void *ud, const brokk_message *m) {
    (void)m;
    self_unsub *s = ud;
    if (atomic_fetch_add(&s->calls, 1) == 0) {
        gate_pass(&s->g);
        s->st = brokk_broker_unsubscribe(s->b, atomic_load(&s->sid));
    }
    atomic_fetch_add(&s->done, 1);
    return BROKK_VERDICT_ACK;
}

static void self_unsub_free(void *ud) {
    self_unsub *s = ud;
    if (atomic_load(&s->done) != atomic_load(&s->calls))
        FAILF("finaliser ran while the handler was still running");
    atomic_fetch_add(&s->freed, 1);
}

static void handler_unsubscribes_itself(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    self_unsub s;
    s.b = b;
    s.st = BROKK_STATUS_PANIC;
    atomic_init(&s.sid, 0);
    atomic_init(&s.calls, 0);
    atomic_init(&s.done, 0);
    atomic_init(&s.freed, 0);
    gate_init(&s.g);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "self", self_unsub_handler, &s, self_unsub_free, false, 1, &sid));
    atomic_store(&s.sid, sid);
    for (int i = 0; i < 6; i++) CHECK_OK(publish_str(b, "self", "1"));
    gate_open(&s.g);
    JOIN_OK(b);
    CHECK_EQ(s.st, BROKK_STATUS_OK);
    CHECK_EQ(atomic_load(&s.calls), 1); /* none started after unsubscribe returned */
    CHECK(wait_atomic_ge(&s.freed, 1));
    brokk_stats st = stats_of(b);
    CHECK_EQ(st.subscriptions, 0);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.dropped, 5);
    CHECK_EQ(st.dispatched, 1);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&s.freed), 1);
    gate_destroy(&s.g);
}

typedef struct self_ack {
    const brokk_broker *b;
    brokk_status ack_st, again_st;
    atomic_uint done;
} self_ack;

static brokk_verdict self_ack_handler(void *ud, const brokk_message *m) {
    self_ack *s = ud;
    s->ack_st = brokk_broker_ack(s->b, brokk_message_delivery_id(m));
    s->again_st = brokk_broker_ack(s->b, brokk_message_delivery_id(m));
    atomic_fetch_add(&s->done, 1);
    return BROKK_VERDICT_LATER;
}

static void handler_acks_its_own_delivery(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    self_ack s = {b, BROKK_STATUS_PANIC, BROKK_STATUS_PANIC, 0};
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "sa", self_ack_handler, &s, NULL, true, 1, &sid));
    CHECK_OK(publish_str(b, "sa", "1"));
    JOIN_OK(b);
    CHECK(wait_atomic_ge(&s.done, 1));
    CHECK_EQ(s.ack_st, BROKK_STATUS_OK);
    CHECK_EQ(s.again_st, BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(stats_of(b).processed, 1);
    brokk_broker_free(b);
}

/* ---- join and close from inside ------------------------------------------------------------------ */

typedef struct waiter {
    const brokk_broker *b;
    const brokk_broker *other; /* a different broker, which may be waited for */
    brokk_status join_st, join_forever_st, close_st, other_join_st, other_close_st;
    uint64_t join_rem;
    brokk_close_report close_report;
    char join_err[256];
    atomic_uint done;
} waiter;

static brokk_verdict waiting_handler(void *ud, const brokk_message *m) {
    (void)m;
    waiter *w = ud;
    w->join_rem = 0xAAAA;
    w->close_report.remaining = 0xAAAA;
    w->join_st = brokk_broker_join(w->b, 10, &w->join_rem);
    snprintf(w->join_err, sizeof w->join_err, "%s", brokk_last_error());
    w->join_forever_st = brokk_broker_join(w->b, BROKK_WAIT_FOREVER, NULL);
    w->close_st = brokk_broker_close(w->b, BROKK_WAIT_FOREVER, false, &w->close_report);
    if (w->other) {
        w->other_join_st = brokk_broker_join(w->other, wait_ms(), NULL);
        w->other_close_st = brokk_broker_close(w->other, wait_ms(), false, NULL);
    }
    atomic_fetch_add(&w->done, 1);
    return BROKK_VERDICT_ACK;
}

static void join_and_close_from_handler_would_deadlock(void) {
    brokk_broker *b = new_broker(2), *other = new_broker(1);
    if (!b || !other) {
        brokk_broker_free(b);
        brokk_broker_free(other);
        return;
    }
    waiter w;
    memset(&w, 0, sizeof w);
    w.b = b;
    w.other = other;
    atomic_init(&w.done, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "w", waiting_handler, &w, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "w", "1"));
    JOIN_OK(b);
    CHECK(wait_atomic_ge(&w.done, 1));
    CHECK_EQ(w.join_st, BROKK_STATUS_WOULD_DEADLOCK);
    CHECK_EQ(w.join_forever_st, BROKK_STATUS_WOULD_DEADLOCK);
    CHECK_EQ(w.close_st, BROKK_STATUS_WOULD_DEADLOCK);
    CHECK_EQ(w.join_rem, 0xAAAA); /* untouched */
    CHECK_EQ(w.close_report.remaining, 0xAAAA);
    CHECK(w.join_err[0] != '\0');
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_WOULD_DEADLOCK), BROKK_STATUS_CLASS_CALLER);
    /* Another broker's join and close are fine from here. */
    CHECK_EQ(w.other_join_st, BROKK_STATUS_OK);
    CHECK_EQ(w.other_close_st, BROKK_STATUS_OK);
    /* "WOULD_DEADLOCK and nothing changes": the broker still works. */
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid2;
    CHECK_OK(subscribe_simple(b, "after", recorder_handler, &r, NULL, false, 1, &sid2));
    CHECK_OK(publish_str(b, "after", "2"));
    JOIN_OK(b);
    CHECK_EQ(recorder_count(&r), 1);
    brokk_close_report rep;
    CHECK_OK(brokk_broker_close(b, wait_ms(), false, &rep));
    CHECK_EQ(rep.remaining, 0);
    brokk_broker_free(b);
    brokk_broker_free(other);
    recorder_destroy(&r);
}

typedef struct forcer {
    const brokk_broker *b;
    gate g; /* the first call waits until everything is published */
    brokk_status st;
    brokk_close_report report;
    brokk_status publish_after;
    atomic_uint done;
} forcer;

static brokk_verdict forcing_handler(void *ud, const brokk_message *m) {
    (void)m;
    forcer *f = ud;
    if (atomic_load(&f->done) == 0) {
        gate_pass(&f->g);
        f->report.dropped = 0xAAAA;
        f->st = brokk_broker_close(f->b, BROKK_WAIT_FOREVER, true, &f->report);
        f->publish_after = publish_str(f->b, "fc", "1");
    }
    atomic_fetch_add(&f->done, 1);
    return BROKK_VERDICT_ACK;
}

static void forced_close_from_handler(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    forcer f;
    memset(&f, 0, sizeof f);
    f.b = b;
    gate_init(&f.g);
    atomic_init(&f.done, 0);
    atomic_uint freed = 0;
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "fc", forcing_handler, &f, NULL, false, 1, &sid));
    uint64_t sid2; /* another subscription, finalised at free as usual */
    CHECK_OK(brokk_broker_subscribe(b, "fc2", 3, count_handler, &freed, count_free, NULL, &sid2));
    (void)sid2;
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "fc", "1"));
    gate_open(&f.g);
    CHECK(wait_atomic_ge(&f.done, 1)); /* the close happened before this count */
    CHECK_EQ(f.st, BROKK_STATUS_OK);
    /* Two queued deliveries dropped; the handler making the call is running, not dropped. */
    CHECK_EQ(f.report.dropped, 2);
    CHECK_EQ(f.report.remaining, 0);
    CHECK_EQ(f.publish_after, BROKK_STATUS_CLOSED);
    CHECK_STATUS(publish_str(b, "fc", "1"), BROKK_STATUS_CLOSED);
    CHECK_STATUS(brokk_broker_join(b, 0, NULL), BROKK_STATUS_CLOSED);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&freed), 1);
    gate_destroy(&f.g);
}

/* ---- from listeners ---------------------------------------------------------------------------- */

typedef struct lwaiter {
    const brokk_broker *b;
    brokk_status join_st, close_st, stats_st, publish_st, force_st;
    atomic_uint calls;
    bool force_on_second;
} lwaiter;

static void lwaiter_on_publish(void *ud, const brokk_message *m) {
    (void)m;
    lwaiter *w = ud;
    unsigned n = atomic_load(&w->calls);
    if (n == 0) {
        w->join_st = brokk_broker_join(w->b, 10, NULL);
        w->close_st = brokk_broker_close(w->b, 10, false, NULL);
        brokk_stats s;
        w->stats_st = brokk_broker_stats(w->b, &s);
        w->publish_st = publish_str(w->b, "from.listener", "1");
    } else if (n == 1 && w->force_on_second) {
        w->force_st = brokk_broker_close(w->b, 0, true, NULL);
    }
    atomic_fetch_add(&w->calls, 1);
}

/* Adds to b a listener whose on_publish runs lwaiter_on_publish on w (force_st starts PANIC). */
static void lwaiter_add(const brokk_broker *b, lwaiter *w, bool force_on_second) {
    memset(w, 0, sizeof *w);
    w->b = b;
    w->force_st = BROKK_STATUS_PANIC;
    atomic_init(&w->calls, 0);
    w->force_on_second = force_on_second;
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_publish = lwaiter_on_publish;
    l.user_data = w;
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
}

static void join_and_close_from_listener(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    lwaiter w;
    lwaiter_add(b, &w, false);
    CHECK_OK(publish_str(b, "t", "1"));
    JOIN_OK(b); /* also waits for the listener's own publish event */
    CHECK_EQ(w.join_st, BROKK_STATUS_WOULD_DEADLOCK);
    CHECK_EQ(w.close_st, BROKK_STATUS_WOULD_DEADLOCK);
    CHECK_EQ(w.stats_st, BROKK_STATUS_OK);
    CHECK_EQ(w.publish_st, BROKK_STATUS_OK);
    CHECK_EQ(atomic_load(&w.calls), 2);
    CHECK_OK(publish_str(b, "t", "\"still open\""));
    brokk_broker_free(b);
}

static void forced_close_from_listener(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    lwaiter w;
    lwaiter_add(b, &w, true);
    CHECK_OK(publish_str(b, "t", "1")); /* the listener publishes the second event itself */
    CHECK(wait_atomic_ge(&w.calls, 2)); /* the close happened before this count */
    CHECK_EQ(w.force_st, BROKK_STATUS_OK);
    CHECK_STATUS(publish_str(b, "x", "1"), BROKK_STATUS_CLOSED);
    brokk_broker_free(b);
}

/* ---- brokk_broker_free from inside --------------------------------------------------------------- */

typedef struct freer {
    brokk_broker *b; /* owned: the callback frees it, once the test opens the gate */
    gate g;
    atomic_uint calls, returned, sub_freed, listener_freed, listener_calls_after;
} freer;

static brokk_verdict freeing_handler(void *ud, const brokk_message *m) {
    (void)m;
    freer *f = ud;
    if (atomic_fetch_add(&f->calls, 1) == 0) {
        gate_pass(&f->g); /* until the test has stopped using the broker */
        brokk_broker_free(f->b);
        atomic_store(&f->returned, 1);
    }
    return BROKK_VERDICT_ACK;
}

static void freer_sub_free(void *ud) { atomic_fetch_add(&((freer *)ud)->sub_freed, 1); }
static void freer_listener_free(void *ud) {
    atomic_fetch_add(&((freer *)ud)->listener_freed, 1);
}
static void freer_on_processed(void *ud, const brokk_message *m) {
    (void)m;
    freer *f = ud;
    if (atomic_load(&f->listener_freed)) atomic_fetch_add(&f->listener_calls_after, 1);
}

static void freer_init(freer *f) {
    f->b = NULL;
    gate_init(&f->g);
    atomic_init(&f->calls, 0);
    atomic_init(&f->returned, 0);
    atomic_init(&f->sub_freed, 0);
    atomic_init(&f->listener_freed, 0);
    atomic_init(&f->listener_calls_after, 0);
}

static void free_from_handler(void) {
    freer f;
    freer_init(&f);
    f.b = new_broker(2);
    if (!f.b) return;
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_processed = freer_on_processed;
    l.user_data = &f;
    l.free_user_data = freer_listener_free;
    uint64_t lid, sid;
    CHECK_OK(brokk_broker_add_listener(f.b, &l, &lid));
    CHECK_OK(subscribe_simple(f.b, "free", freeing_handler, &f, freer_sub_free, false, 1, &sid));
    for (int i = 0; i < 5; i++) CHECK_OK(publish_str(f.b, "free", "1"));
    CHECK(gate_wait_entered(&f.g, 1));
    /* From here on the broker belongs to the handler: this thread must not touch it. */
    gate_open(&f.g);
    CHECK(wait_atomic_ge(&f.returned, 1)); /* brokk_broker_free returned inside the handler */
    CHECK(wait_atomic_ge(&f.sub_freed, 1));
    CHECK(wait_atomic_ge(&f.listener_freed, 1));
    sleep_ms(20); /* let the teardown thread finish; nothing may run any more */
    CHECK_EQ(atomic_load(&f.sub_freed), 1);
    CHECK_EQ(atomic_load(&f.listener_freed), 1);
    CHECK_EQ(atomic_load(&f.calls), 1); /* the queued deliveries were dropped, not run */
    CHECK_EQ(atomic_load(&f.listener_calls_after), 0);
    gate_destroy(&f.g);
}

static void freeing_on_publish(void *ud, const brokk_message *m) {
    (void)m;
    freer *f = ud;
    if (atomic_fetch_add(&f->calls, 1) == 0) {
        gate_pass(&f->g);
        brokk_broker_free(f->b);
        atomic_store(&f->returned, 1);
    }
}

static void free_from_listener(void) {
    freer f;
    freer_init(&f);
    f.b = new_broker(2);
    if (!f.b) return;
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_publish = freeing_on_publish;
    l.user_data = &f;
    l.free_user_data = freer_listener_free;
    uint64_t lid, sid;
    atomic_uint handled = 0;
    CHECK_OK(brokk_broker_add_listener(f.b, &l, &lid));
    CHECK_OK(subscribe_simple(f.b, "free", count_handler, &handled, NULL, false, 1, &sid));
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(f.b, "free", "1"));
    CHECK(gate_wait_entered(&f.g, 1));
    gate_open(&f.g); /* the broker is the listener's from here on */
    CHECK(wait_atomic_ge(&f.returned, 1));
    CHECK(wait_atomic_ge(&f.listener_freed, 1));
    sleep_ms(20);
    CHECK_EQ(atomic_load(&f.listener_freed), 1);
    CHECK_EQ(atomic_load(&f.calls), 1);
    gate_destroy(&f.g);
}

static const test_case TESTS[] = {
    TEST_CASE(handler_publishes_along_a_chain),
    TEST_CASE(handler_subscribes_publishes_and_reads_stats),
    TEST_CASE(handler_unsubscribes_itself),
    TEST_CASE(handler_acks_its_own_delivery),
    TEST_CASE(join_and_close_from_handler_would_deadlock),
    TEST_CASE(forced_close_from_handler),
    TEST_CASE(join_and_close_from_listener),
    TEST_CASE(forced_close_from_listener),
    TEST_CASE(free_from_handler),
    TEST_CASE(free_from_listener),
};

int main(int argc, char **argv) { return RUN_TESTS("test_reentry", TESTS, argc, argv); }
