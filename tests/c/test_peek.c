/*
 * brokk_broker_peek and its result: what it shows (order, every field, the attempt of a
 * requeued delivery), that it takes nothing (a fetch after it gets the same first delivery at
 * attempt 1, statistics unchanged), a group that does not exist (empty, not created),
 * ownership of the result (views valid until brokk_peek_result_free, NULL frees), and bad
 * input: NULLs, max 0 and over BROKK_MAX_PEEK, bad names, an index past the end, a closed
 * broker. Outputs are untouched on every failure. The order itself on every backend is
 * core/tests/broker.rs's.
 */
#include "check.h"

#define RESULT_SENTINEL ((brokk_peek_result *)(uintptr_t)0xBEEFBEEFu)

static brokk_status publish_prio(const brokk_broker *b, const char *topic, const char *payload,
                                 const char *id, int32_t priority) {
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = id;
    o.id_len = strlen(id);
    o.metadata = "{\"k\":1}";
    o.metadata_len = strlen(o.metadata);
    o.priority = priority;
    return brokk_broker_publish(b, topic, strlen(topic), payload, strlen(payload), &o, NULL, 0);
}

/* peek of up to `max` on topic / group (NULL: default); NULL if it failed. */
static brokk_peek_result *peek_at(const brokk_broker *b, const char *topic, const char *group,
                                  size_t max, int line) {
    brokk_peek_result *r = RESULT_SENTINEL;
    brokk_status st = brokk_broker_peek(b, topic, strlen(topic), group, group ? strlen(group) : 0,
                                        max, &r);
    if (st != BROKK_STATUS_OK) {
        check_fail_(__FILE__, line, "peek(%s) returned %s: %s", topic, brokk_status_str(st),
                    brokk_last_error());
        return NULL;
    }
    if (r == NULL || r == RESULT_SENTINEL) {
        check_fail_(__FILE__, line, "peek returned OK without a result");
        return NULL;
    }
    return r;
}
#define PEEK(b, topic, group, max) peek_at((b), (topic), (group), (max), __LINE__)

static brokk_peeked_fields field_at(const brokk_peek_result *r, size_t i) {
    brokk_peeked_fields f;
    memset(&f, 0, sizeof f);
    CHECK_OK(brokk_peek_result_read(r, i, &f));
    return f;
}

static void peek_shows_every_field_in_fetch_order(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "pk", 2, NULL, 0, &d)); /* makes the default group */
    CHECK(d == NULL);
    CHECK_OK(publish_prio(b, "pk", "\"low\"", "m-low", -1));
    CHECK_OK(publish_prio(b, "pk", "\"high\"", "m-high", 7));
    CHECK_OK(publish_prio(b, "pk", "\"mid\"", "m-mid", 0));
    brokk_peek_result *r = PEEK(b, "pk", NULL, 10);
    if (r) {
        CHECK_EQ(brokk_peek_result_count(r), 3);
        brokk_peeked_fields f = field_at(r, 0);
        CHECK_STR(f.topic, "pk");
        CHECK_STR(f.id, "m-high");
        CHECK_STR(f.payload, "\"high\"");
        CHECK_STR(f.metadata, "{\"k\":1}");
        CHECK_EQ(f.priority, 7);
        CHECK_EQ(f.attempt, 1);
        CHECK(f.timestamp_ms > 0 && f.timestamp_ms <= wall_ms());
        CHECK_STR(field_at(r, 1).id, "m-mid");
        CHECK_STR(field_at(r, 2).id, "m-low");
        CHECK_EQ(field_at(r, 2).priority, -1);
        brokk_peek_result_free(r);
    }
    /* The same through the group's name, and bounded by max. */
    r = PEEK(b, "pk", "default", 1);
    if (r) {
        CHECK_EQ(brokk_peek_result_count(r), 1);
        CHECK_STR(field_at(r, 0).id, "m-high");
        brokk_peek_result_free(r);
    }
    brokk_broker_free(b);
}

