/*
 * Verdicts (ACK, NACK, REQUEUE, LATER, unknown numbers) and manual acks: brokk_broker_ack and
 * brokk_broker_nack from handlers and other threads, their bad input, and join's wait for them.
 */
#include "recorder.h"

/* A broker with one event-logging listener, so on_failed reasons can be checked. */
typedef struct env {
    brokk_broker *b;
    evlog log;
    uint64_t lid;
} env;

static bool env_init(env *e, uint32_t workers) {
    evlog_init(&e->log);
    e->b = new_broker(workers);
    if (!e->b) return false;
    brokk_listener l = evlog_listener(&e->log);
    return CHECK_OK(brokk_broker_add_listener(e->b, &l, &e->lid));
}

static void env_finish(env *e) {
    if (e->b) brokk_broker_free(e->b);
    CHECK_EQ(atomic_load(&e->log.freed), 1);
    evlog_destroy(&e->log);
}

/* The i-th on_failed event, or NULL. */
static ev *failed_event(env *e, size_t i) {
    for (size_t k = 0; k < e->log.n; k++)
        if (e->log.evs[k].kind == EV_FAILED && i-- == 0) return &e->log.evs[k];
    return NULL;
}

/* ---- verdicts ----------------------------------------------------------------------------------- */

/* A handler driven by a script: verdicts[attempt-1] (the last one repeats), optional reason. */
typedef struct scripted {
    brokk_verdict verdicts[4];
    unsigned nverdicts;
    const char *reason_fmt; /* with %u for the attempt; NULL: set none */
    atomic_uint calls;
    uint32_t attempts[16];
    uint64_t delivery_ids[16];
} scripted;

static brokk_verdict scripted_handler(void *ud, const brokk_message *m) {
    scripted *s = ud;
    unsigned i = atomic_fetch_add(&s->calls, 1);
    uint32_t attempt = brokk_message_attempt(m);
    if (i < 16) {
        s->attempts[i] = attempt;
        s->delivery_ids[i] = brokk_message_delivery_id(m);
    }
    if (s->reason_fmt) {
        char reason[64];
        snprintf(reason, sizeof reason, s->reason_fmt, attempt);
        CHECK_OK(brokk_message_set_failure_reason(m, reason, strlen(reason)));
    }
    unsigned k = attempt >= 1 ? attempt - 1 : 0;
    return s->verdicts[k < s->nverdicts ? k : s->nverdicts - 1];
}

static void run_one_verdict(env *e, scripted *s, bool manual) {
    uint64_t sid;
    CHECK_OK(subscribe_simple(e->b, "v", scripted_handler, s, NULL, manual, 1, &sid));
    CHECK_OK(publish_str(e->b, "v", "{\"n\":1}"));
    JOIN_OK(e->b);
}

static void verdict_ack_is_processed(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_ACK}, 1, NULL, 0, {0}, {0}};
    run_one_verdict(&e, &s, false);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(st.dispatched, 1);
    CHECK_EQ(evlog_count(&e.log, EV_PROCESSED), 1);
    CHECK_EQ(evlog_count(&e.log, EV_FAILED), 0);
    env_finish(&e);
}

static void verdict_nack_fails_with_reason(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_NACK}, 1, "bad thing on attempt %u", 0, {0}, {0}};
    run_one_verdict(&e, &s, false);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.failed, 1);
    CHECK_EQ(st.processed, 0);
    CHECK_EQ(st.requeued, 0);
    CHECK_EQ(atomic_load(&s.calls), 1);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) {
        CHECK_STREQ(f->reason, "bad thing on attempt 1");
        CHECK(!f->requeued);
        CHECK_EQ(f->delivery_id, s.delivery_ids[0]);
        CHECK_EQ(f->attempt, 1);
    }
    CHECK_EQ(evlog_count(&e.log, EV_FAILED), 1);
    env_finish(&e);
}

static void verdict_nack_without_reason(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_NACK}, 1, NULL, 0, {0}, {0}};
    run_one_verdict(&e, &s, false);
    CHECK_EQ(stats_of(e.b).failed, 1);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) CHECK(!f->requeued);
    env_finish(&e);
}

