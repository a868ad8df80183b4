/*
 * Cancellation tokens and the owned take: brokk_cancel_* with brokk_broker_fetch_batch_until,
 * brokk_broker_take_until and brokk_broker_join_until. The ABI contract: a cancelled call
 * returns CANCELLED having done nothing, outputs are untouched, the check runs on the waiting
 * thread, bad arguments get clear statuses; and a take hands back a payload of any size.
 */
#include "check.h"

#define SENTINEL_LEN ((size_t)0xABCDu)

typedef struct waiter {
    const brokk_broker *b;
    const brokk_cancel *cancel;
    const char *call; /* "fetch", "take" or "join" */
    brokk_status status;
    size_t count;     /* fetch: deliveries written; take: payload length */
    bool out_touched; /* an output was written although the call failed */
    atomic_uint started;
} waiter;

static void *waiter_main(void *arg) {
    waiter *w = arg;
    atomic_store(&w->started, 1);
    if (strcmp(w->call, "fetch") == 0) {
        brokk_fetch_options o;
        memset(&o, 0, sizeof o);
        o.group = "w";
        o.group_len = 1;
        brokk_delivery *ds[4] = {NULL, NULL, NULL, NULL};
        size_t n = SENTINEL_LEN;
        w->status = brokk_broker_fetch_batch_until(w->b, "jobs", 4, &o, 4, BROKK_WAIT_FOREVER,
                                                   w->cancel, ds, &n);
        w->out_touched = n != SENTINEL_LEN || ds[0] != NULL;
    } else if (strcmp(w->call, "take") == 0) {
        char *payload = (char *)"untouched";
        size_t len = SENTINEL_LEN;
        w->status = brokk_broker_take_until(w->b, "jobs", 4, "w", 1, BROKK_WAIT_FOREVER, w->cancel,
                                            &payload, &len);
        w->out_touched = len != SENTINEL_LEN || strcmp(payload, "untouched") != 0;
    } else {
        uint64_t remaining = 777;
        w->status = brokk_broker_join_until(w->b, BROKK_WAIT_FOREVER, w->cancel, &remaining);
        w->out_touched = remaining != 777;
    }
    return NULL;
}

/* Runs `call` on its own thread until it blocks, cancels its token from this thread, and
 * checks it returned CANCELLED with its outputs untouched. */
static void cancel_one_blocked_call(const brokk_broker *b, const char *call) {
    brokk_cancel *cancel = NULL;
    if (!CHECK_OK(brokk_cancel_new(&cancel))) return;
    waiter w = {.b = b, .cancel = cancel, .call = call, .status = BROKK_STATUS_OK};
    pthread_t t;
    pthread_create(&t, NULL, waiter_main, &w);
    while (!atomic_load(&w.started)) sleep_ms(1);
    sleep_ms(50); /* long enough to be waiting; if not, the token is already cancelled anyway */
    CHECK(!brokk_cancel_is_cancelled(cancel));
    CHECK_OK(brokk_cancel_trigger(cancel));
    CHECK(brokk_cancel_is_cancelled(cancel));
    pthread_join(t, NULL);
    if (!CHECK_EQ(w.status, BROKK_STATUS_CANCELLED)) FAILF("%s returned %s", call, brokk_status_str(w.status));
    CHECK(!w.out_touched);
    brokk_cancel_free(cancel);
}

