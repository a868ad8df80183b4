/*
 * The pull side and what came with it: brokk_broker_fetch and brokk_delivery, consumer groups
 * (competition inside a group, a copy per group), priorities, retention of messages published
 * before any group exists, count and purge, brokk_broker_publish_batch, and brokk_broker_take
 * (fetch and ack in one call) with brokk_broker_take_with (the same, its arguments in a request).
 */
#include "recorder.h"

#define DELIVERY_SENTINEL ((brokk_delivery *)(uintptr_t)0xD0D0D0D0u)

/* Fetches once and checks the status is OK; returns the delivery or NULL. */
static brokk_delivery *fetch_at(const brokk_broker *b, const char *topic, const char *group,
                                uint64_t timeout_ms, int line) {
    brokk_delivery *d = DELIVERY_SENTINEL;
    brokk_status st = brokk_broker_fetch(b, topic, strlen(topic), FOPTS(group, group ? strlen(group) : 0),
                                         timeout_ms, &d);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "fetch(%s, %s) returned %s: %s", topic, group ? group : "NULL",
                    brokk_status_str(st), brokk_last_error());
        return NULL;
    }
    if (d == DELIVERY_SENTINEL) {
        check_fail_(__FILE__, line, "fetch returned OK without writing delivery_out");
        return NULL;
    }
    return d;
}
#define FETCH(b, topic, group, timeout) fetch_at((b), (topic), (group), (timeout), __LINE__)

static const brokk_message *msg_of(const brokk_delivery *d) { return brokk_delivery_message(d); }

static bool payload_is(const brokk_delivery *d, const char *text) {
    return d && view_eq(brokk_message_payload(msg_of(d)), text);
}

/* Fetches (no wait) and acks; returns the payload as text into buf, or "" if none. */
static const char *take_one(const brokk_broker *b, const char *topic, const char *group,
                            char *buf, size_t cap) {
    buf[0] = '\0';
    brokk_delivery *d = FETCH(b, topic, group, 0);
    if (!d) return buf;
    view_cstr(brokk_message_payload(msg_of(d)), buf, cap);
    CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
    brokk_delivery_free(d);
    return buf;
}

static brokk_status publish_prio(const brokk_broker *b, const char *topic, const char *payload,
                                 int32_t priority) {
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.priority = priority;
    return brokk_broker_publish(b, topic, strlen(topic), payload, strlen(payload), &o, NULL, 0);
}

/* ---- fetch --------------------------------------------------------------------------------- */

static void fetch_takes_retained_messages_in_order(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog log;
    evlog_add(b, &log);
    char ids[3][BROKK_ID_BUFFER_SIZE];
    for (int i = 0; i < 3; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        CHECK_OK(brokk_broker_publish(b, "q", 1, p, strlen(p), NULL, ids[i], sizeof ids[i]));
    }
    CHECK_EQ(count_of(b, "q"), 3);
    uint64_t seen[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        brokk_delivery *d = FETCH(b, "q", NULL, 0);
        if (!CHECK(d != NULL)) break;
        const brokk_message *m = msg_of(d);
        CHECK(m != NULL);
        char p[16], dec[32];
        snprintf(p, sizeof p, "%d", i);
        CHECK(payload_is(d, p));
        CHECK_STR(brokk_message_topic(m), "q");
        CHECK_STR(brokk_message_parent_id(m), ids[i]);
        CHECK_STR(brokk_message_group(m), "default"); /* NULL group means "default" */
        CHECK_STR(brokk_message_metadata(m), "{}");
        CHECK_EQ(brokk_message_attempt(m), 1);
        CHECK_EQ(brokk_message_priority(m), 0);
        CHECK(brokk_message_timestamp_ms(m) != 0);
        seen[i] = brokk_message_delivery_id(m);
        CHECK(seen[i] != 0);
        snprintf(dec, sizeof dec, "%" PRIu64, seen[i]);
        CHECK_STR(brokk_message_id(m), dec);
        brokk_delivery_free(d);
    }
    CHECK(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
    brokk_delivery *none = FETCH(b, "q", NULL, 0);
    CHECK(none == NULL);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.in_flight, 3);
    CHECK_EQ(s.dispatched, 3);
    for (int i = 0; i < 3; i++) CHECK_OK(brokk_broker_ack(b, seen[i]));
    JOIN_OK(b);
    s = stats_of(b);
    CHECK_EQ(s.processed, 3);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(count_of(b, "q"), 0);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), 3);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), 3);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

/* Delivery ids are unique within a process: an id of one broker is unknown to another, and
 * acking it there changes nothing (the same numbers once settled the other broker's delivery). */
static void delivery_id_of_another_broker_is_unknown(void) {
    brokk_broker *a = new_broker(1), *b = new_broker(1);
    if (!a || !b) goto done;
    CHECK_OK(publish_str(a, "q", "1"));
    CHECK_OK(publish_str(b, "q", "1"));
    brokk_delivery *da = FETCH(a, "q", NULL, 0), *db = FETCH(b, "q", NULL, 0);
    if (CHECK(da != NULL && db != NULL)) {
        uint64_t ida = brokk_message_delivery_id(msg_of(da)), idb = brokk_message_delivery_id(msg_of(db));
        CHECK(ida != idb);
        CHECK_STATUS(brokk_broker_ack(b, ida), BROKK_STATUS_UNKNOWN_DELIVERY);
        CHECK_STATUS(brokk_broker_nack(b, ida, true, 0, NULL, 0), BROKK_STATUS_UNKNOWN_DELIVERY);
        CHECK_STATUS(brokk_broker_ack(a, idb), BROKK_STATUS_UNKNOWN_DELIVERY);
        CHECK_EQ(stats_of(a).in_flight, 1);
        CHECK_EQ(stats_of(b).in_flight, 1);
        CHECK_OK(brokk_broker_ack(a, ida));
        CHECK_OK(brokk_broker_ack(b, idb));
        JOIN_OK(a);
        JOIN_OK(b);
        CHECK_EQ(stats_of(a).processed, 1);
        CHECK_EQ(stats_of(b).processed, 1);
    }
    brokk_delivery_free(da);
    brokk_delivery_free(db);
done:
    brokk_broker_free(a);
    brokk_broker_free(b);
}

static void fetch_with_nothing_there_returns_null(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK(FETCH(b, "empty", NULL, 0) == NULL);
    CHECK(FETCH(b, "empty", "g", 0) == NULL);
    CHECK(FETCH(b, "empty", NULL, 20) == NULL); /* waits 20 ms, then OK with NULL */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.topics, 1); /* fetch creates the topic */
    CHECK_EQ(s.dispatched, 0);
    brokk_broker_free(b);
}

static void fetch_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char long_name[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_name, 'a', sizeof long_name);
    brokk_delivery *d = DELIVERY_SENTINEL;
    CHECK_STATUS(brokk_broker_fetch(NULL, "t", 1, NULL, 0, &d), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_fetch(b, NULL, 1, NULL, 0, &d), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, NULL, 0, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_fetch(b, "", 0, NULL, 0, &d), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_fetch(b, "a b", 3, NULL, 0, &d), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_fetch(b, long_name, sizeof long_name, NULL, 0, &d),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_fetch(b, "t\xff", 2, NULL, 0, &d), BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS("", 0), 0, &d), BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS("a b", 3), 0, &d), BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS("a/b", 3), 0, &d), BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS(long_name, sizeof long_name), 0, &d),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS("g\xc3", 2), 0, &d), BROKK_STATUS_INVALID_UTF8);
    /* A bad name never waits, even with a timeout. */
    CHECK_STATUS(brokk_broker_fetch(b, "t", 1, FOPTS("a b", 3), BROKK_WAIT_FOREVER, &d),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK(d == DELIVERY_SENTINEL);
    CHECK_EQ(stats_of(b).topics, 0);
    brokk_broker_free(b);
}

static void delivery_handle_null_and_lifetime(void) {
    CHECK(brokk_delivery_message(NULL) == NULL);
    brokk_delivery_free(NULL);
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "life", "{\"kept\":\"until free\"}"));
    brokk_delivery *d = FETCH(b, "life", NULL, 0);
    if (CHECK(d != NULL)) {
        /* The view stays valid while other broker activity goes on, until free. */
        brokk_str p = brokk_message_payload(msg_of(d));
        for (int i = 0; i < 20; i++) CHECK_OK(publish_str(b, "other", "[1,2,3]"));
        CHECK_OK(brokk_broker_purge(b, NULL, 0, NULL));
        CHECK_MEM(p.ptr, p.len, "{\"kept\":\"until free\"}", strlen("{\"kept\":\"until free\"}"));
        CHECK(msg_of(d) == msg_of(d));
        uint64_t id = brokk_message_delivery_id(msg_of(d));
        /* Acking does not invalidate the handle either. */
        CHECK_OK(brokk_broker_ack(b, id));
        CHECK_STR(brokk_message_topic(msg_of(d)), "life");
        brokk_delivery_free(d);
    }
    brokk_broker_free(b);
}

/* A fetched delivery outlives its broker handle's free only as memory to release: freeing the
 * delivery after the broker must be fine (the header says handles are independent). */
static void delivery_freed_after_broker(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "late.free", "\"x\""));
    brokk_delivery *d = FETCH(b, "late.free", NULL, 0);
    brokk_broker_free(b);
    if (CHECK(d != NULL)) {
        CHECK(payload_is(d, "\"x\""));
        brokk_delivery_free(d);
    }
}

static void delivery_free_does_not_settle(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "ds", "1"));
    brokk_delivery *d = FETCH(b, "ds", NULL, 0);
    if (!CHECK(d != NULL)) {
        brokk_broker_free(b);
        return;
    }
    uint64_t id = brokk_message_delivery_id(msg_of(d));
    brokk_delivery_free(d);
    CHECK_EQ(stats_of(b).in_flight, 1);
    uint64_t rem = 0;
    CHECK_STATUS(brokk_broker_join(b, 0, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 1);
    CHECK(FETCH(b, "ds", NULL, 0) == NULL); /* in flight, not back in the queue */
    CHECK_OK(brokk_broker_ack(b, id));
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 1);
    CHECK_STATUS(brokk_broker_ack(b, id), BROKK_STATUS_ALREADY_SETTLED);
    brokk_broker_free(b);
}