static void verdict_requeue_redelivers_with_next_attempt(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_REQUEUE, BROKK_VERDICT_REQUEUE, BROKK_VERDICT_ACK},
                  3,
                  "try again %u",
                  0,
                  {0},
                  {0}};
    run_one_verdict(&e, &s, false);
    if (CHECK_EQ(atomic_load(&s.calls), 3)) {
        CHECK_EQ(s.attempts[0], 1);
        CHECK_EQ(s.attempts[1], 2);
        CHECK_EQ(s.attempts[2], 3);
        /* "kept across redeliveries" */
        CHECK_EQ(s.delivery_ids[1], s.delivery_ids[0]);
        CHECK_EQ(s.delivery_ids[2], s.delivery_ids[0]);
    }
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.requeued, 2);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(st.dispatched, 3);
    CHECK_EQ(st.dispatched, st.processed + st.failed + st.requeued);
    ev *f0 = failed_event(&e, 0), *f1 = failed_event(&e, 1);
    if (CHECK(f0 && f1)) {
        CHECK_STREQ(f0->reason, "try again 1");
        CHECK_STREQ(f1->reason, "try again 2");
        CHECK(f0->requeued && f1->requeued);
        CHECK_EQ(f0->attempt, 1);
        CHECK_EQ(f1->attempt, 2);
    }
    CHECK_EQ(evlog_count(&e.log, EV_FAILED), 2);
    CHECK_EQ(evlog_count(&e.log, EV_PROCESSED), 1);
    CHECK_EQ(evlog_count(&e.log, EV_DISPATCHED), 3);
    env_finish(&e);
}

static void verdict_unknown_number_counts_failed(void) {
    static const brokk_verdict odd[] = {77, 4, UINT32_MAX};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        env e;
        if (!env_init(&e, 2)) return;
        scripted s = {{odd[i]}, 1, NULL, 0, {0}, {0}};
        run_one_verdict(&e, &s, false);
        brokk_stats st = stats_of(e.b);
        CHECK_EQ(st.failed, 1);
        CHECK_EQ(st.processed, 0);
        CHECK_EQ(st.requeued, 0);
        CHECK_EQ(atomic_load(&s.calls), 1);
        ev *f = failed_event(&e, 0);
        char num[16];
        snprintf(num, sizeof num, "%u", odd[i]);
        if (CHECK(f != NULL)) {
            if (!strstr(f->reason, num))
                FAILF("reason \"%s\" does not mention verdict %s", f->reason, num);
            CHECK(!f->requeued);
        }
        env_finish(&e);
    }
}

/* An unknown verdict counts as failed even on a manual-ack subscription. */
static void verdict_unknown_on_manual_ack_counts_failed(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{77}, 1, NULL, 0, {0}, {0}};
    run_one_verdict(&e, &s, true);
    CHECK_EQ(stats_of(e.b).failed, 1);
    CHECK_STATUS(brokk_broker_ack(e.b, s.delivery_ids[0]), BROKK_STATUS_ALREADY_SETTLED);
    env_finish(&e);
}

static void verdict_later_on_auto_ack_is_processed(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_LATER}, 1, NULL, 0, {0}, {0}};
    run_one_verdict(&e, &s, false); /* JOIN_OK: nothing is left awaiting an ack */
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.in_flight, 0);
    CHECK_STATUS(brokk_broker_ack(e.b, s.delivery_ids[0]), BROKK_STATUS_ALREADY_SETTLED);
    env_finish(&e);
}

static void failure_reason_ignored_on_ack(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted s = {{BROKK_VERDICT_ACK}, 1, "not really %u", 0, {0}, {0}};
    run_one_verdict(&e, &s, false);
    CHECK_EQ(stats_of(e.b).processed, 1);
    CHECK_EQ(evlog_count(&e.log, EV_FAILED), 0);
    env_finish(&e);
}