static void a_cancel_wakes_a_blocked_fetch_take_and_join_and_takes_nothing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_fetch_options hold;
    memset(&hold, 0, sizeof hold);
    hold.group = "h";
    hold.group_len = 1;
    /* A delivery held unacked gives join something to wait for. */
    brokk_delivery *held = NULL;
    CHECK_OK(brokk_broker_fetch(b, "held", 4, &hold, 0, &held));
    CHECK_OK(publish_str(b, "held", "1"));
    CHECK_OK(brokk_broker_fetch(b, "held", 4, &hold, 10000, &held));
    CHECK(held != NULL);
    cancel_one_blocked_call(b, "fetch");
    cancel_one_blocked_call(b, "take");
    cancel_one_blocked_call(b, "join");
    /* Nothing was taken by the cancelled calls: what is published now is there for a fetch. */
    CHECK_OK(publish_str(b, "jobs", "\"after\""));
    char *payload = NULL;
    size_t len = 0;
    CHECK_OK(brokk_broker_take_until(b, "jobs", 4, "w", 1, 10000, NULL, &payload, &len));
    CHECK_MEM(payload, len, "\"after\"", 7);
    CHECK_EQ(payload ? payload[len] : 1, 0); /* NUL-terminated */
    brokk_string_free(payload);
    if (held) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(brokk_delivery_message(held))));
        brokk_delivery_free(held);
    }
    CHECK_OK(brokk_broker_join_until(b, 10000, NULL, NULL));
    brokk_broker_free(b);
}

static void a_cancelled_token_stops_a_call_at_once_until_reset(void) {
    brokk_broker *b = new_broker(1);
    brokk_cancel *cancel = NULL;
    if (!b || !CHECK_OK(brokk_cancel_new(&cancel))) return;
    CHECK_OK(publish_str(b, "jobs", "1"));
    CHECK_OK(brokk_cancel_trigger(cancel));
    CHECK_OK(brokk_cancel_trigger(cancel)); /* idempotent */
    char *payload = NULL;
    size_t len = 0;
    /* Even with a message waiting and no wait asked for: nothing is taken. */
    CHECK_STATUS(brokk_broker_take_until(b, "jobs", 4, NULL, 0, 0, cancel, &payload, &len),
                 BROKK_STATUS_CANCELLED);
    CHECK_STATUS(brokk_broker_join_until(b, 0, cancel, NULL), BROKK_STATUS_CANCELLED);
    CHECK_EQ(count_of(b, "jobs"), 1);
    CHECK_OK(brokk_cancel_reset(cancel));
    CHECK(!brokk_cancel_is_cancelled(cancel));
    CHECK_OK(brokk_broker_take_until(b, "jobs", 4, NULL, 0, 0, cancel, &payload, &len));
    CHECK_MEM(payload, len, "1", 1);
    brokk_string_free(payload);
    brokk_cancel_free(cancel);
    brokk_broker_free(b);
}

typedef struct asker {
    pthread_t caller;
    atomic_uint asked;
    atomic_uint elsewhere; /* asked on a thread other than the caller's */
    unsigned stop_after;
} asker;

static bool ask(void *user_data) {
    asker *a = user_data;
    if (!pthread_equal(pthread_self(), a->caller)) atomic_fetch_add(&a->elsewhere, 1);
    return atomic_fetch_add(&a->asked, 1) + 1 >= a->stop_after;
}

static void a_checked_token_is_asked_on_the_waiting_thread_and_stops_the_wait(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    asker a = {.caller = pthread_self(), .stop_after = 5};
    brokk_cancel *cancel = NULL;
    if (!CHECK_OK(brokk_cancel_new_checked(ask, &a, 5, &cancel))) return;
    char *payload = (char *)"untouched";
    size_t len = SENTINEL_LEN;
    CHECK_STATUS(brokk_broker_take_until(b, "idle", 4, NULL, 0, BROKK_WAIT_FOREVER, cancel, &payload,
                                         &len),
                 BROKK_STATUS_CANCELLED);
    CHECK_EQ(len, SENTINEL_LEN);
    CHECK(atomic_load(&a.asked) >= 5);
    CHECK_EQ(atomic_load(&a.elsewhere), 0);
    CHECK(brokk_cancel_is_cancelled(cancel));
    /* A wait that ends on its own asks too, and times out as usual when the check says go on. */
    CHECK_OK(brokk_cancel_reset(cancel));
    a.stop_after = UINT32_MAX;
    brokk_delivery *ds[1];
    size_t n = SENTINEL_LEN;
    unsigned before = atomic_load(&a.asked);
    CHECK_OK(brokk_broker_fetch_batch_until(b, "idle", 4, NULL, 1, 60, cancel, ds, &n));
    CHECK_EQ(n, 0);
    CHECK(atomic_load(&a.asked) > before);
    brokk_cancel_free(cancel);
    brokk_broker_free(b);
}