static void fetched_delivery_nack_and_requeue(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    evlog log;
    evlog_add(b, &log);
    CHECK_OK(publish_str(b, "nq", "1"));
    brokk_delivery *d = FETCH(b, "nq", "w", 0);
    if (!CHECK(d != NULL)) {
        brokk_broker_free(b);
        evlog_destroy(&log);
        return;
    }
    uint64_t id = brokk_message_delivery_id(msg_of(d));
    CHECK_STR(brokk_message_group(msg_of(d)), "w");
    brokk_delivery_free(d);
    CHECK_OK(brokk_broker_nack(b, id, true, 0, "again", 5));
    d = FETCH(b, "nq", "w", 0);
    if (CHECK(d != NULL)) {
        CHECK_EQ(brokk_message_delivery_id(msg_of(d)), id);
        CHECK_EQ(brokk_message_attempt(msg_of(d)), 2);
        brokk_delivery_free(d);
    }
    CHECK_OK(brokk_broker_nack(b, id, false, 0, "bad", 3));
    CHECK_STATUS(brokk_broker_ack(b, id), BROKK_STATUS_ALREADY_SETTLED);
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.requeued, 1);
    CHECK_EQ(s.failed, 1);
    CHECK_EQ(s.dispatched, 2);
    CHECK_EQ(evlog_count(&log, EV_FAILED), 2);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

typedef struct later_publisher {
    const brokk_broker *b;
    unsigned delay_ms;
    brokk_status st;
} later_publisher;

static void *publish_later(void *arg) {
    later_publisher *p = arg;
    sleep_ms(p->delay_ms);
    p->st = publish_str(p->b, "wait", "\"arrived\"");
    return NULL;
}

static void fetch_waits_for_a_publish(void) {
    static const uint64_t timeouts[] = {0, BROKK_WAIT_FOREVER};
    for (int k = 0; k < 2; k++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        CHECK(FETCH(b, "wait", NULL, 0) == NULL); /* creates the group: the publish queues */
        later_publisher p = {b, 30, BROKK_STATUS_PANIC};
        pthread_t t;
        pthread_create(&t, NULL, publish_later, &p);
        brokk_delivery *d = FETCH(b, "wait", NULL, timeouts[k] ? timeouts[k] : wait_ms());
        pthread_join(t, NULL);
        CHECK_EQ(p.st, BROKK_STATUS_OK);
        if (CHECK(d != NULL)) {
            CHECK(payload_is(d, "\"arrived\""));
            CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
            brokk_delivery_free(d);
        }
        brokk_broker_free(b);
    }
}

typedef struct blocked_fetch {
    const brokk_broker *b;
    brokk_status st;
    brokk_delivery *d;
    atomic_uint started, returned;
} blocked_fetch;

static void *fetch_forever(void *arg) {
    blocked_fetch *f = arg;
    atomic_store(&f->started, 1);
    f->st = brokk_broker_fetch(f->b, "idle", 4, NULL, BROKK_WAIT_FOREVER, &f->d);
    atomic_store(&f->returned, 1);
    return NULL;
}

/* "once closed, a blocked fetch returns CLOSED" — after a graceful or a forced close. */
static void blocked_fetch_returns_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        blocked_fetch f = {b, BROKK_STATUS_PANIC, DELIVERY_SENTINEL, 0, 0};
        pthread_t t;
        pthread_create(&t, NULL, fetch_forever, &f);
        while (!atomic_load(&f.started)) sleep_ms(1);
        sleep_ms(20); /* most likely blocked by now; CLOSED is right either way */
        CHECK_EQ(atomic_load(&f.returned), 0);
        CHECK_OK(brokk_broker_close(b, wait_ms(), force, NULL));
        pthread_join(t, NULL);
        CHECK_EQ(f.st, BROKK_STATUS_CLOSED);
        CHECK(f.d == DELIVERY_SENTINEL);
        brokk_broker_free(b);
    }
}

/* "While the broker is closing it still serves what is queued". */
static void fetch_serves_queued_while_closing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK(FETCH(b, "drain", "g", 0) == NULL); /* group g exists: publishes queue there */
    CHECK_OK(publish_str(b, "drain", "1"));
    CHECK_OK(publish_str(b, "drain", "2"));
    graceful_close c;
    graceful_close_start(&c, b);
    for (int i = 0; i < 2; i++) {
        brokk_delivery *d = FETCH(b, "drain", "g", wait_ms());
        if (!CHECK(d != NULL)) break;
        CHECK_EQ(atomic_load(&c.returned), 0); /* still waiting for this one */
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    pthread_join(c.t, NULL);
    CHECK_EQ(c.st, BROKK_STATUS_OK);
    CHECK_EQ(c.r.remaining, 0);
    brokk_broker_free(b);
}

/* ---- take: fetch + ack in one call ------------------------------------------------------------ */

#define LEN_SENTINEL ((size_t)0xA5A5A5A5u)

/* brokk_broker_take once, checking OK; returns *payload_len_out (0: nothing came), or
 * LEN_SENTINEL if the call failed or left the length unwritten. */
static size_t take_at(const brokk_broker *b, const char *topic, const char *group,
                      uint64_t timeout_ms, char *buf, size_t cap, int line) {
    size_t len = LEN_SENTINEL;
    brokk_status st = brokk_broker_take(b, topic, strlen(topic), group, group ? strlen(group) : 0,
                                        timeout_ms, buf, cap, &len);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "take(%s, %s, cap %zu) returned %s: %s", topic,
                    group ? group : "NULL", cap, brokk_status_str(st), brokk_last_error());
        return LEN_SENTINEL;
    }
    if (len == LEN_SENTINEL) check_fail_(__FILE__, line, "take returned OK without writing the length");
    return len;
}
#define TAKE(b, topic, group, timeout, buf, cap) \
    take_at((b), (topic), (group), (timeout), (buf), (cap), __LINE__)

/* Takes into buf (with room for a NUL) and checks the payload is `want` ("" : nothing came). */
static bool take_is_at(const brokk_broker *b, const char *topic, const char *group,
                       const char *want, int line) {
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    size_t len = take_at(b, topic, group, 0, buf, sizeof buf, line);
    if (len == LEN_SENTINEL) return false;
    size_t n = strlen(want);
    if (len != n || (n && memcmp(buf, want, n) != 0)) {
        check_fail_(__FILE__, line, "take(%s, %s) got \"%.*s\" (%zu bytes), want \"%s\"", topic,
                    group ? group : "NULL", (int)(len < sizeof buf ? len : 0), buf, len, want);
        return false;
    }
    if (n && buf[n] != '\0') {
        check_fail_(__FILE__, line, "take left no NUL after a %zu-byte payload with room for it", n);
        return false;
    }
    return true;
}
#define TAKE_IS(b, topic, group, want) take_is_at((b), (topic), (group), (want), __LINE__)

static void take_with_nothing_there_returns_len_0(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char buf[16];
    CHECK_EQ(TAKE(b, "empty", NULL, 0, buf, sizeof buf), 0); /* at once, nothing */
    CHECK_EQ(TAKE(b, "empty", "g", 0, buf, sizeof buf), 0);
    CHECK_EQ(TAKE(b, "empty", NULL, 20, buf, sizeof buf), 0); /* waits 20 ms, then len 0 */
    CHECK_EQ(TAKE(b, "empty", NULL, 0, NULL, 0), 0);          /* no buffer at all: fine */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(s.processed, 0);
    CHECK_EQ(s.in_flight, 0);
    brokk_broker_free(b);
}

/* Highest priority first, FIFO within one; each take acks: nothing in flight, nothing to ack,
 * count drops, processed counts it, listeners hear dispatched then processed. Another group
 * keeps its own copies. */
static void take_acks_as_it_takes_in_priority_order(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    evlog log;
    evlog_add(b, &log);
    char buf[16];
    /* Both groups first, so each gets a copy of what comes next. */
    CHECK_EQ(TAKE(b, "jobs", NULL, 0, buf, sizeof buf), 0);
    CHECK_EQ(TAKE(b, "jobs", "other", 0, buf, sizeof buf), 0);
    static const char *const payloads[] = {"1", "22", "3", "4", "5", "666", "7"};
    static const int32_t prio[] = {0, 5, 0, -2, 5, 9, 0};
    for (int i = 0; i < 7; i++) CHECK_OK(publish_prio(b, "jobs", payloads[i], prio[i]));
    CHECK_EQ(count_of(b, "jobs"), 14);
    static const char *const want[] = {"666", "22", "5", "1", "3", "7", "4"};
    for (int i = 0; i < 7; i++) {
        if (!TAKE_IS(b, "jobs", NULL, want[i])) break;
        CHECK_EQ(count_of(b, "jobs"), 13 - i); /* gone from the group at once */
        brokk_stats s = stats_of(b);
        CHECK_EQ(s.in_flight, 0); /* nothing awaits an ack */
        CHECK_EQ(s.processed, (uint64_t)i + 1);
        CHECK_EQ(s.dispatched, (uint64_t)i + 1);
    }
    CHECK(TAKE_IS(b, "jobs", NULL, "")); /* the default group is drained */
    CHECK_EQ(count_of(b, "jobs"), 7);  /* "other" still has its seven */
    /* What join still waits for is the seven queued in "other", no delivery of the default
     * group. */
    uint64_t rem = 77;
    CHECK_STATUS(brokk_broker_join(b, 0, &rem), BROKK_STATUS_TIMEOUT);
    CHECK_EQ(rem, 7);
    for (int i = 0; i < 7; i++) CHECK(TAKE_IS(b, "jobs", "other", want[i]));
    CHECK(TAKE_IS(b, "jobs", "other", ""));
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 7);
    CHECK_EQ(s.dispatched, 14);
    CHECK_EQ(s.processed, 14);
    CHECK_EQ(s.failed, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(count_of(b, "jobs"), 0);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), 14);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), 14);
    CHECK_EQ(evlog_count(&log, EV_FAILED), 0);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

/* A take with too little room takes nothing and reports the size; one with room then takes it.
 * Exactly the payload's size is room enough (no NUL then). */