/* On a manual-ack subscription the verdicts other than LATER settle as usual. */
static void manual_ack_handler_verdicts_settle(void) {
    env e;
    if (!env_init(&e, 2)) return;
    scripted ack = {{BROKK_VERDICT_ACK}, 1, NULL, 0, {0}, {0}};
    scripted nack = {{BROKK_VERDICT_NACK}, 1, "manual nack %u", 0, {0}, {0}};
    scripted rq = {{BROKK_VERDICT_REQUEUE, BROKK_VERDICT_ACK}, 2, NULL, 0, {0}, {0}};
    uint64_t s1, s2, s3;
    CHECK_OK(subscribe_simple(e.b, "ma", scripted_handler, &ack, NULL, true, 1, &s1));
    CHECK_OK(subscribe_simple(e.b, "mn", scripted_handler, &nack, NULL, true, 1, &s2));
    CHECK_OK(subscribe_simple(e.b, "mr", scripted_handler, &rq, NULL, true, 1, &s3));
    CHECK_OK(publish_str(e.b, "ma", "1"));
    CHECK_OK(publish_str(e.b, "mn", "1"));
    CHECK_OK(publish_str(e.b, "mr", "1"));
    JOIN_OK(e.b);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 2);
    CHECK_EQ(st.failed, 1);
    CHECK_EQ(st.requeued, 1);
    CHECK_EQ(atomic_load(&rq.calls), 2);
    CHECK_EQ(rq.attempts[1], 2);
    CHECK_STATUS(brokk_broker_ack(e.b, ack.delivery_ids[0]), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_STATUS(brokk_broker_ack(e.b, nack.delivery_ids[0]), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_STATUS(brokk_broker_ack(e.b, rq.delivery_ids[0]), BROKK_STATUS_ALREADY_SETTLED);
    env_finish(&e);
}

/* ---- manual acks ---------------------------------------------------------------------------------- */

/* Returns LATER (or what `verdict` says) after optionally acking/nacking itself; keeps ids. */
typedef struct later {
    const brokk_broker *b;
    brokk_verdict verdict;
    int self_settle; /* 0 none, 1 ack inside, 2 nack inside, 3 nack+requeue on attempt 1 */
    brokk_status self_status[8];
    atomic_uint calls;
    atomic_uint done; /* handler invocations that have finished (the last thing they do) */
    _Atomic uint64_t ids[8];
    uint32_t attempts[8];
} later;

static void later_init(later *l, const brokk_broker *b, brokk_verdict v, int self_settle) {
    memset(l, 0, sizeof *l);
    l->b = b;
    l->verdict = v;
    l->self_settle = self_settle;
    atomic_init(&l->calls, 0);
    atomic_init(&l->done, 0);
    for (int i = 0; i < 8; i++) atomic_init(&l->ids[i], 0);
}

static brokk_verdict later_handler(void *ud, const brokk_message *m) {
    later *l = ud;
    unsigned i = atomic_fetch_add(&l->calls, 1);
    uint64_t id = brokk_message_delivery_id(m);
    brokk_status st = BROKK_STATUS_OK;
    if (i < 8) {
        l->attempts[i] = brokk_message_attempt(m);
        atomic_store(&l->ids[i], id);
    }
    if (l->self_settle == 1) st = brokk_broker_ack(l->b, id);
    if (l->self_settle == 2) st = brokk_broker_nack(l->b, id, false, 0, "inside", 6);
    if (l->self_settle == 3 && brokk_message_attempt(m) == 1)
        st = brokk_broker_nack(l->b, id, true, 0, "again", 5);
    if (i < 8) l->self_status[i] = st;
    /* Last: tests wait for this before reading self_status, so that they do not rely on join
     * waiting for a handler whose delivery it already settled by id (see
     * ack_while_handler_still_running). */
    atomic_fetch_add(&l->done, 1);
    return l->verdict;
}

typedef struct acker {
    const brokk_broker *b;
    uint64_t id;
    brokk_status st;
} acker;

static void *ack_from_thread(void *arg) {
    acker *a = arg;
    a->st = brokk_broker_ack(a->b, a->id);
    return NULL;
}

/* A manual-ack LATER handler on "m" and one message "1" it has received and left pending; if
 * that delivery never comes, finishes e and returns false. */
static bool later_one_pending(env *e, later *l) {
    later_init(l, e->b, BROKK_VERDICT_LATER, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e->b, "m", later_handler, l, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e->b, "m", "1"));
    if (CHECK(wait_atomic_u64_ne0(&l->ids[0]))) return true;
    env_finish(e);
    return false;
}

