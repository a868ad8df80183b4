/*
 * Readiness notification: brokk_broker_notify_ready and brokk_broker_forget_ready. The ABI
 * contract: the callback runs exactly once (READY on a delivery, CLOSED on close or free) with
 * its user_data, on the thread that made the delivery available; an answer known at once comes
 * back through now_out and the callback never runs; forget says whether it ran and returns only
 * once a callback running on another thread has returned; outputs untouched on failure.
 */
#include "check.h"

typedef struct ready_rec {
    atomic_uint calls;
    atomic_uint last; /* the last readiness seen */
    pthread_t thread; /* where the last call ran */
    unsigned sleep_ms; /* how long the callback takes */
    atomic_uint finished;
} ready_rec;

static void on_ready(void *user_data, brokk_readiness readiness) {
    ready_rec *r = user_data;
    r->thread = pthread_self();
    atomic_store(&r->last, readiness);
    atomic_fetch_add(&r->calls, 1);
    if (r->sleep_ms) sleep_ms(r->sleep_ms);
    atomic_store(&r->finished, 1);
}

/* Registers `r` on `group` of "jobs"; returns the waiter id, 0 if the answer came at once
 * (then in *now). */
static uint64_t arm(const brokk_broker *b, const char *group, ready_rec *r, brokk_readiness *now) {
    uint64_t id = 77;
    *now = 99;
    if (!CHECK_OK(brokk_broker_notify_ready(b, "jobs", 4, group, group ? strlen(group) : 0, on_ready, r,
                                            &id, now)))
        return 0;
    CHECK(*now == BROKK_READINESS_PENDING ? id != 0 : id == 0);
    return id;
}

static void a_publish_runs_the_callback_once_on_the_publishing_thread(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    ready_rec r = {0};
    brokk_readiness now;
    uint64_t id = arm(b, "g", &r, &now);
    CHECK_EQ(now, BROKK_READINESS_PENDING);
    CHECK_EQ(atomic_load(&r.calls), 0);
    CHECK_OK(publish_str(b, "jobs", "1"));
    if (!test_durable()) {
        /* Memory: the publish itself made it available, so the callback ran inside it. */
        CHECK_EQ(atomic_load(&r.calls), 1);
        CHECK(pthread_equal(r.thread, pthread_self()));
    }
    CHECK(wait_atomic_ge(&r.calls, 1));
    CHECK_EQ(atomic_load(&r.last), BROKK_READINESS_READY);
    brokk_fetch_options o;
    memset(&o, 0, sizeof o);
    o.group = "g";
    o.group_len = 1;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "jobs", 4, &o, 0, &d));
    if (CHECK(d != NULL)) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(brokk_delivery_message(d))));
        brokk_delivery_free(d);
    }
    CHECK_OK(publish_str(b, "jobs", "2"));
    sleep_ms(20);
    CHECK_EQ(atomic_load(&r.calls), 1); /* exactly once */
    bool fired = false;
    CHECK_OK(brokk_broker_forget_ready(b, "jobs", 4, "g", 1, id, &fired));
    CHECK(fired);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r.calls), 1);
}

static void a_queued_delivery_is_reported_at_once(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "jobs", 4, NULL, 0, &d)); /* creates the default group */
    CHECK(d == NULL);
    CHECK_OK(publish_str(b, "jobs", "1"));
    ready_rec r = {0};
    brokk_readiness now;
    CHECK_EQ(arm(b, NULL, &r, &now), 0);
    CHECK_EQ(now, BROKK_READINESS_READY);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r.calls), 0); /* never runs */
}

static void close_and_free_run_pending_callbacks_with_closed(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    ready_rec r1 = {0}, r2 = {0};
    brokk_readiness now;
    arm(b, NULL, &r1, &now);
    CHECK_OK(brokk_broker_close(b, wait_ms(), false, NULL));
    CHECK(wait_atomic_ge(&r1.calls, 1));
    CHECK_EQ(atomic_load(&r1.last), BROKK_READINESS_CLOSED);
    CHECK_EQ(arm(b, NULL, &r2, &now), 0); /* closed: known at once */
    CHECK_EQ(now, BROKK_READINESS_CLOSED);
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r1.calls), 1);
    CHECK_EQ(atomic_load(&r2.calls), 0);

    brokk_broker *c = new_broker(1);
    if (!c) return;
    ready_rec r3 = {0};
    arm(c, "g", &r3, &now);
    brokk_broker_free(c); /* runs it before returning */
    CHECK_EQ(atomic_load(&r3.calls), 1);
    CHECK_EQ(atomic_load(&r3.last), BROKK_READINESS_CLOSED);
}