static void take_buffer_too_small_leaves_the_message(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    static const char big[] = "{\"k\":\"0123456789\"}"; /* 18 bytes */
    const size_t n = sizeof big - 1;
    CHECK_EQ(TAKE(b, "tight", NULL, 0, NULL, 0), 0); /* the group, before publishing */
    CHECK_OK(publish_str(b, "tight", big));
    CHECK_OK(publish_str(b, "tight", "2"));
    char buf[64];
    size_t len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(b, "tight", 5, NULL, 0, 0, buf, n - 1, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(len, n);
    len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(b, "tight", 5, NULL, 0, 0, NULL, 0, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL); /* cap 0 with NULL: a size query */
    CHECK_EQ(len, n);
    len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(b, "tight", 5, NULL, 0, wait_ms(), buf, 1, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL); /* a message is there: no wait */
    CHECK_EQ(len, n);
    CHECK_EQ(count_of(b, "tight"), 2); /* nothing was taken */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(s.processed, 0);
    CHECK_EQ(s.in_flight, 0);
    /* Exactly n bytes: taken, no NUL written past them. */
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(TAKE(b, "tight", NULL, 0, buf, n), n);
    CHECK_MEM(buf, n, big, n);
    CHECK_EQ(buf[n], 'Z');
    CHECK_EQ(count_of(b, "tight"), 1);
    /* The next, "2", fits in a 1-byte buffer too; cap 0 is too small for any payload. */
    len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(b, "tight", 5, NULL, 0, 0, NULL, 0, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(len, 1);
    memset(buf, 'Z', sizeof buf);
    CHECK_EQ(TAKE(b, "tight", NULL, 0, buf, sizeof buf), 1);
    CHECK_STREQ(buf, "2");
    CHECK_EQ(TAKE(b, "tight", NULL, 0, buf, sizeof buf), 0);
    JOIN_OK(b);
    s = stats_of(b);
    CHECK_EQ(s.dispatched, 2);
    CHECK_EQ(s.processed, 2);
    brokk_broker_free(b);
}

/* A payload far larger than a first guess: the size query then a buffer of that size. */
static void take_large_payload_by_size_query(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    const size_t n = 100 * 1000;
    char *big = malloc(n + 1);
    if (!CHECK(big != NULL)) {
        brokk_broker_free(b);
        return;
    }
    big[0] = '"';
    for (size_t i = 1; i < n - 1; i++) big[i] = (char)('a' + i % 26);
    big[n - 1] = '"';
    big[n] = '\0';
    CHECK_EQ(TAKE(b, "large", NULL, 0, NULL, 0), 0);
    CHECK_OK(brokk_broker_publish(b, "large", 5, big, n, NULL, NULL, 0));
    char small[4096];
    size_t len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(b, "large", 5, NULL, 0, 0, small, sizeof small, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL);
    if (CHECK_EQ(len, n)) {
        char *out = malloc(len + 1);
        if (CHECK(out != NULL)) {
            CHECK_EQ(TAKE(b, "large", NULL, 0, out, len + 1), n);
            CHECK_MEM(out, strlen(out), big, n); /* whole, and NUL-terminated */
            free(out);
        }
    }
    CHECK_EQ(count_of(b, "large"), 0);
    free(big);
    brokk_broker_free(b);
}

static void take_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_EQ(TAKE(b, "t", NULL, 0, NULL, 0), 0); /* group "default" on t */
    CHECK_OK(publish_str(b, "t", "1"));
    char long_name[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_name, 'a', sizeof long_name);
    char buf[16];
    size_t len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take(NULL, "t", 1, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take(b, NULL, 1, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, NULL, 0, 0, buf, sizeof buf, NULL),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, NULL, 0, 0, NULL, sizeof buf, &len),
                 BROKK_STATUS_NULL_ARGUMENT); /* NULL payload_out with room claimed */
    CHECK_STATUS(brokk_broker_take(b, "t", 1, NULL, 0, 0, NULL, 1, &len),
                 BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take(b, "", 0, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_take(b, "a b", 3, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_take(b, "a/b", 3, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_take(b, long_name, sizeof long_name, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_take(b, "t\xff", 2, NULL, 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, "", 0, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, "a b", 3, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, "a/b", 3, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, long_name, sizeof long_name, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_take(b, "t", 1, "g\xc3", 2, 0, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_UTF8);
    /* A bad name never waits, even with a timeout. */
    CHECK_STATUS(brokk_broker_take(b, "t", 1, "a b", 3, BROKK_WAIT_FOREVER, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_take(b, "a b", 3, NULL, 0, BROKK_WAIT_FOREVER, buf, sizeof buf, &len),
                 BROKK_STATUS_INVALID_TOPIC);
    CHECK_EQ(len, LEN_SENTINEL); /* untouched by every failure above */
    CHECK_EQ(count_of(b, "t"), 1); /* and nothing was taken */
    CHECK_EQ(stats_of(b).dispatched, 0);
    CHECK(TAKE_IS(b, "t", NULL, "1"));
    brokk_broker_free(b);
}

/* NULL group is "default": a take and a fetch without a group share one queue. */
static void take_null_group_is_default(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_EQ(TAKE(b, "dg", "default", 0, NULL, 0), 0);
    CHECK_OK(publish_str(b, "dg", "1"));
    CHECK_OK(publish_str(b, "dg", "2"));
    CHECK_OK(publish_str(b, "dg", "3"));
    CHECK_EQ(count_of(b, "dg"), 3); /* one group only */
    CHECK(TAKE_IS(b, "dg", NULL, "1"));
    brokk_delivery *d = FETCH(b, "dg", "default", 0);
    if (CHECK(d != NULL)) {
        CHECK(payload_is(d, "2"));
        CHECK_STR(brokk_message_group(msg_of(d)), "default");
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    CHECK(TAKE_IS(b, "dg", "default", "3"));
    CHECK(TAKE_IS(b, "dg", NULL, ""));
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 3);
    brokk_broker_free(b);
}

/* A take skips a delivery another consumer of the group holds, and does not touch it. */
static void take_leaves_held_deliveries_alone(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_EQ(TAKE(b, "held", "w", 0, NULL, 0), 0);
    CHECK_OK(publish_str(b, "held", "1"));
    CHECK_OK(publish_str(b, "held", "2"));
    brokk_delivery *d = FETCH(b, "held", "w", 0);
    CHECK(payload_is(d, "1"));
    CHECK(TAKE_IS(b, "held", "w", "2"));
    CHECK(TAKE_IS(b, "held", "w", "")); /* "1" is in flight, not taken */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.in_flight, 1);
    CHECK_EQ(s.processed, 1);
    if (d) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 2);
    brokk_broker_free(b);
}

typedef struct later_take {
    const brokk_broker *b;
    uint64_t timeout_ms;
    brokk_status st;
    size_t len;
    char buf[32];
    atomic_uint started;
} later_take;

static void *take_blocking(void *arg) {
    later_take *t = arg;
    atomic_store(&t->started, 1);
    t->st = brokk_broker_take(t->b, "tw", 2, NULL, 0, t->timeout_ms, t->buf, sizeof t->buf, &t->len);
    return NULL;
}

/* A take waits for a publish; once closed, a blocked take returns CLOSED. */
static void take_waits_for_a_publish_and_wakes_on_close(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_EQ(TAKE(b, "tw", NULL, 0, NULL, 0), 0);
    later_take t;
    memset(&t, 0, sizeof t);
    t.b = b;
    t.timeout_ms = wait_ms();
    t.st = BROKK_STATUS_PANIC;
    t.len = LEN_SENTINEL;
    atomic_init(&t.started, 0);
    pthread_t th;
    pthread_create(&th, NULL, take_blocking, &t);
    while (!atomic_load(&t.started)) sleep_ms(1);
    sleep_ms(20);
    CHECK_OK(publish_str(b, "tw", "\"arrived\""));
    pthread_join(th, NULL);
    CHECK_EQ(t.st, BROKK_STATUS_OK);
    if (CHECK_EQ(t.len, 9)) CHECK_STREQ(t.buf, "\"arrived\"");
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 1);

    /* Blocked forever on an empty queue: the close wakes it with CLOSED, length untouched. */
    memset(&t, 0, sizeof t);
    t.b = b;
    t.timeout_ms = BROKK_WAIT_FOREVER;
    t.st = BROKK_STATUS_PANIC;
    t.len = LEN_SENTINEL;
    atomic_init(&t.started, 0);
    pthread_create(&th, NULL, take_blocking, &t);
    while (!atomic_load(&t.started)) sleep_ms(1);
    sleep_ms(20); /* most likely blocked by now; CLOSED is right either way */
    CHECK_OK(brokk_broker_close(b, wait_ms(), false, NULL));
    pthread_join(th, NULL);
    CHECK_EQ(t.st, BROKK_STATUS_CLOSED);
    CHECK_EQ(t.len, LEN_SENTINEL);
    brokk_broker_free(b);
}

static void take_after_close_returns_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        CHECK_EQ(TAKE(b, "gone", NULL, 0, NULL, 0), 0);
        /* Forced: a queued message is left behind, and take still refuses. (A graceful close
         * would wait for it to be consumed.) */
        if (force) CHECK_OK(publish_str(b, "gone", "1"));
        CHECK_OK(brokk_broker_close(b, force ? 0 : wait_ms(), force, NULL));
        char buf[16];
        size_t len = LEN_SENTINEL;
        CHECK_STATUS(brokk_broker_take(b, "gone", 4, NULL, 0, 0, buf, sizeof buf, &len),
                     BROKK_STATUS_CLOSED);
        CHECK_STATUS(brokk_broker_take(b, "gone", 4, "g", 1, wait_ms(), buf, sizeof buf, &len),
                     BROKK_STATUS_CLOSED);
        CHECK_STATUS(brokk_broker_take(b, "gone", 4, NULL, 0, 0, NULL, 0, &len),
                     BROKK_STATUS_CLOSED);
        CHECK_EQ(len, LEN_SENTINEL);
        brokk_broker_free(b);
    }
}

/* ---- take_with: brokk_broker_take with its arguments in a reusable request ------------------ */

/* A request for topic/group (NULL group: the default) into buf[0..cap], no wait, payload_len
 * set to LEN_SENTINEL. */
static brokk_take_request take_request(const char *topic, const char *group, char *buf, size_t cap) {
    brokk_take_request r;
    memset(&r, 0, sizeof r);
    r.topic = topic;
    r.topic_len = topic ? strlen(topic) : 0;
    r.group = group;
    r.group_len = group ? strlen(group) : 0;
    r.timeout_ms = 0;
    r.payload_out = buf;
    r.payload_cap = cap;
    r.payload_len = LEN_SENTINEL;
    return r;
}

/* brokk_broker_take_with once, checking OK and that only payload_len changed in the request;
 * returns request->payload_len (0: nothing came), or LEN_SENTINEL if the call failed or left
 * it unwritten. */
static size_t take_with_at(const brokk_broker *b, brokk_take_request *r, int line) {
    r->payload_len = LEN_SENTINEL;
    brokk_take_request before = *r;
    brokk_status st = brokk_broker_take_with(b, r);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "take_with(%.*s, %.*s, cap %zu) returned %s: %s",
                    (int)r->topic_len, r->topic ? r->topic : "", (int)r->group_len,
                    r->group ? r->group : "NULL", r->payload_cap, brokk_status_str(st),
                    brokk_last_error());
        return LEN_SENTINEL;
    }
    if (r->payload_len == LEN_SENTINEL)
        check_fail_(__FILE__, line, "take_with returned OK without writing payload_len");
    if (r->topic != before.topic || r->topic_len != before.topic_len || r->group != before.group ||
        r->group_len != before.group_len || r->timeout_ms != before.timeout_ms ||
        r->payload_out != before.payload_out || r->payload_cap != before.payload_cap)
        check_fail_(__FILE__, line, "take_with changed an input field of the request");
    return r->payload_len;
}
#define TAKE_WITH(b, r) take_with_at((b), (r), __LINE__)