static void later_then_ack_from_another_thread(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    if (!later_one_pending(&e, &l)) return;
    uint64_t rem = 0;
    CHECK_STATUS(brokk_broker_join(e.b, 20, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 1);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.in_flight, 1);
    CHECK_EQ(st.processed, 0);
    acker a = {e.b, atomic_load(&l.ids[0]), BROKK_STATUS_PANIC};
    pthread_t t;
    pthread_create(&t, NULL, ack_from_thread, &a);
    pthread_join(t, NULL);
    CHECK_EQ(a.st, BROKK_STATUS_OK);
    JOIN_OK(e.b);
    st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(evlog_count(&e.log, EV_PROCESSED), 1);
    CHECK_STATUS(brokk_broker_ack(e.b, a.id), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_STATUS(brokk_broker_nack(e.b, a.id, false, 0, NULL, 0), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_STATUS(brokk_broker_nack(e.b, a.id, true, 0, NULL, 0), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(atomic_load(&l.calls), 1);
    env_finish(&e);
}

static void ack_inside_handler_then_later(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_LATER, 1);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    JOIN_OK(e.b);
    CHECK(wait_atomic_ge(&l.done, 1));
    CHECK_EQ(l.self_status[0], BROKK_STATUS_OK);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.in_flight, 0);
    CHECK_STATUS(brokk_broker_ack(e.b, atomic_load(&l.ids[0])), BROKK_STATUS_ALREADY_SETTLED);
    env_finish(&e);
}

/* Acked by id inside the handler, which then returns a settling verdict: settled once. */
static void ack_inside_handler_then_other_verdicts(void) {
    static const brokk_verdict after[] = {BROKK_VERDICT_ACK, BROKK_VERDICT_NACK,
                                          BROKK_VERDICT_REQUEUE, 77};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        env e;
        if (!env_init(&e, 2)) return;
        later l;
        later_init(&l, e.b, after[i], 1);
        uint64_t sid;
        CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
        CHECK_OK(publish_str(e.b, "m", "1"));
        JOIN_OK(e.b);
        CHECK(wait_atomic_ge(&l.done, 1));
        CHECK_EQ(l.self_status[0], BROKK_STATUS_OK);
        CHECK_EQ(atomic_load(&l.calls), 1); /* a requeue after the ack does not redeliver */
        brokk_stats st = stats_of(e.b);
        CHECK_EQ(st.processed, 1);
        CHECK_EQ(st.failed, 0);
        CHECK_EQ(st.requeued, 0);
        CHECK_EQ(st.dispatched, 1);
        CHECK_EQ(evlog_count(&e.log, EV_PROCESSED), 1);
        CHECK_EQ(evlog_count(&e.log, EV_FAILED), 0);
        env_finish(&e);
    }
}

static void nack_inside_handler_then_ack_counts_failed(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_ACK, 2);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    JOIN_OK(e.b);
    CHECK(wait_atomic_ge(&l.done, 1));
    CHECK_EQ(l.self_status[0], BROKK_STATUS_OK);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.failed, 1);
    CHECK_EQ(st.processed, 0);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) {
        CHECK_STREQ(f->reason, "inside");
        CHECK(!f->requeued);
    }
    env_finish(&e);
}

static void nack_with_requeue_redelivers(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    if (!later_one_pending(&e, &l)) return;
    uint64_t id = atomic_load(&l.ids[0]);
    CHECK_OK(brokk_broker_nack(e.b, id, true, 0, "again", 5));
    if (CHECK(wait_atomic_u64_ne0(&l.ids[1]))) {
        CHECK_EQ(l.attempts[1], 2);
        CHECK_EQ(atomic_load(&l.ids[1]), id);
    }
    CHECK_OK(brokk_broker_ack(e.b, id));
    JOIN_OK(e.b);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.requeued, 1);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.dispatched, 2);
    CHECK_EQ(atomic_load(&l.calls), 2);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) {
        CHECK_STREQ(f->reason, "again");
        CHECK(f->requeued);
    }
    env_finish(&e);
}