static void a_forgotten_registration_never_runs(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    ready_rec r = {0};
    brokk_readiness now;
    uint64_t id = arm(b, NULL, &r, &now);
    bool fired = true;
    CHECK_OK(brokk_broker_forget_ready(b, "jobs", 4, NULL, 0, id, &fired));
    CHECK(!fired);
    CHECK_OK(publish_str(b, "jobs", "1"));
    brokk_broker_free(b);
    CHECK_EQ(atomic_load(&r.calls), 0);
}

typedef struct publisher {
    const brokk_broker *b;
} publisher;

static void *publish_main(void *arg) {
    publisher *p = arg;
    CHECK_OK(publish_str(p->b, "jobs", "1"));
    return NULL;
}

static void forget_waits_for_a_callback_running_on_another_thread(void) {
    if (test_durable()) {
        test_skip("the callback runs on the publishing thread only on memory://");
        return;
    }
    brokk_broker *b = new_broker(1);
    if (!b) return;
    ready_rec r = {.sleep_ms = 100};
    brokk_readiness now;
    uint64_t id = arm(b, NULL, &r, &now);
    publisher p = {.b = b};
    pthread_t t;
    pthread_create(&t, NULL, publish_main, &p);
    CHECK(wait_atomic_ge(&r.calls, 1)); /* running now, for 100 ms */
    bool fired = false;
    CHECK_OK(brokk_broker_forget_ready(b, "jobs", 4, NULL, 0, id, &fired));
    CHECK(fired);
    CHECK_EQ(atomic_load(&r.finished), 1); /* forget returned after the callback did */
    pthread_join(t, NULL);
    brokk_broker_free(b);
}

static void bad_arguments_get_clear_statuses_and_leave_outputs_alone(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    uint64_t id = 5;
    brokk_readiness now = 9;
    bool fired = true;
    CHECK_STATUS(brokk_broker_notify_ready(NULL, "t", 1, NULL, 0, on_ready, NULL, &id, &now),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_notify_ready(b, NULL, 0, NULL, 0, on_ready, NULL, &id, &now),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_notify_ready(b, "t", 1, NULL, 0, NULL, NULL, &id, &now),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_notify_ready(b, "t", 1, NULL, 0, on_ready, NULL, NULL, &now),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_notify_ready(b, "t", 1, NULL, 0, on_ready, NULL, &id, NULL),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_notify_ready(b, "", 0, NULL, 0, on_ready, NULL, &id, &now),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_notify_ready(b, "t", 1, "a b", 3, on_ready, NULL, &id, &now),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_notify_ready(b, "\xff", 1, NULL, 0, on_ready, NULL, &id, &now),
                 BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_forget_ready(b, "t", 1, NULL, 0, 1, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_forget_ready(b, "t", 1, "a b", 3, 1, &fired), BROKK_STATUS_INVALID_GROUP);
    CHECK_EQ(id, 5);
    CHECK_EQ(now, 9);
    CHECK(fired);
    /* An id never issued there counts as fired. */
    fired = false;
    CHECK_OK(brokk_broker_forget_ready(b, "t", 1, NULL, 0, UINT64_MAX, &fired));
    CHECK(fired);
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(a_publish_runs_the_callback_once_on_the_publishing_thread),
    TEST_CASE(a_queued_delivery_is_reported_at_once),
    TEST_CASE(close_and_free_run_pending_callbacks_with_closed),
    TEST_CASE(a_forgotten_registration_never_runs),
    TEST_CASE(forget_waits_for_a_callback_running_on_another_thread),
    TEST_CASE(bad_arguments_get_clear_statuses_and_leave_outputs_alone),
};

int main(int argc, char **argv) { return RUN_TESTS("test_ready", TESTS, argc, argv); }