/* Takes through `r` (whose buffer must have room for `want` and a NUL) and checks the payload
 * is `want` ("": nothing came) and NUL-terminated. */
static bool take_with_is_at(const brokk_broker *b, brokk_take_request *r, const char *want,
                            int line) {
    if (r->payload_out) memset(r->payload_out, 'Z', r->payload_cap);
    size_t len = take_with_at(b, r, line);
    if (len == LEN_SENTINEL) return false;
    size_t n = strlen(want);
    if (len != n || (n && memcmp(r->payload_out, want, n) != 0)) {
        check_fail_(__FILE__, line, "take_with got \"%.*s\" (%zu bytes), want \"%s\"",
                    (int)(len <= r->payload_cap ? len : 0), r->payload_out ? r->payload_out : "",
                    len, want);
        return false;
    }
    if (n && n < r->payload_cap && r->payload_out[n] != '\0') {
        check_fail_(__FILE__, line, "take_with left no NUL after a %zu-byte payload with room", n);
        return false;
    }
    return true;
}
#define TAKE_WITH_IS(b, r, want) take_with_is_at((b), (r), (want), __LINE__)

static void take_with_on_an_empty_queue_returns_len_0(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char buf[16];
    brokk_take_request r = take_request("empty", NULL, buf, sizeof buf);
    CHECK_EQ(TAKE_WITH(b, &r), 0);
    CHECK_EQ(TAKE_WITH(b, &r), 0); /* the same request again */
    brokk_take_request g = take_request("empty", "g", buf, sizeof buf);
    CHECK_EQ(TAKE_WITH(b, &g), 0);
    r.timeout_ms = 20; /* waits 20 ms, then len 0 */
    CHECK_EQ(TAKE_WITH(b, &r), 0);
    brokk_take_request none = take_request("empty", NULL, NULL, 0); /* no buffer at all: fine */
    CHECK_EQ(TAKE_WITH(b, &none), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(s.processed, 0);
    CHECK_EQ(s.in_flight, 0);
    brokk_broker_free(b);
}

/* One request per group, each reused for every take: priority order, payload_len set each
 * time, a NUL after each payload; each take acks. A named group gets its own copy. */
static void take_with_reuses_one_request_in_priority_order(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    char buf[64], obuf[64];
    brokk_take_request r = take_request("jobs", NULL, buf, sizeof buf);
    brokk_take_request other = take_request("jobs", "other", obuf, sizeof obuf);
    /* Both groups first, so each gets a copy of what comes next. */
    CHECK_EQ(TAKE_WITH(b, &r), 0);
    CHECK_EQ(TAKE_WITH(b, &other), 0);
    static const char *const payloads[] = {"1", "22", "3", "4", "5", "666", "7",
                                           "{\"k\":[1,2,3]}"};
    static const int32_t prio[] = {0, 5, 0, -2, 5, 9, 0, 5};
    enum { N = 8 };
    for (int i = 0; i < N; i++) CHECK_OK(publish_prio(b, "jobs", payloads[i], prio[i]));
    CHECK_EQ(count_of(b, "jobs"), 2 * N);
    static const char *const want[N] = {"666", "22", "5", "{\"k\":[1,2,3]}", "1", "3", "7", "4"};
    for (int i = 0; i < N; i++) {
        if (!TAKE_WITH_IS(b, &r, want[i])) break;
        CHECK_EQ(r.payload_len, strlen(want[i]));
        CHECK_EQ(count_of(b, "jobs"), 2 * N - 1 - i); /* gone from the group at once */
        brokk_stats s = stats_of(b);
        CHECK_EQ(s.in_flight, 0);
        CHECK_EQ(s.processed, (uint64_t)i + 1);
    }
    CHECK(TAKE_WITH_IS(b, &r, "")); /* the default group is drained */
    CHECK_EQ(r.payload_len, 0);
    CHECK_EQ(count_of(b, "jobs"), N); /* "other" still has its copies */
    for (int i = 0; i < N; i++) CHECK(TAKE_WITH_IS(b, &other, want[i]));
    CHECK(TAKE_WITH_IS(b, &other, ""));
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, N);
    CHECK_EQ(s.dispatched, 2 * N);
    CHECK_EQ(s.processed, 2 * N);
    CHECK_EQ(s.failed, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(count_of(b, "jobs"), 0);
    brokk_broker_free(b);
}

/* Too little room takes nothing and reports the size in payload_len; a request with a bigger
 * buffer then takes it. Exactly the payload's size is room enough (no NUL then). */
static void take_with_buffer_too_small_leaves_the_message(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    static const char big[] = "{\"k\":\"0123456789\"}"; /* 18 bytes */
    const size_t n = sizeof big - 1;
    char small[8], exact[sizeof big - 1 + 8], roomy[64];
    brokk_take_request rs = take_request("tight", NULL, small, sizeof small);
    CHECK_EQ(TAKE_WITH(b, &rs), 0); /* the group, before publishing */
    CHECK_OK(publish_str(b, "tight", big));
    CHECK_OK(publish_str(b, "tight", "2"));
    rs.payload_len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take_with(b, &rs), BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(rs.payload_len, n);
    rs.payload_len = LEN_SENTINEL; /* reused: the same answer */
    CHECK_STATUS(brokk_broker_take_with(b, &rs), BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(rs.payload_len, n);
    brokk_take_request query = take_request("tight", NULL, NULL, 0); /* a size query */
    CHECK_STATUS(brokk_broker_take_with(b, &query), BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(query.payload_len, n);
    brokk_take_request one_short = take_request("tight", NULL, exact, n - 1);
    one_short.timeout_ms = wait_ms(); /* a message is there: no wait */
    CHECK_STATUS(brokk_broker_take_with(b, &one_short), BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(one_short.payload_len, n);
    CHECK_EQ(count_of(b, "tight"), 2); /* nothing was taken */
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dispatched, 0);
    CHECK_EQ(s.processed, 0);
    CHECK_EQ(s.in_flight, 0);
    /* Exactly n bytes: taken, no NUL written past them. */
    brokk_take_request rx = take_request("tight", NULL, exact, n);
    memset(exact, 'Z', sizeof exact);
    CHECK_EQ(TAKE_WITH(b, &rx), n);
    CHECK_MEM(exact, n, big, n);
    CHECK_EQ(exact[n], 'Z');
    CHECK_EQ(count_of(b, "tight"), 1);
    /* "2" fits the small request now. */
    CHECK(TAKE_WITH_IS(b, &rs, "2"));
    CHECK_EQ(rs.payload_len, 1);
    brokk_take_request rr = take_request("tight", NULL, roomy, sizeof roomy);
    CHECK(TAKE_WITH_IS(b, &rr, ""));
    /* Again with a payload bigger than the small buffer, taken through a bigger request. */
    CHECK_OK(publish_str(b, "tight", big));
    rs.payload_len = LEN_SENTINEL;
    CHECK_STATUS(brokk_broker_take_with(b, &rs), BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(rs.payload_len, n);
    CHECK(TAKE_WITH_IS(b, &rr, big));
    CHECK_EQ(rr.payload_len, n);
    JOIN_OK(b);
    s = stats_of(b);
    CHECK_EQ(s.dispatched, 3);
    CHECK_EQ(s.processed, 3);
    CHECK_EQ(count_of(b, "tight"), 0);
    brokk_broker_free(b);
}

/* The group field: NULL is "default" (shared with a fetch naming none or "default"); a named
 * group gets its own copy of everything. */
static void take_with_group_field(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char buf[16], gbuf[16], dbuf[16];
    brokk_take_request r = take_request("dg", NULL, buf, sizeof buf);
    brokk_take_request named = take_request("dg", "g", gbuf, sizeof gbuf);
    brokk_take_request dflt = take_request("dg", "default", dbuf, sizeof dbuf);
    CHECK_EQ(TAKE_WITH(b, &r), 0);
    CHECK_EQ(TAKE_WITH(b, &named), 0);
    CHECK_OK(publish_str(b, "dg", "1"));
    CHECK_OK(publish_str(b, "dg", "2"));
    CHECK_OK(publish_str(b, "dg", "3"));
    CHECK_EQ(count_of(b, "dg"), 6); /* two groups: "default" and "g" */
    CHECK(TAKE_WITH_IS(b, &r, "1"));
    brokk_delivery *d = FETCH(b, "dg", NULL, 0);
    if (CHECK(d != NULL)) {
        CHECK(payload_is(d, "2"));
        CHECK_STR(brokk_message_group(msg_of(d)), "default");
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    CHECK(TAKE_WITH_IS(b, &dflt, "3")); /* "default" named: the same queue as NULL */
    CHECK(TAKE_WITH_IS(b, &r, ""));
    CHECK(TAKE_WITH_IS(b, &dflt, ""));
    CHECK_EQ(count_of(b, "dg"), 3);
    CHECK(TAKE_WITH_IS(b, &named, "1"));
    CHECK(TAKE_WITH_IS(b, &named, "2"));
    CHECK(TAKE_WITH_IS(b, &named, "3"));
    CHECK(TAKE_WITH_IS(b, &named, ""));
    /* group_len counts, not a NUL: "gx" with length 1 is group "g". */
    CHECK_OK(publish_str(b, "dg", "4"));
    brokk_take_request prefix = take_request("dg", "gx", gbuf, sizeof gbuf);
    prefix.group_len = 1;
    CHECK(TAKE_WITH_IS(b, &prefix, "4"));
    CHECK(TAKE_WITH_IS(b, &r, "4"));
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).processed, 8);
    brokk_broker_free(b);
}

/* Every failure leaves payload_len untouched (and takes nothing); a NULL request or broker is
 * NULL_ARGUMENT. */
static void take_with_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char buf[16];
    brokk_take_request ok = take_request("t", NULL, buf, sizeof buf);
    CHECK_EQ(TAKE_WITH(b, &ok), 0); /* group "default" on t */
    CHECK_OK(publish_str(b, "t", "1"));
    char long_name[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_name, 'a', sizeof long_name);
    CHECK_STATUS(brokk_broker_take_with(b, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_take_with(NULL, NULL), BROKK_STATUS_NULL_ARGUMENT);
    struct {
        const char *topic;
        size_t topic_len;
        const char *group;
        size_t group_len;
        char *out;
        size_t cap;
        uint64_t timeout_ms;
        bool null_broker;
        brokk_status want;
    } bad[] = {
        {"t", 1, NULL, 0, buf, sizeof buf, 0, true, BROKK_STATUS_NULL_ARGUMENT},
        {NULL, 1, NULL, 0, buf, sizeof buf, 0, false, BROKK_STATUS_NULL_ARGUMENT},
        {"t", 1, NULL, 0, NULL, sizeof buf, 0, false, BROKK_STATUS_NULL_ARGUMENT},
        {"t", 1, NULL, 0, NULL, 1, 0, false, BROKK_STATUS_NULL_ARGUMENT},
        {"", 0, NULL, 0, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_TOPIC},
        {"a b", 3, NULL, 0, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_TOPIC},
        {"a/b", 3, NULL, 0, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_TOPIC},
        {long_name, sizeof long_name, NULL, 0, buf, sizeof buf, 0, false,
         BROKK_STATUS_INVALID_TOPIC},
        {"t\xff", 2, NULL, 0, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_UTF8},
        {"t", 1, "", 0, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_GROUP},
        {"t", 1, "a b", 3, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_GROUP},
        {"t", 1, "a/b", 3, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_GROUP},
        {"t", 1, long_name, sizeof long_name, buf, sizeof buf, 0, false,
         BROKK_STATUS_INVALID_GROUP},
        {"t", 1, "g\xc3", 2, buf, sizeof buf, 0, false, BROKK_STATUS_INVALID_UTF8},
        /* A bad name never waits, even with a timeout. */
        {"t", 1, "a b", 3, buf, sizeof buf, BROKK_WAIT_FOREVER, false, BROKK_STATUS_INVALID_GROUP},
        {"a b", 3, NULL, 0, buf, sizeof buf, BROKK_WAIT_FOREVER, false, BROKK_STATUS_INVALID_TOPIC},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brokk_take_request r;
        memset(&r, 0, sizeof r);
        r.topic = bad[i].topic;
        r.topic_len = bad[i].topic_len;
        r.group = bad[i].group;
        r.group_len = bad[i].group_len;
        r.timeout_ms = bad[i].timeout_ms;
        r.payload_out = bad[i].out;
        r.payload_cap = bad[i].cap;
        r.payload_len = LEN_SENTINEL;
        if (!CHECK_STATUS(brokk_broker_take_with(bad[i].null_broker ? NULL : b, &r), bad[i].want))
            FAILF("case %zu", i);
        if (r.payload_len != LEN_SENTINEL) FAILF("case %zu wrote payload_len %zu", i, r.payload_len);
        /* brokk_broker_take says the same about the same arguments. */
        size_t len = LEN_SENTINEL;
        if (!CHECK_STATUS(brokk_broker_take(bad[i].null_broker ? NULL : b, bad[i].topic,
                                            bad[i].topic_len, bad[i].group, bad[i].group_len,
                                            bad[i].timeout_ms, bad[i].out, bad[i].cap, &len),
                          bad[i].want))
            FAILF("case %zu (brokk_broker_take)", i);
        CHECK_EQ(len, LEN_SENTINEL);
    }
    CHECK_EQ(count_of(b, "t"), 1); /* nothing was taken */
    CHECK_EQ(stats_of(b).dispatched, 0);
    CHECK(TAKE_WITH_IS(b, &ok, "1"));
    brokk_broker_free(b);
}

static void take_with_after_close_returns_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        char buf[16];
        brokk_take_request r = take_request("gone", NULL, buf, sizeof buf);
        CHECK_EQ(TAKE_WITH(b, &r), 0);
        if (force) CHECK_OK(publish_str(b, "gone", "1"));
        CHECK_OK(brokk_broker_close(b, force ? 0 : wait_ms(), force, NULL));
        r.payload_len = LEN_SENTINEL;
        CHECK_STATUS(brokk_broker_take_with(b, &r), BROKK_STATUS_CLOSED);
        CHECK_EQ(r.payload_len, LEN_SENTINEL);
        brokk_take_request g = take_request("gone", "g", buf, sizeof buf);
        g.timeout_ms = wait_ms();
        CHECK_STATUS(brokk_broker_take_with(b, &g), BROKK_STATUS_CLOSED);
        CHECK_EQ(g.payload_len, LEN_SENTINEL);
        brokk_take_request q = take_request("gone", NULL, NULL, 0);
        CHECK_STATUS(brokk_broker_take_with(b, &q), BROKK_STATUS_CLOSED);
        CHECK_EQ(q.payload_len, LEN_SENTINEL);
        brokk_broker_free(b);
    }
}

typedef struct later_take_with {
    const brokk_broker *b;
    brokk_take_request r;
    brokk_status st;
    char buf[32];
    atomic_uint started;
} later_take_with;

static void *take_with_blocking(void *arg) {
    later_take_with *t = arg;
    atomic_store(&t->started, 1);
    t->st = brokk_broker_take_with(t->b, &t->r);
    return NULL;
}

/* A take_with waits for a publish; once closed, a blocked one returns CLOSED. */
static void take_with_waits_for_a_publish_and_wakes_on_close(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_EQ(TAKE(b, "tw", NULL, 0, NULL, 0), 0);
    later_take_with t;
    for (int round = 0; round < 2; round++) {
        memset(&t, 0, sizeof t);
        t.b = b;
        t.r = take_request("tw", NULL, t.buf, sizeof t.buf);
        t.r.timeout_ms = round == 0 ? wait_ms() : BROKK_WAIT_FOREVER;
        t.st = BROKK_STATUS_PANIC;
        atomic_init(&t.started, 0);
        pthread_t th;
        pthread_create(&th, NULL, take_with_blocking, &t);
        while (!atomic_load(&t.started)) sleep_ms(1);
        sleep_ms(20);
        if (round == 0) {
            CHECK_OK(publish_str(b, "tw", "\"arrived\""));
            pthread_join(th, NULL);
            CHECK_EQ(t.st, BROKK_STATUS_OK);
            if (CHECK_EQ(t.r.payload_len, 9)) CHECK_STREQ(t.buf, "\"arrived\"");
            JOIN_OK(b);
            CHECK_EQ(stats_of(b).processed, 1);
        } else {
            CHECK_OK(brokk_broker_close(b, wait_ms(), false, NULL));
            pthread_join(th, NULL);
            CHECK_EQ(t.st, BROKK_STATUS_CLOSED);
            CHECK_EQ(t.r.payload_len, LEN_SENTINEL);
        }
    }
    brokk_broker_free(b);
}

/* The same sequence of calls through brokk_broker_take on one broker and brokk_broker_take_with
 * on another (one request per topic/group/buffer, reused) gives the same statuses, lengths and
 * bytes, and leaves both brokers in the same state. */
static void take_with_behaves_like_take(void) {
    brokk_broker *bt = new_broker(1), *bw = new_broker(1);
    if (!bt || !bw) {
        brokk_broker_free(bt);
        brokk_broker_free(bw);
        return;
    }
    static const char big[] = "{\"big\":\"0123456789abcdef\"}"; /* 26 bytes */
    enum { CAP_NONE, CAP_SMALL, CAP_EXACT, CAP_ROOMY, N_CAPS };
    const size_t caps[N_CAPS] = {0, 4, sizeof big - 1, 64};
    typedef struct op {
        const char *topic; /* NULL: publish instead (payload in group, priority in cap) */
        const char *group;
        int cap;
    } op;
    /* Publishes are (NULL, payload, priority). */
    static const op ops[] = {
        {"cmp", NULL, CAP_ROOMY},  {"cmp", "g", CAP_ROOMY},   {"cmp", NULL, CAP_NONE},
        {NULL, "1", 0},            {NULL, "22", 3},           {NULL, big, 1},
        {NULL, "4444", 3},         {NULL, "\"s\"", -1},       {"cmp", NULL, CAP_NONE},
        {"cmp", NULL, CAP_SMALL},  {"cmp", NULL, CAP_ROOMY},  {"cmp", NULL, CAP_SMALL},
        {"cmp", NULL, CAP_SMALL},  {"cmp", "g", CAP_EXACT},   {"cmp", NULL, CAP_EXACT},
        {"cmp", "g", CAP_SMALL},   {"cmp", "g", CAP_SMALL},   {"cmp", "g", CAP_SMALL},
        {"cmp", "g", CAP_ROOMY},   {"cmp", NULL, CAP_ROOMY},  {"cmp", NULL, CAP_NONE},
        {"cmp", "g", CAP_ROOMY},   {"cmp", NULL, CAP_ROOMY},  {"cmp", NULL, CAP_ROOMY},
        {"cmp", "g", CAP_ROOMY},   {"cmp", "a b", CAP_ROOMY}, {"a b", NULL, CAP_ROOMY},
        {"other", "h", CAP_ROOMY}, {NULL, big, 0},            {"cmp", NULL, CAP_SMALL},
        {"cmp", NULL, CAP_ROOMY},  {"cmp", NULL, CAP_ROOMY},  {"cmp", "g", CAP_EXACT},
        {"cmp", "g", CAP_EXACT},
    };
    /* take_with's buffers and requests: one per (topic, group, cap), kept across the ops. */
    static char wbufs[4][N_CAPS][64];
    brokk_take_request reqs[4][N_CAPS];
    static const char *const topics[4] = {"cmp", "cmp", "a b", "other"};
    static const char *const groups[4] = {NULL, "g", NULL, "h"};
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < N_CAPS; c++)
            reqs[k][c] = take_request(topics[k], groups[k], c == CAP_NONE ? NULL : wbufs[k][c],
                                      caps[c]);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const op *o = &ops[i];
        if (!o->topic) {
            CHECK_OK(publish_prio(bt, "cmp", o->group, o->cap));
            CHECK_OK(publish_prio(bw, "cmp", o->group, o->cap));
            continue;
        }
        int k = strcmp(o->topic, "a b") == 0 ? 2
                : strcmp(o->topic, "other") == 0 ? 3
                : o->group == NULL            ? 0
                : strcmp(o->group, "g") == 0   ? 1
                                               : -1;
        brokk_take_request *r;
        brokk_take_request bad;
        if (k >= 0) {
            r = &reqs[k][o->cap];
        } else { /* the bad group: a request of its own */
            bad = take_request(o->topic, o->group, wbufs[0][o->cap], caps[o->cap]);
            r = &bad;
        }
        char tbuf[64];
        memset(tbuf, 'Z', sizeof tbuf);
        if (r->payload_out) memset(r->payload_out, 'Z', 64);
        size_t tlen = LEN_SENTINEL;
        r->payload_len = LEN_SENTINEL;
        brokk_status st = brokk_broker_take(bt, o->topic, strlen(o->topic), o->group,
                                            o->group ? strlen(o->group) : 0, 0,
                                            o->cap == CAP_NONE ? NULL : tbuf, caps[o->cap], &tlen);
        brokk_status sw = brokk_broker_take_with(bw, r);
        if (st != sw)
            FAILF("op %zu: take returned %s, take_with %s", i, brokk_status_str(st),
                  brokk_status_str(sw));
        if (tlen != r->payload_len)
            FAILF("op %zu: take wrote length %zu, take_with %zu", i, tlen, r->payload_len);
        if (o->cap != CAP_NONE && memcmp(tbuf, r->payload_out, 64) != 0)
            FAILF("op %zu: the buffers differ: \"%.20s\" vs \"%.20s\"", i, tbuf, r->payload_out);
    }
    /* Both brokers end in the same state: everything taken, the same counts. */
    brokk_stats st = stats_of(bt), sw = stats_of(bw);
    CHECK_EQ(st.published, sw.published);
    CHECK_EQ(st.dispatched, sw.dispatched);
    CHECK_EQ(st.processed, sw.processed);
    CHECK_EQ(st.in_flight, 0);
    CHECK_EQ(sw.in_flight, 0);
    CHECK_EQ(st.processed, 12); /* six messages, two groups */
    CHECK_EQ(count_of(bt, "cmp"), 0);
    CHECK_EQ(count_of(bw, "cmp"), 0);
    brokk_broker_free(bt);
    brokk_broker_free(bw);
}