static void peek_takes_nothing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "nt", 2, NULL, 0, &d));
    CHECK_OK(publish_prio(b, "nt", "1", "first", 0));
    CHECK_OK(publish_prio(b, "nt", "2", "second", 0));
    brokk_stats before = stats_of(b);
    brokk_peek_result *r = PEEK(b, "nt", NULL, 5);
    brokk_stats after = stats_of(b);
    CHECK_EQ(after.dispatched, before.dispatched);
    CHECK_EQ(after.in_flight, before.in_flight);
    CHECK_EQ(after.queued, before.queued);
    CHECK_EQ(count_of(b, "nt"), 2);
    if (r) {
        CHECK_EQ(brokk_peek_result_count(r), 2);
        /* A fetch after it gets the first one, at attempt 1; the result stays readable. */
        CHECK_OK(brokk_broker_fetch(b, "nt", 2, NULL, 0, &d));
        if (CHECK(d != NULL)) {
            const brokk_message *m = brokk_delivery_message(d);
            CHECK_STR(brokk_message_parent_id(m), "first");
            CHECK_EQ(brokk_message_attempt(m), 1);
            /* Requeued: behind the other, at attempt 2. */
            CHECK_OK(brokk_broker_nack(b, brokk_message_delivery_id(m), true, 0, NULL, 0));
            brokk_delivery_free(d);
        }
        CHECK_STR(field_at(r, 0).id, "first");
        brokk_peek_result_free(r);
    }
    r = PEEK(b, "nt", NULL, 5);
    if (r) {
        CHECK_EQ(brokk_peek_result_count(r), 2);
        CHECK_STR(field_at(r, 0).id, "second");
        CHECK_STR(field_at(r, 1).id, "first");
        CHECK_EQ(field_at(r, 1).attempt, 2);
        brokk_peek_result_free(r);
    }
    brokk_broker_free(b);
}

static void peek_of_a_missing_group_is_empty_and_creates_nothing(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_peek_result *r = PEEK(b, "nobody", "ghost", 3);
    if (r) {
        CHECK_EQ(brokk_peek_result_count(r), 0);
        brokk_peeked_fields f, untouched;
        memset(&f, 0x5A, sizeof f);
        untouched = f;
        CHECK_STATUS(brokk_peek_result_read(r, 0, &f), BROKK_STATUS_INVALID_ARGUMENT);
        CHECK(memcmp(&f, &untouched, sizeof f) == 0);
        brokk_peek_result_free(r);
    }
    /* No group: what is published now is retained, not queued for "ghost". */
    CHECK_OK(publish_prio(b, "nobody", "1", "kept", 0));
    CHECK_EQ(stats_of(b).retained, 1);
    brokk_broker_free(b);
}

static void peek_rejects_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_peek_result *r = RESULT_SENTINEL;
    CHECK_STATUS(brokk_broker_peek(NULL, "t", 1, NULL, 0, 1, &r), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_peek(b, NULL, 1, NULL, 0, 1, &r), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_peek(b, "t", 1, NULL, 0, 1, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_peek(b, "t", 1, NULL, 0, 0, &r), BROKK_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(brokk_broker_peek(b, "t", 1, NULL, 0, BROKK_MAX_PEEK + 1, &r),
                 BROKK_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(brokk_last_error(), "10000") != NULL);
    CHECK_STATUS(brokk_broker_peek(b, "bad topic", 9, NULL, 0, 1, &r), BROKK_STATUS_INVALID_TOPIC);
    CHECK_STATUS(brokk_broker_peek(b, "t", 1, "bad group", 9, 1, &r), BROKK_STATUS_INVALID_GROUP);
    CHECK_STATUS(brokk_broker_peek(b, "\xff", 1, NULL, 0, 1, &r), BROKK_STATUS_INVALID_UTF8);
    CHECK(r == RESULT_SENTINEL);
    r = PEEK(b, "t", NULL, BROKK_MAX_PEEK);
    if (r) {
        brokk_peeked_fields f;
        CHECK_STATUS(brokk_peek_result_read(r, 0, NULL), BROKK_STATUS_NULL_ARGUMENT);
        CHECK_STATUS(brokk_peek_result_read(NULL, 0, &f), BROKK_STATUS_NULL_ARGUMENT);
        brokk_peek_result_free(r);
    }
    CHECK_EQ(brokk_peek_result_count(NULL), 0);
    brokk_peek_result_free(NULL);
    CHECK_OK(brokk_broker_close(b, 0, true, NULL));
    r = RESULT_SENTINEL;
    CHECK_STATUS(brokk_broker_peek(b, "t", 1, NULL, 0, 1, &r), BROKK_STATUS_CLOSED);
    CHECK(r == RESULT_SENTINEL);
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(peek_shows_every_field_in_fetch_order),
    TEST_CASE(peek_takes_nothing),
    TEST_CASE(peek_of_a_missing_group_is_empty_and_creates_nothing),
    TEST_CASE(peek_rejects_bad_input),
};

int main(int argc, char **argv) { return RUN_TESTS("test_peek", TESTS, argc, argv); }
