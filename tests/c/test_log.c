/*
 * The log callback: real records from real events (a close report, a listener queue overflow)
 * at their levels, level filtering, the process-wide callback against a broker's own, replacing
 * and removing callbacks (each user_data released exactly once), bad input.
 */
#include "check.h"

/* Records what a log callback hears. */
#define LOG_MAX 64
typedef struct logrec {
    pthread_mutex_t m;
    unsigned n;
    brokk_log_level level[LOG_MAX];
    char target[LOG_MAX][64];
    char message[LOG_MAX][512];
    atomic_uint freed;
} logrec;

static void logrec_init(logrec *r) {
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->m, NULL);
    atomic_init(&r->freed, 0);
}

static void logrec_cb(void *ud, brokk_log_level level, const char *target, const char *message) {
    logrec *r = ud;
    pthread_mutex_lock(&r->m);
    if (r->n < LOG_MAX) {
        r->level[r->n] = level;
        snprintf(r->target[r->n], sizeof r->target[0], "%s", target);
        snprintf(r->message[r->n], sizeof r->message[0], "%s", message);
        r->n++;
    }
    pthread_mutex_unlock(&r->m);
}

static void logrec_free(void *ud) { atomic_fetch_add(&((logrec *)ud)->freed, 1); }

/* How many records of `target` at `level` mention `text`. */
static unsigned logrec_count(logrec *r, brokk_log_level level, const char *target, const char *text) {
    unsigned k = 0;
    pthread_mutex_lock(&r->m);
    for (unsigned i = 0; i < r->n; i++) {
        if (r->level[i] == level && strcmp(r->target[i], target) == 0 && strstr(r->message[i], text)) k++;
    }
    pthread_mutex_unlock(&r->m);
    return k;
}

static unsigned logrec_total(logrec *r) {
    pthread_mutex_lock(&r->m);
    unsigned n = r->n;
    pthread_mutex_unlock(&r->m);
    return n;
}

/* A handler stuck on a gate. */
static brokk_verdict gated_handler(void *ud, const brokk_message *m) {
    (void)m;
    gate_pass(ud);
    return BROKK_VERDICT_ACK;
}

/* Closes `b` with work left behind (a handler stuck, deliveries waiting): a Warn close report. */
static void close_with_work_left(brokk_broker *b) {
    gate g;
    gate_init(&g);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "stuck", gated_handler, &g, NULL, false, 1, &sid));
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "stuck", "1"));
    CHECK(gate_wait_entered(&g, 1));
    brokk_close_report r;
    CHECK_STATUS(brokk_broker_close(b, 20, false, &r), BROKK_STATUS_TIMEOUT);
    CHECK(r.remaining > 0);
    gate_open(&g);
    brokk_broker_free(b);
    gate_destroy(&g);
}

/* Closes `b` with nothing to do: an Info close report. */
static void close_clean(brokk_broker *b) {
    brokk_close_report r;
    CHECK_OK(brokk_broker_close(b, wait_ms(), false, &r));
    brokk_broker_free(b);
}

static void a_close_that_leaves_work_is_a_warning_and_a_clean_one_info(void) {
    logrec r;
    logrec_init(&r);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_INFO, logrec_cb, &r, logrec_free));
    close_with_work_left(b);
    CHECK_EQ(logrec_count(&r, BROKK_LOG_WARN, "brokk::close", "unfinished"), 1);
    CHECK_EQ(atomic_load(&r.freed), 1); /* released by brokk_broker_free */

    logrec_init(&r);
    b = new_broker(1);
    if (!b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_TRACE, logrec_cb, &r, logrec_free));
    close_clean(b);
    CHECK_EQ(logrec_count(&r, BROKK_LOG_INFO, "brokk::close", "nothing left behind"), 1);
    CHECK_EQ(atomic_load(&r.freed), 1);
}

static void records_above_the_callback_s_level_are_not_delivered(void) {
    logrec r;
    logrec_init(&r);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_WARN, logrec_cb, &r, logrec_free));
    close_clean(b); /* its report is Info */
    CHECK_EQ(logrec_total(&r), 0);
    CHECK_EQ(atomic_load(&r.freed), 1);
}

/* A listener whose publish events wait on a gate: the listener queue fills up. */
static void stuck_on_publish(void *ud, const brokk_message *m) {
    (void)m;
    gate_pass(ud);
}

static void a_listener_queue_overflow_is_a_warning(void) {
    logrec r;
    logrec_init(&r);
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 1;
    o.listener_queue_capacity = 1;
    brokk_broker *b = new_broker_opts(&o);
    if (!b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_INFO, logrec_cb, &r, logrec_free));
    gate g;
    gate_init(&g);
    brokk_listener l;
    memset(&l, 0, sizeof l);
    l.on_publish = stuck_on_publish;
    l.user_data = &g;
    uint64_t lid;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    for (int i = 0; i < 20; i++) CHECK_OK(publish_str(b, "events", "1"));
    CHECK(logrec_count(&r, BROKK_LOG_WARN, "brokk::listener", "is full") >= 1);
    gate_open(&g);
    JOIN_OK(b);
    brokk_broker_free(b);
    gate_destroy(&g);
}