/* ---- priorities ------------------------------------------------------------------------------ */

static void fetch_takes_highest_priority_first(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    static const int32_t prio[] = {0, 5, -3, 5, 10, 0, INT32_MIN, INT32_MAX};
    static const char *const want[] = {"7", "4", "1", "3", "0", "5", "2", "6"};
    for (int i = 0; i < 8; i++) {
        char p[16];
        snprintf(p, sizeof p, "%d", i);
        CHECK_OK(publish_prio(b, "prio", p, prio[i]));
    }
    for (int i = 0; i < 8; i++) {
        brokk_delivery *d = FETCH(b, "prio", NULL, 0);
        if (!CHECK(d != NULL)) break;
        char got[8];
        view_cstr(brokk_message_payload(msg_of(d)), got, sizeof got);
        if (strcmp(got, want[i]) != 0)
            FAILF("fetch #%d got message %s, want %s (priority, then FIFO)", i, got, want[i]);
        CHECK_EQ((int64_t)brokk_message_priority(msg_of(d)), (int64_t)prio[atoi(got)]);
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    brokk_broker_free(b);
}

/* ---- groups ------------------------------------------------------------------------------------ */

typedef struct tally {
    unsigned n;
    atomic_uint *count;
    atomic_uint wrong_group;
    const char *group; /* what brokk_message_group must say ("" for ungrouped) */
} tally;

static void tally_init(tally *t, unsigned n, const char *group) {
    t->n = n;
    t->count = calloc(n, sizeof *t->count);
    for (unsigned i = 0; i < n; i++) atomic_init(&t->count[i], 0);
    atomic_init(&t->wrong_group, 0);
    t->group = group;
}

static void tally_add(tally *t, const brokk_message *m) {
    char buf[16];
    unsigned long i = strtoul(view_cstr(brokk_message_payload(m), buf, sizeof buf), NULL, 10);
    if (i < t->n) atomic_fetch_add(&t->count[i], 1);
    if (!view_eq(brokk_message_group(m), t->group)) atomic_fetch_add(&t->wrong_group, 1);
}

static brokk_verdict tally_handler(void *ud, const brokk_message *m) {
    tally_add(ud, m);
    return BROKK_VERDICT_ACK;
}

static void check_each_once(tally *t, const char *who) {
    unsigned bad = 0;
    for (unsigned i = 0; i < t->n; i++)
        if (atomic_load(&t->count[i]) != 1) bad++;
    if (bad) FAILF("%s: %u of %u messages not consumed exactly once", who, bad, t->n);
    CHECK_EQ(atomic_load(&t->wrong_group), 0);
}

/* A subscription and a fetcher in one group share its messages: each goes to one of them. */
static void subscription_and_fetcher_share_a_group(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    unsigned n = scaled_count(200);
    tally t;
    tally_init(&t, n, "mix");
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    o.group = "mix";
    o.group_len = 3;
    uint64_t sid;
    CHECK_OK(brokk_broker_subscribe(b, "shared", 6, tally_handler, &t, NULL, &o, &sid));
    for (unsigned i = 0; i < n; i++) {
        char p[16];
        snprintf(p, sizeof p, "%u", i);
        CHECK_OK(publish_str(b, "shared", p));
    }
    unsigned fetched = 0;
    uint64_t end = mono_ms() + wait_ms();
    for (;;) {
        brokk_delivery *d = FETCH(b, "shared", "mix", 0);
        if (d) {
            tally_add(&t, msg_of(d));
            CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
            brokk_delivery_free(d);
            fetched++;
            continue;
        }
        if (brokk_broker_join(b, 0, NULL) == BROKK_STATUS_OK || mono_ms() > end) break;
        sleep_ms(1);
    }
    JOIN_OK(b);
    check_each_once(&t, "group \"mix\" (a subscription and a fetcher)");
    CHECK_EQ(stats_of(b).dispatched, n);
    brokk_broker_free(b);
    free(t.count);
}

/* ---- retention ----------------------------------------------------------------------------- */

static void retention_reject_fails_with_full(void) {
    brokk_broker *b = new_broker_retention(1, BROKK_RETENTION_REJECT, 3);
    if (!b) return;
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "full", "1"));
    char id[BROKK_ID_BUFFER_SIZE] = "untouched";
    CHECK_STATUS(brokk_broker_publish(b, "full", 4, "2", 1, NULL, id, sizeof id),
                 BROKK_STATUS_FULL);
    CHECK_STREQ(id, "untouched");
    brokk_batch_message m;
    memset(&m, 0, sizeof m);
    m.payload = "3";
    m.payload_len = 1;
    CHECK_STATUS(brokk_broker_publish_batch(b, "full", 4, &m, 1, NULL, 0), BROKK_STATUS_FULL);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 3); /* nothing was published */
    CHECK_EQ(count_of(b, "full"), 3);
    /* Other topics have their own limit. */
    CHECK_OK(publish_str(b, "other", "1"));
    /* Once a group exists the limit no longer applies: it only bounds retention. */
    brokk_delivery *d = FETCH(b, "full", NULL, 0); /* group "default" takes the three */
    if (CHECK(d != NULL)) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    for (int i = 0; i < 10; i++) CHECK_OK(publish_str(b, "full", "4"));
    CHECK_EQ(count_of(b, "full"), 12);
    brokk_broker_free(b);
}