/* Requeued by nack from inside the handler (attempt 1), then acked by its verdict. */
static void nack_requeue_inside_handler(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_ACK, 3);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    JOIN_OK(e.b);
    CHECK_EQ(atomic_load(&l.calls), 2);
    CHECK(wait_atomic_ge(&l.done, 2));
    CHECK_EQ(l.self_status[0], BROKK_STATUS_OK);
    CHECK_EQ(l.attempts[1], 2);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.requeued, 1);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.dispatched, 2);
    env_finish(&e);
}

static void nack_without_requeue_fails(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_LATER, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    CHECK_OK(publish_str(e.b, "m", "2"));
    if (!CHECK(wait_atomic_u64_ne0(&l.ids[1]))) {
        env_finish(&e);
        return;
    }
    const char reason[] = "nope, not this one";
    CHECK_OK(brokk_broker_nack(e.b, atomic_load(&l.ids[0]), false, 0, reason, 4));
    CHECK_OK(brokk_broker_nack(e.b, atomic_load(&l.ids[1]), false, 0, NULL, 99)); /* NULL: none */
    JOIN_OK(e.b);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.failed, 2);
    CHECK_EQ(st.processed, 0);
    CHECK_EQ(st.requeued, 0);
    CHECK_EQ(atomic_load(&l.calls), 2);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) {
        CHECK_STREQ(f->reason, "nope"); /* reason_len bytes, not up to a NUL */
        CHECK(!f->requeued);
    }
    CHECK(failed_event(&e, 1) != NULL);
    env_finish(&e);
}

static void ack_of_auto_acked_delivery_is_already_settled(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_ACK, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "auto", later_handler, &l, NULL, false, 1, &sid));
    CHECK_OK(publish_str(e.b, "auto", "1"));
    JOIN_OK(e.b);
    uint64_t id = atomic_load(&l.ids[0]);
    CHECK(id != 0);
    CHECK_STATUS(brokk_broker_ack(e.b, id), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_STATUS(brokk_broker_nack(e.b, id, true, 0, "x", 1), BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(stats_of(e.b).processed, 1);
    env_finish(&e);
}

/* An auto-ack handler acking its own delivery: ALREADY_SETTLED ("auto-acked"), counted once. */
static void ack_inside_auto_ack_handler(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_ACK, 1);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "auto", later_handler, &l, NULL, false, 1, &sid));
    CHECK_OK(publish_str(e.b, "auto", "1"));
    JOIN_OK(e.b);
    CHECK(wait_atomic_ge(&l.done, 1));
    CHECK_EQ(l.self_status[0], BROKK_STATUS_ALREADY_SETTLED);
    CHECK_EQ(stats_of(e.b).processed, 1);
    env_finish(&e);
}

static void ack_unknown_delivery_ids(void) {
    env e;
    if (!env_init(&e, 2)) return;
    /* Nothing issued yet: even 1 is unknown. */
    CHECK_STATUS(brokk_broker_ack(e.b, 1), BROKK_STATUS_UNKNOWN_DELIVERY);
    later l;
    if (!later_one_pending(&e, &l)) return;
    static const uint64_t bad[] = {0, UINT64_MAX, 1ull << 40, 1000000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(brokk_broker_ack(e.b, bad[i]), BROKK_STATUS_UNKNOWN_DELIVERY);
        CHECK_STATUS(brokk_broker_nack(e.b, bad[i], false, 0, "x", 1), BROKK_STATUS_UNKNOWN_DELIVERY);
        CHECK_STATUS(brokk_broker_nack(e.b, bad[i], true, 0, NULL, 0), BROKK_STATUS_UNKNOWN_DELIVERY);
    }
    CHECK_STATUS(brokk_broker_ack(NULL, atomic_load(&l.ids[0])), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_nack(NULL, atomic_load(&l.ids[0]), false, 0, NULL, 0),
                 BROKK_STATUS_NULL_ARGUMENT);
    /* None of that touched the real pending delivery. */
    CHECK_EQ(stats_of(e.b).in_flight, 1);
    CHECK_OK(brokk_broker_ack(e.b, atomic_load(&l.ids[0])));
    JOIN_OK(e.b);
    CHECK_EQ(stats_of(e.b).processed, 1);
    env_finish(&e);
}