static void a_broker_s_own_callback_takes_its_records_from_the_process_wide_one(void) {
    logrec process, own;
    logrec_init(&process);
    logrec_init(&own);
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_TRACE, logrec_cb, &process, logrec_free));
    brokk_broker *a = new_broker(1);
    brokk_broker *b = new_broker(1);
    if (!a || !b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_TRACE, logrec_cb, &own, logrec_free));
    close_clean(a);
    close_clean(b);
    CHECK_EQ(logrec_count(&process, BROKK_LOG_INFO, "brokk::close", "closed"), 1);
    CHECK_EQ(logrec_count(&own, BROKK_LOG_INFO, "brokk::close", "closed"), 1);

    /* A broker's callback removed: back to the process-wide one. */
    b = new_broker(1);
    if (!b) return;
    logrec own2;
    logrec_init(&own2);
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_TRACE, logrec_cb, &own2, logrec_free));
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_TRACE, NULL, NULL, NULL));
    CHECK_EQ(atomic_load(&own2.freed), 1); /* no call was running: released at once */
    close_clean(b);
    CHECK_EQ(logrec_count(&process, BROKK_LOG_INFO, "brokk::close", "closed"), 2);
    CHECK_EQ(logrec_total(&own2), 0);

    /* Silent again: nothing more is heard, and the callback's user_data is released once. */
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_TRACE, NULL, NULL, NULL));
    CHECK_EQ(atomic_load(&process.freed), 1);
    unsigned heard = logrec_total(&process);
    b = new_broker(1);
    if (!b) return;
    close_clean(b);
    CHECK_EQ(logrec_total(&process), heard);
    CHECK_EQ(atomic_load(&process.freed), 1);
}

static void replacing_a_callback_releases_the_previous_user_data_once(void) {
    logrec first, second;
    logrec_init(&first);
    logrec_init(&second);
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_INFO, logrec_cb, &first, logrec_free));
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_INFO, logrec_cb, &second, logrec_free));
    CHECK_EQ(atomic_load(&first.freed), 1);
    CHECK_EQ(atomic_load(&second.freed), 0);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    close_clean(b);
    CHECK_EQ(logrec_total(&first), 0);
    CHECK_EQ(logrec_count(&second, BROKK_LOG_INFO, "brokk::close", "closed"), 1);
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_INFO, NULL, NULL, NULL));
    CHECK_EQ(atomic_load(&second.freed), 1);
    CHECK_EQ(atomic_load(&first.freed), 1);

    /* The same for a broker's own callback. */
    logrec_init(&first);
    logrec_init(&second);
    b = new_broker(1);
    if (!b) return;
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_INFO, logrec_cb, &first, logrec_free));
    CHECK_OK(brokk_broker_set_log_callback(b, BROKK_LOG_INFO, logrec_cb, &second, logrec_free));
    CHECK_EQ(atomic_load(&first.freed), 1);
    close_clean(b);
    CHECK_EQ(logrec_total(&first), 0);
    CHECK_EQ(logrec_count(&second, BROKK_LOG_INFO, "brokk::close", "closed"), 1);
    CHECK_EQ(atomic_load(&second.freed), 1);
}

static void bad_input_takes_nothing(void) {
    logrec r;
    logrec_init(&r);
    CHECK_STATUS(brokk_log_set_callback(0, logrec_cb, &r, logrec_free), BROKK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(brokk_log_set_callback(6, logrec_cb, &r, logrec_free), BROKK_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(brokk_last_error(), "log level") != NULL);
    CHECK_STATUS(brokk_broker_set_log_callback(NULL, BROKK_LOG_INFO, logrec_cb, &r, logrec_free),
                 BROKK_STATUS_NULL_ARGUMENT);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_STATUS(brokk_broker_set_log_callback(b, 42, logrec_cb, &r, logrec_free),
                 BROKK_STATUS_INVALID_ARGUMENT);
    close_clean(b);
    CHECK_EQ(atomic_load(&r.freed), 0);
    CHECK_EQ(logrec_total(&r), 0);
}

/* A callback that replaces itself from inside a call: no lock is held while it runs. */
static logrec reentrant_next;
static void reentrant_cb(void *ud, brokk_log_level level, const char *target, const char *message) {
    logrec_cb(ud, level, target, message);
    brokk_log_set_callback(BROKK_LOG_TRACE, logrec_cb, &reentrant_next, logrec_free);
}

static void a_callback_may_replace_itself(void) {
    logrec r;
    logrec_init(&r);
    logrec_init(&reentrant_next);
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_TRACE, reentrant_cb, &r, logrec_free));
    brokk_broker *b = new_broker(1);
    if (!b) return;
    close_clean(b);
    CHECK_EQ(logrec_total(&r), 1);
    CHECK_EQ(atomic_load(&r.freed), 1); /* when its own call returned */
    CHECK_OK(brokk_log_set_callback(BROKK_LOG_TRACE, NULL, NULL, NULL));
    CHECK_EQ(atomic_load(&reentrant_next.freed), 1);
}

static const test_case TESTS[] = {
    TEST_CASE(a_close_that_leaves_work_is_a_warning_and_a_clean_one_info),
    TEST_CASE(records_above_the_callback_s_level_are_not_delivered),
    TEST_CASE(a_listener_queue_overflow_is_a_warning),
    TEST_CASE(a_broker_s_own_callback_takes_its_records_from_the_process_wide_one),
    TEST_CASE(replacing_a_callback_releases_the_previous_user_data_once),
    TEST_CASE(bad_input_takes_nothing),
    TEST_CASE(a_callback_may_replace_itself),
};

int main(int argc, char **argv) { return RUN_TESTS("test_log", TESTS, argc, argv); }