static void retention_drop_oldest_and_newest(void) {
    static const brokk_retention_policy policies[] = {BROKK_RETENTION_DROP_OLDEST,
                                                      BROKK_RETENTION_DROP_NEWEST};
    static const char *const kept[2][3] = {{"2", "3", "4"}, {"0", "1", "2"}};
    for (int k = 0; k < 2; k++) {
        brokk_broker *b = new_broker_retention(1, policies[k], 3);
        if (!b) return;
        for (int i = 0; i < 5; i++) {
            char p[16];
            snprintf(p, sizeof p, "%d", i);
            CHECK_OK(publish_str(b, "drop", p)); /* never FULL with a dropping policy */
        }
        CHECK_EQ(stats_of(b).published, 5);
        CHECK_EQ(count_of(b, "drop"), 3);
        char buf[16];
        for (int i = 0; i < 3; i++) CHECK_STREQ(take_one(b, "drop", NULL, buf, sizeof buf), kept[k][i]);
        CHECK_STREQ(take_one(b, "drop", NULL, buf, sizeof buf), "");
        brokk_broker_free(b);
    }
}

static void retention_off_counts_unrouted(void) {
    brokk_broker *b = new_broker_retention(1, BROKK_RETENTION_OFF, 0);
    if (!b) return;
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "off", "1"));
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.unrouted, 3);
    CHECK_EQ(count_of(b, "off"), 0);
    CHECK(FETCH(b, "off", NULL, 0) == NULL);
    brokk_broker_free(b);
}

static void retention_limit_applies_to_a_batch_as_a_whole(void) {
    brokk_broker *b = new_broker_retention(1, BROKK_RETENTION_REJECT, 3);
    if (!b) return;
    CHECK_OK(publish_str(b, "rb", "0"));
    CHECK_OK(publish_str(b, "rb", "1"));
    brokk_batch_message m[2];
    memset(m, 0, sizeof m);
    m[0].payload = "2";
    m[0].payload_len = 1;
    m[1].payload = "3";
    m[1].payload_len = 1;
    CHECK_STATUS(brokk_broker_publish_batch(b, "rb", 2, m, 2, NULL, 0), BROKK_STATUS_FULL);
    CHECK_EQ(count_of(b, "rb"), 2); /* all or nothing: neither was kept */
    CHECK_EQ(stats_of(b).published, 2);
    CHECK_OK(brokk_broker_publish_batch(b, "rb", 2, m, 1, NULL, 0));
    CHECK_EQ(count_of(b, "rb"), 3);
    brokk_broker_free(b);
}