static void nack_invalid_utf8_reason_keeps_delivery_pending(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    if (!later_one_pending(&e, &l)) return;
    uint64_t id = atomic_load(&l.ids[0]);
    CHECK_STATUS(brokk_broker_nack(e.b, id, false, 0, "bad \xff", 5), BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_nack(e.b, id, true, 0, "\xc3", 1), BROKK_STATUS_INVALID_UTF8);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.in_flight, 1);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(st.requeued, 0);
    CHECK_OK(brokk_broker_ack(e.b, id));
    JOIN_OK(e.b);
    st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(atomic_load(&l.calls), 1);
    env_finish(&e);
}

static void join_waits_for_pending_acks(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_LATER, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 2, &sid));
    for (int i = 0; i < 5; i++) CHECK_OK(publish_str(e.b, "m", "1"));
    CHECK(wait_atomic_ge(&l.calls, 5));
    for (int i = 0; i < 5; i++) CHECK(wait_atomic_u64_ne0(&l.ids[i]));
    uint64_t rem = 0;
    CHECK_STATUS(brokk_broker_join(e.b, 30, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 5);
    CHECK_STATUS(brokk_broker_join(e.b, 0, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 5);
    CHECK_STATUS(brokk_broker_join(e.b, 0, NULL), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(stats_of(e.b).in_flight, 5);
    for (int i = 0; i < 4; i++) CHECK_OK(brokk_broker_ack(e.b, atomic_load(&l.ids[i])));
    CHECK_STATUS(brokk_broker_join(e.b, 0, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 1);
    CHECK_OK(brokk_broker_nack(e.b, atomic_load(&l.ids[4]), false, 0, "done", 4));
    rem = 77;
    CHECK_OK(brokk_broker_join(e.b, wait_ms(), &rem));
    CHECK_EQ(rem, 0);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 4);
    CHECK_EQ(st.failed, 1);
    CHECK_EQ(st.in_flight, 0);
    env_finish(&e);
}

/* "Acks a delivery awaiting a manual ack (its handler returned LATER, or is still running)". */
typedef struct slow {
    const brokk_broker *b;
    gate g;
    _Atomic uint64_t id;
    atomic_uint calls, done;
} slow;

static brokk_verdict slow_handler(void *ud, const brokk_message *m) {
    slow *s = ud;
    atomic_fetch_add(&s->calls, 1);
    atomic_store(&s->id, brokk_message_delivery_id(m));
    gate_pass(&s->g);
    atomic_fetch_add(&s->done, 1);
    return BROKK_VERDICT_ACK;
}

static void ack_while_handler_still_running(void) {
    env e;
    if (!env_init(&e, 2)) return;
    slow s;
    s.b = e.b;
    gate_init(&s.g);
    atomic_init(&s.id, 0);
    atomic_init(&s.calls, 0);
    atomic_init(&s.done, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", slow_handler, &s, NULL, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    CHECK(gate_wait_entered(&s.g, 1));
    CHECK_OK(brokk_broker_ack(e.b, atomic_load(&s.id)));
    /* Join waits until no delivery is "queued, running or awaiting an ack": the handler is
     * still running, so join must time out rather than report the broker idle. */
    uint64_t rem = 0;
    brokk_status st = brokk_broker_join(e.b, 50, &rem);
    if (st == BROKK_STATUS_OK && atomic_load(&s.done) == 0)
        FAILF("join returned OK while a handler was still running (its delivery had been "
              "acked by id)");
    gate_open(&s.g);
    JOIN_OK(e.b);
    CHECK(wait_atomic_ge(&s.done, 1));
    brokk_stats bs = stats_of(e.b);
    CHECK_EQ(bs.processed, 1); /* the ACK verdict after the ack does not count twice */
    CHECK_EQ(bs.dispatched, 1);
    CHECK_EQ(evlog_count(&e.log, EV_PROCESSED), 1);
    env_finish(&e);
    gate_destroy(&s.g);
}

/* Deliveries left awaiting an ack outlive their subscription and its user data. */
static void pending_ack_survives_unsubscribe(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later l;
    later_init(&l, e.b, BROKK_VERDICT_LATER, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &l, NULL, true, 1, &sid));
    uint64_t sid2;
    CHECK_OK(subscribe_simple(e.b, "m2", later_handler, &l, NULL, true, 1, &sid2));
    CHECK_OK(publish_str(e.b, "m", "1"));
    CHECK(wait_atomic_u64_ne0(&l.ids[0]));
    CHECK_OK(publish_str(e.b, "m2", "2"));
    CHECK(wait_atomic_u64_ne0(&l.ids[1]));
    CHECK_OK(brokk_broker_unsubscribe(e.b, sid));
    CHECK_OK(brokk_broker_unsubscribe(e.b, sid2));
    /* Ack works after unsubscribe; a requeue has nowhere to go and is dropped. */
    CHECK_OK(brokk_broker_ack(e.b, atomic_load(&l.ids[0])));
    CHECK_OK(brokk_broker_nack(e.b, atomic_load(&l.ids[1]), true, 0, "back", 4));
    JOIN_OK(e.b);
    brokk_stats st = stats_of(e.b);
    CHECK_EQ(st.processed, 1);
    CHECK_EQ(st.dropped, 1);
    CHECK_EQ(st.requeued, 0);
    CHECK_EQ(atomic_load(&l.calls), 2);
    ev *f = failed_event(&e, 0);
    if (CHECK(f != NULL)) CHECK(!f->requeued);
    env_finish(&e);
}

typedef struct later_owned {
    later l;
    atomic_uint freed;
} later_owned;

static void later_owned_free(void *ud) { atomic_fetch_add(&((later_owned *)ud)->freed, 1); }

/* The finaliser does not wait for deliveries still awaiting an ack. */
static void finaliser_runs_while_ack_pending(void) {
    env e;
    if (!env_init(&e, 2)) return;
    later_owned o;
    later_init(&o.l, e.b, BROKK_VERDICT_LATER, 0);
    atomic_init(&o.freed, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(e.b, "m", later_handler, &o, later_owned_free, true, 1, &sid));
    CHECK_OK(publish_str(e.b, "m", "1"));
    CHECK(wait_atomic_u64_ne0(&o.l.ids[0]));
    CHECK_OK(brokk_broker_unsubscribe(e.b, sid));
    CHECK(wait_atomic_ge(&o.freed, 1));
    CHECK_EQ(stats_of(e.b).in_flight, 1);
    CHECK_OK(brokk_broker_ack(e.b, atomic_load(&o.l.ids[0])));
    JOIN_OK(e.b);
    CHECK_EQ(stats_of(e.b).processed, 1);
    env_finish(&e);
    CHECK_EQ(atomic_load(&o.freed), 1);
}

static const test_case TESTS[] = {
    TEST_CASE(verdict_ack_is_processed),
    TEST_CASE(verdict_nack_fails_with_reason),
    TEST_CASE(verdict_nack_without_reason),
    TEST_CASE(verdict_requeue_redelivers_with_next_attempt),
    TEST_CASE(verdict_unknown_number_counts_failed),
    TEST_CASE(verdict_unknown_on_manual_ack_counts_failed),
    TEST_CASE(verdict_later_on_auto_ack_is_processed),
    TEST_CASE(failure_reason_ignored_on_ack),
    TEST_CASE(manual_ack_handler_verdicts_settle),
    TEST_CASE(later_then_ack_from_another_thread),
    TEST_CASE(ack_inside_handler_then_later),
    TEST_CASE(ack_inside_handler_then_other_verdicts),
    TEST_CASE(nack_inside_handler_then_ack_counts_failed),
    TEST_CASE(nack_with_requeue_redelivers),
    TEST_CASE(nack_requeue_inside_handler),
    TEST_CASE(nack_without_requeue_fails),
    TEST_CASE(ack_of_auto_acked_delivery_is_already_settled),
    TEST_CASE(ack_inside_auto_ack_handler),
    TEST_CASE(ack_unknown_delivery_ids),
    TEST_CASE(nack_invalid_utf8_reason_keeps_delivery_pending),
    TEST_CASE(join_waits_for_pending_acks),
    TEST_CASE(ack_while_handler_still_running),
    TEST_CASE(pending_ack_survives_unsubscribe),
    TEST_CASE(finaliser_runs_while_ack_pending),
};

int main(int argc, char **argv) { return RUN_TESTS("test_ack", TESTS, argc, argv); }