static void take_until_hands_back_a_payload_of_any_size(void) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    o.max_payload_bytes = 8u << 20;
    brokk_broker *b = new_broker_opts(&o);
    if (!b) return;
    char *payload = (char *)"untouched";
    size_t len = SENTINEL_LEN;
    CHECK_OK(brokk_broker_take_until(b, "big", 3, NULL, 0, 0, NULL, &payload, &len));
    CHECK(payload == NULL);
    CHECK_EQ(len, 0);
    size_t n = 3u << 20;
    char *big = malloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'x', n);
    big[n + 1] = '"';
    big[n + 2] = '\0';
    CHECK_OK(publish_str(b, "big", big));
    CHECK_OK(brokk_broker_take_until(b, "big", 3, NULL, 0, 10000, NULL, &payload, &len));
    CHECK_MEM(payload, len, big, n + 2);
    CHECK_EQ(payload ? payload[len] : 1, 0);
    brokk_string_free(payload);
    CHECK_EQ(count_of(b, "big"), 0);
    free(big);
    brokk_broker_free(b);
}

static void bad_arguments_get_clear_statuses(void) {
    brokk_broker *b = new_broker(1);
    brokk_cancel *cancel = NULL;
    if (!b || !CHECK_OK(brokk_cancel_new(&cancel))) return;
    CHECK_STATUS(brokk_cancel_new(NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_cancel_new_checked(NULL, NULL, 5, &cancel), BROKK_STATUS_NULL_ARGUMENT);
    brokk_cancel *other = NULL;
    CHECK_STATUS(brokk_cancel_new_checked(ask, NULL, 0, &other), BROKK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(brokk_cancel_new_checked(ask, NULL, 60001, &other), BROKK_STATUS_INVALID_ARGUMENT);
    CHECK(other == NULL);
    CHECK_STATUS(brokk_cancel_trigger(NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_cancel_reset(NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK(!brokk_cancel_is_cancelled(NULL));
    brokk_cancel_free(NULL);
    char *payload = NULL;
    size_t len = 0;
    CHECK_STATUS(brokk_broker_take_until(b, "t", 1, NULL, 0, 0, cancel, NULL, &len),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take_until(b, "t", 1, NULL, 0, 0, cancel, &payload, NULL),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take_until(b, "bad topic", 9, NULL, 0, 0, cancel, &payload, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_take_until(NULL, "t", 1, NULL, 0, 0, cancel, &payload, &len),
                 BROKK_STATUS_NULL_ARGUMENT);
    brokk_delivery *ds[1];
    size_t n = 0;
    CHECK_STATUS(brokk_broker_fetch_batch_until(b, "t", 1, NULL, 0, 0, cancel, ds, &n),
                 BROKK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(brokk_broker_fetch_batch_until(b, "t", 1, NULL, 1, 0, cancel, NULL, &n),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_join_until(NULL, 0, cancel, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STREQ(brokk_status_str(BROKK_STATUS_CANCELLED), "cancelled");
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_CANCELLED), BROKK_STATUS_CLASS_TRANSIENT);
    /* After close, a blocked or new call says CLOSED, not CANCELLED. */
    CHECK_OK(brokk_broker_close(b, 0, true, NULL));
    CHECK_STATUS(brokk_broker_take_until(b, "t", 1, NULL, 0, 0, cancel, &payload, &len),
                 BROKK_STATUS_CLOSED);
    brokk_cancel_free(cancel);
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(a_cancel_wakes_a_blocked_fetch_take_and_join_and_takes_nothing),
    TEST_CASE(a_cancelled_token_stops_a_call_at_once_until_reset),
    TEST_CASE(a_checked_token_is_asked_on_the_waiting_thread_and_stops_the_wait),
    TEST_CASE(take_until_hands_back_a_payload_of_any_size),
    TEST_CASE(bad_arguments_get_clear_statuses),
};

int main(int argc, char **argv) { return RUN_TESTS("test_cancel", TESTS, argc, argv); }