/* ---- count and purge ---------------------------------------------------------------------------- */

static void count_and_purge(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "c1", "1")); /* retained */
    CHECK_OK(publish_str(b, "c1", "2"));
    CHECK(FETCH(b, "c2", "g", 0) == NULL); /* group g on c2 */
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "c2", "3"));
    CHECK(FETCH(b, "c3", "x", 0) == NULL);
    CHECK(FETCH(b, "c3", "y", 0) == NULL);
    CHECK_OK(publish_str(b, "c3", "4")); /* one queued delivery in each of x and y */
    CHECK_EQ(count_of(b, NULL), 7);
    brokk_str two[2] = {{"c1", 2}, {"c2", 2}};
    uint64_t n = 0;
    CHECK_OK(brokk_broker_count(b, two, 2, &n));
    CHECK_EQ(n, 5);
    CHECK_EQ(count_of(b, "c3"), 2);
    uint64_t topics_before = stats_of(b).topics;
    CHECK_EQ(count_of(b, "nope"), 0); /* unknown: 0, and not created */
    CHECK_EQ(stats_of(b).topics, topics_before);
    n = 99;
    CHECK_OK(brokk_broker_count(b, two, 0, &n)); /* an empty list counts nothing */
    CHECK_EQ(n, 0);
    /* One of c2's deliveries in flight: neither counted nor purged. */
    brokk_delivery *d = FETCH(b, "c2", "g", 0);
    CHECK(d != NULL);
    CHECK_EQ(count_of(b, "c2"), 2);
    uint64_t purged = 0;
    brokk_str c2 = {"c2", 2};
    CHECK_OK(brokk_broker_purge(b, &c2, 1, &purged));
    CHECK_EQ(purged, 2);
    CHECK_EQ(count_of(b, NULL), 4);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dropped, 2); /* purged deliveries are dropped */
    CHECK_EQ(s.in_flight, 1);
    if (d) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    CHECK_OK(brokk_broker_purge(b, NULL, 0, NULL)); /* everything; purged_out may be NULL */
    CHECK_EQ(count_of(b, NULL), 0);
    purged = 77;
    CHECK_OK(brokk_broker_purge(b, NULL, 0, &purged));
    CHECK_EQ(purged, 0);
    JOIN_OK(b);
    CHECK(FETCH(b, "c3", "x", 0) == NULL);
    brokk_broker_free(b);
}

static void count_and_purge_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "kept", "1"));
    uint64_t n = 0xC0C0ull;
    brokk_str bad_name[1] = {{"a b", 3}};
    brokk_str empty_name[1] = {{"", 0}};
    brokk_str bad_utf8[1] = {{"k\xff", 2}};
    brokk_str mixed[2] = {{"kept", 4}, {"a/b", 3}};
    CHECK_STATUS(brokk_broker_count(NULL, NULL, 0, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count(b, NULL, 0, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count(b, NULL, 2, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count(b, bad_name, 1, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_count(b, empty_name, 1, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_count(b, bad_utf8, 1, &n), BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_count(b, mixed, 2, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_EQ(n, 0xC0C0ull);
    CHECK_STATUS(brokk_broker_purge(NULL, NULL, 0, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_purge(b, NULL, 2, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_purge(b, bad_name, 1, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_purge(b, bad_utf8, 1, &n), BROKK_STATUS_INVALID_UTF8);
    /* A bad name anywhere in the list purges nothing, not even the good names before it. */
    CHECK_STATUS(brokk_broker_purge(b, mixed, 2, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_EQ(n, 0xC0C0ull);
    CHECK_EQ(count_of(b, "kept"), 1);
    brokk_str null_ptr[1] = {{NULL, 0}};
    brokk_status st = brokk_broker_count(b, null_ptr, 1, &n);
    CHECK(st == BROKK_STATUS_NULL_ARGUMENT || st == BROKK_STATUS_INVALID_TOPIC);
    brokk_broker_free(b);
}

/* ---- count and purge of one consumer group ------------------------------------------------------ */

static uint64_t count_group_of(const brokk_broker *b, const char *topic, const char *group) {
    uint64_t n = 0xC0C0ull;
    CHECK_OK(brokk_broker_count_group(b, topic, strlen(topic), group, strlen(group), &n));
    return n;
}

static void count_and_purge_one_group(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK_OK(publish_str(b, "held", "1")); /* retained: no group's */
    CHECK(FETCH(b, "pg", "a", 0) == NULL);
    CHECK(FETCH(b, "pg", "b", 0) == NULL);
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "pg", "2"));
    brokk_delivery *d = FETCH(b, "pg", "a", 0); /* in flight: neither counted nor purged */
    CHECK(d != NULL);
    CHECK_EQ(count_group_of(b, "pg", "a"), 2);
    CHECK_EQ(count_group_of(b, "pg", "b"), 3);
    CHECK_EQ(count_group_of(b, "pg", "nope"), 0); /* no such group: 0, and not created */
    CHECK_EQ(count_group_of(b, "unknown", "a"), 0);
    uint64_t topics_before = stats_of(b).topics;
    uint64_t purged = 77;
    CHECK_OK(brokk_broker_purge_group(b, "pg", 2, "nope", 4, &purged));
    CHECK_EQ(purged, 0);
    CHECK_EQ(stats_of(b).topics, topics_before);
    CHECK_OK(brokk_broker_purge_group(b, "pg", 2, "a", 1, &purged));
    CHECK_EQ(purged, 2);
    CHECK_EQ(count_group_of(b, "pg", "a"), 0);
    CHECK_EQ(count_group_of(b, "pg", "b"), 3); /* the other group keeps its own */
    CHECK_EQ(count_of(b, "held"), 1);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.dropped, 2);
    CHECK_EQ(s.in_flight, 1);
    if (d) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    CHECK_OK(brokk_broker_purge_group(b, "pg", 2, "b", 1, NULL)); /* purged_out may be NULL */
    CHECK_EQ(count_of(b, "pg"), 0);
    JOIN_OK(b);
    brokk_broker_free(b);
}

static void count_and_purge_one_group_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    CHECK(FETCH(b, "kept", "g", 0) == NULL);
    CHECK_OK(publish_str(b, "kept", "1"));
    uint64_t n = 0xC0C0ull;
    CHECK_STATUS(brokk_broker_count_group(NULL, "kept", 4, "g", 1, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count_group(b, "kept", 4, "g", 1, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count_group(b, NULL, 4, "g", 1, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count_group(b, "kept", 4, NULL, 1, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_count_group(b, "a b", 3, "g", 1, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_count_group(b, "kept", 4, "a/b", 3, &n), BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_count_group(b, "kept", 4, "g\xff", 2, &n), BROKK_STATUS_INVALID_UTF8);
    CHECK_EQ(n, 0xC0C0ull); /* untouched on failure */
    CHECK_STATUS(brokk_broker_purge_group(NULL, "kept", 4, "g", 1, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_purge_group(b, "kept", 4, NULL, 1, &n), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_purge_group(b, "", 0, "g", 1, &n), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_purge_group(b, "kept", 4, "", 0, &n), BROKK_STATUS_INVALID_GROUP);
    CHECK_EQ(n, 0xC0C0ull);
    CHECK_EQ(count_group_of(b, "kept", "g"), 1); /* nothing was purged */
    CHECK_OK(brokk_broker_close(b, 0, true, NULL));
    CHECK_STATUS(brokk_broker_count_group(b, "kept", 4, "g", 1, &n), BROKK_STATUS_CLOSED);
    CHECK_STATUS(brokk_broker_purge_group(b, "kept", 4, "g", 1, &n), BROKK_STATUS_CLOSED);
    brokk_broker_free(b);
}

/* ---- publish_batch ------------------------------------------------------------------------------- */

static void publish_batch_delivers_everything_in_order(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "batch", recorder_handler, &r, NULL, false, 1, &sid));
    CHECK(FETCH(b, "batch", "f", 0) == NULL); /* a second group, pulled */
    brokk_batch_message m[4];
    memset(m, 0, sizeof m);
    static const char *const payloads[4] = {"0", "{\"one\":1}", "[2]", "\"3\""};
    for (int i = 0; i < 4; i++) {
        m[i].payload = payloads[i];
        m[i].payload_len = strlen(payloads[i]);
    }
    m[0].options.id = "given-0";
    m[0].options.id_len = 7;
    m[1].options.metadata = "{\"m\":1}";
    m[1].options.metadata_len = 7;
    char ids[4 * BROKK_ID_BUFFER_SIZE];
    memset(ids, 'Z', sizeof ids);
    CHECK_OK(brokk_broker_publish_batch(b, "batch", 5, m, 4, ids, sizeof ids));
    CHECK_STREQ(ids, "given-0");
    for (int i = 1; i < 4; i++) {
        const char *id = ids + i * BROKK_ID_BUFFER_SIZE;
        CHECK(memchr(id, '\0', BROKK_ID_BUFFER_SIZE) != NULL && strlen(id) > 0);
        for (int j = 0; j < i; j++) CHECK(strcmp(id, ids + j * BROKK_ID_BUFFER_SIZE) != 0);
    }
    char buf[32];
    for (int i = 0; i < 4; i++) CHECK_STREQ(take_one(b, "batch", "f", buf, sizeof buf), payloads[i]);
    JOIN_OK(b); /* after the pulled group is drained: its queue is outstanding work */
    if (CHECK_EQ(recorder_count(&r), 4))
        for (int i = 0; i < 4; i++) {
            CHECK_STREQ(r.recs[i].payload, payloads[i]);
            CHECK_STREQ(r.recs[i].parent_id, ids + i * BROKK_ID_BUFFER_SIZE);
            CHECK_STREQ(r.recs[i].metadata, i == 1 ? "{\"m\":1}" : "{}");
        }
    CHECK_EQ(stats_of(b).published, 4);
    brokk_broker_free(b);
    recorder_destroy(&r);
}

/* One bad message fails the whole batch, names its index, and publishes nothing. */
static void publish_batch_is_all_or_nothing(void) {
    brokk_broker_options opts;
    memset(&opts, 0, sizeof opts);
    opts.worker_threads = 1;
    opts.max_payload_bytes = 16;
    brokk_broker *b = new_broker_opts(&opts);
    if (!b) return;
    recorder r;
    recorder_init(&r, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "aon", recorder_handler, &r, NULL, false, 1, &sid));
    enum { N = 4 };
    struct {
        int index;
        const char *what;
        brokk_status want;
    } cases[] = {
        {2, "json", BROKK_STATUS_INVALID_JSON},      {1, "id", BROKK_STATUS_INVALID_ID},
        {0, "null", BROKK_STATUS_NULL_ARGUMENT},     {3, "size", BROKK_STATUS_PAYLOAD_TOO_LARGE},
        {3, "metadata", BROKK_STATUS_INVALID_JSON},  {1, "utf8", BROKK_STATUS_INVALID_UTF8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        brokk_batch_message m[N];
        memset(m, 0, sizeof m);
        for (int i = 0; i < N; i++) {
            m[i].payload = "{}";
            m[i].payload_len = 2;
        }
        brokk_batch_message *bad = &m[cases[c].index];
        if (!strcmp(cases[c].what, "json")) {
            bad->payload = "{oops";
            bad->payload_len = 5;
        } else if (!strcmp(cases[c].what, "id")) {
            bad->options.id = "has space";
            bad->options.id_len = 9;
        } else if (!strcmp(cases[c].what, "null")) {
            bad->payload = NULL;
        } else if (!strcmp(cases[c].what, "size")) {
            bad->payload = "\"0123456789abcdefgh\"";
            bad->payload_len = 20;
        } else if (!strcmp(cases[c].what, "metadata")) {
            bad->options.metadata = "[1]";
            bad->options.metadata_len = 3;
        } else {
            bad->options.metadata = "{\"a\":\"\xff\"}";
            bad->options.metadata_len = 10;
        }
        char ids[N * BROKK_ID_BUFFER_SIZE];
        memset(ids, 'Z', sizeof ids);
        brokk_status st = brokk_broker_publish_batch(b, "aon", 3, m, N, ids, sizeof ids);
        const char *err = brokk_last_error();
        if (st != cases[c].want)
            FAILF("batch with a bad %s at %d: %s, want %s", cases[c].what, cases[c].index,
                  brokk_status_str(st), brokk_status_str(cases[c].want));
        char idx[16];
        snprintf(idx, sizeof idx, "%d", cases[c].index);
        if (!strstr(err, idx))
            FAILF("last error \"%s\" does not name index %d", err, cases[c].index);
        for (size_t i = 0; i < sizeof ids; i++)
            if (ids[i] != 'Z') {
                FAILF("ids_out written by a failed batch");
                break;
            }
    }
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).published, 0);
    CHECK_EQ(recorder_count(&r), 0);
    brokk_broker_free(b);
    recorder_destroy(&r);
}

static void publish_batch_bad_arguments(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_batch_message m[3];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 3; i++) {
        m[i].payload = "1";
        m[i].payload_len = 1;
    }
    char ids[3 * BROKK_ID_BUFFER_SIZE];
    memset(ids, 'Z', sizeof ids);
    CHECK_STATUS(brokk_broker_publish_batch(NULL, "t", 1, m, 3, NULL, 0), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_batch(b, NULL, 1, m, 3, NULL, 0), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_batch(b, "t", 1, NULL, 3, NULL, 0), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_batch(b, "a b", 3, m, 3, NULL, 0), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_publish_batch(b, "\xff", 1, m, 3, NULL, 0), BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_broker_publish_batch(b, "t", 1, m, 3, ids, sizeof ids - 1),
                 BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_STATUS(brokk_broker_publish_batch(b, "t", 1, m, 3, ids, 0), BROKK_STATUS_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < sizeof ids; i++)
        if (ids[i] != 'Z') {
            FAILF("ids_out written by a failed batch");
            break;
        }
    CHECK_EQ(stats_of(b).published, 0);
    /* An empty batch publishes nothing and succeeds, with or without a message array. */
    CHECK_OK(brokk_broker_publish_batch(b, "t", 1, NULL, 0, NULL, 0));
    CHECK_OK(brokk_broker_publish_batch(b, "t", 1, m, 0, ids, 0));
    CHECK_EQ(stats_of(b).published, 0);
    /* Exactly count * BROKK_ID_BUFFER_SIZE is enough; so is no id buffer at all. */
    CHECK_OK(brokk_broker_publish_batch(b, "t", 1, m, 3, ids, sizeof ids));
    CHECK_OK(brokk_broker_publish_batch(b, "t", 1, m, 3, NULL, 0));
    CHECK_EQ(stats_of(b).published, 6);
    CHECK_EQ(count_of(b, "t"), 6);
    brokk_broker_free(b);
}

/* The batch copies what it is given: the array and its strings can go at once. */
static void publish_batch_copies_inputs(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    enum { N = 3 };
    brokk_batch_message *m = calloc(N, sizeof *m);
    char *payloads[N], *metas[N];
    for (int i = 0; i < N; i++) {
        payloads[i] = malloc(16);
        snprintf(payloads[i], 16, "[%d]", i);
        metas[i] = strdup("{\"k\":true}");
        m[i].payload = payloads[i];
        m[i].payload_len = strlen(payloads[i]);
        m[i].options.metadata = metas[i];
        m[i].options.metadata_len = strlen(metas[i]);
    }
    char *topic = strdup("copied");
    CHECK_OK(brokk_broker_publish_batch(b, topic, strlen(topic), m, N, NULL, 0));
    for (int i = 0; i < N; i++) {
        memset(payloads[i], 'X', strlen(payloads[i]));
        free(payloads[i]);
        free(metas[i]);
    }
    free(m);
    free(topic);
    for (int i = 0; i < N; i++) {
        brokk_delivery *d = FETCH(b, "copied", NULL, 0);
        if (!CHECK(d != NULL)) break;
        char want[16];
        snprintf(want, sizeof want, "[%d]", i);
        CHECK(payload_is(d, want));
        CHECK_STR(brokk_message_metadata(msg_of(d)), "{\"k\":true}");
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(msg_of(d))));
        brokk_delivery_free(d);
    }
    brokk_broker_free(b);
}

/* A handler may fetch from another topic (without waiting) and ack what it got. */
typedef struct fetching_handler_ctx {
    const brokk_broker *b;
    atomic_uint got;
    brokk_status st;
} fetching_handler_ctx;

static brokk_verdict fetching_handler(void *ud, const brokk_message *m) {
    (void)m;
    fetching_handler_ctx *c = ud;
    brokk_delivery *d = NULL;
    c->st = brokk_broker_fetch(c->b, "side", 4, NULL, 0, &d);
    if (d) {
        brokk_broker_ack(c->b, brokk_message_delivery_id(brokk_delivery_message(d)));
        brokk_delivery_free(d);
        atomic_fetch_add(&c->got, 1);
    }
    return BROKK_VERDICT_ACK;
}

static void fetch_from_inside_a_handler(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    fetching_handler_ctx c;
    c.b = b;
    c.st = BROKK_STATUS_PANIC;
    atomic_init(&c.got, 0);
    CHECK_OK(publish_str(b, "side", "\"retained\""));
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "main", fetching_handler, &c, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "main", "1"));
    JOIN_OK(b);
    CHECK_EQ(c.st, BROKK_STATUS_OK);
    CHECK_EQ(atomic_load(&c.got), 1);
    CHECK_EQ(stats_of(b).processed, 2);
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(fetch_takes_retained_messages_in_order),
    TEST_CASE(fetch_with_nothing_there_returns_null),
    TEST_CASE(delivery_id_of_another_broker_is_unknown),
    TEST_CASE(fetch_rejects_bad_input),
    TEST_CASE(delivery_handle_null_and_lifetime),
    TEST_CASE(delivery_freed_after_broker),
    TEST_CASE(delivery_free_does_not_settle),
    TEST_CASE(fetched_delivery_nack_and_requeue),
    TEST_CASE(fetch_waits_for_a_publish),
    TEST_CASE(blocked_fetch_returns_closed),
    TEST_CASE(fetch_serves_queued_while_closing),
    TEST_CASE(take_with_nothing_there_returns_len_0),
    TEST_CASE(take_acks_as_it_takes_in_priority_order),
    TEST_CASE(take_buffer_too_small_leaves_the_message),
    TEST_CASE(take_large_payload_by_size_query),
    TEST_CASE(take_rejects_bad_input),
    TEST_CASE(take_null_group_is_default),
    TEST_CASE(take_leaves_held_deliveries_alone),
    TEST_CASE(take_waits_for_a_publish_and_wakes_on_close),
    TEST_CASE(take_after_close_returns_closed),
    TEST_CASE(take_with_on_an_empty_queue_returns_len_0),
    TEST_CASE(take_with_reuses_one_request_in_priority_order),
    TEST_CASE(take_with_buffer_too_small_leaves_the_message),
    TEST_CASE(take_with_group_field),
    TEST_CASE(take_with_rejects_bad_input),
    TEST_CASE(take_with_after_close_returns_closed),
    TEST_CASE(take_with_waits_for_a_publish_and_wakes_on_close),
    TEST_CASE(take_with_behaves_like_take),
    TEST_CASE(fetch_takes_highest_priority_first),
    TEST_CASE(subscription_and_fetcher_share_a_group),
    TEST_CASE(retention_reject_fails_with_full),
    TEST_CASE(retention_drop_oldest_and_newest),
    TEST_CASE(retention_off_counts_unrouted),
    TEST_CASE(retention_limit_applies_to_a_batch_as_a_whole),
    TEST_CASE(count_and_purge),
    TEST_CASE(count_and_purge_bad_input),
    TEST_CASE(count_and_purge_one_group),
    TEST_CASE(count_and_purge_one_group_bad_input),
    TEST_CASE(publish_batch_delivers_everything_in_order),
    TEST_CASE(publish_batch_is_all_or_nothing),
    TEST_CASE(publish_batch_bad_arguments),
    TEST_CASE(publish_batch_copies_inputs),
    TEST_CASE(fetch_from_inside_a_handler),
};

int main(int argc, char **argv) { return RUN_TESTS("test_consumer", TESTS, argc, argv); }
