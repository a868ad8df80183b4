/*
 * brokk_broker_publish: every bad input, ids, id buffers, size limits, copying; and
 * brokk_broker_publish_with, the same call with its arguments but the payload in a request.
 * Every failing call must leave the id buffer untouched, publish nothing (stats) and run no
 * handler; the fixture checks all three around each call.
 */
#include "recorder.h"

typedef struct fixture {
    brokk_broker *b;
    recorder rec;      /* subscription on "t" */
    uint64_t sid;
    unsigned expected; /* successful publishes on "t" so far */
} fixture;

static bool fixture_init(fixture *fx, uint64_t max_payload) {
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 2;
    o.max_payload_bytes = max_payload;
    memset(fx, 0, sizeof *fx);
    recorder_init(&fx->rec, BROKK_VERDICT_ACK);
    fx->b = new_broker_opts(&o);
    if (!fx->b) return false;
    return CHECK_OK(subscribe_simple(fx->b, "t", recorder_handler, &fx->rec, recorder_free, false,
                                     1, &fx->sid));
}

/* Joins, checks that exactly the successful publishes on "t" were handled, frees. */
static void fixture_finish(fixture *fx) {
    if (fx->b) {
        JOIN_OK(fx->b);
        CHECK_EQ(recorder_count(&fx->rec), fx->expected);
        brokk_broker_free(fx->b);
        CHECK_EQ(atomic_load(&fx->rec.freed), 1);
    }
    recorder_destroy(&fx->rec);
}

#define ID_SENTINEL 'Z'

/* Checks a publish's status `st` against `want` (`what` names the call); on failure also that
 * brokk_last_error() says why, that the id buffer `id` (filled with ID_SENTINEL before the
 * call) is untouched, and that the stats are what they were `before`. */
static void check_publish_status(fixture *fx, const char *what, brokk_status st, brokk_status want,
                                 const char *id, size_t id_size, brokk_stats before, int line) {
    const char *err = st != BROKK_STATUS_OK ? brokk_last_error() : "";
    if (st != want) {
        check_fail_(__FILE__, line, "%s returned %u (%s), want %u (%s); last error \"%s\"", what,
                    (unsigned)st, brokk_status_str(st), (unsigned)want, brokk_status_str(want),
                    err);
    }
    if (st == BROKK_STATUS_OK) return;
    if (err[0] == '\0') check_fail_(__FILE__, line, "brokk_last_error() empty on failure");
    for (size_t i = 0; i < id_size; i++) {
        if (id[i] != ID_SENTINEL) {
            check_fail_(__FILE__, line, "id_out written on failure (byte %zu)", i);
            break;
        }
    }
    brokk_stats after = stats_of(fx->b);
    if (after.published != before.published || after.topics != before.topics ||
        after.unrouted != before.unrouted)
        check_fail_(__FILE__, line,
                    "a failed %s changed stats: published %llu->%llu topics "
                    "%llu->%llu unrouted %llu->%llu",
                    what, (unsigned long long)before.published,
                    (unsigned long long)after.published, (unsigned long long)before.topics,
                    (unsigned long long)after.topics, (unsigned long long)before.unrouted,
                    (unsigned long long)after.unrouted);
}

/* Publishes and checks the status; on failure also that nothing changed. */
static brokk_status expect_publish(fixture *fx, const char *topic, size_t topic_len,
                                   const char *payload, size_t payload_len,
                                   const brokk_publish_options *opts, size_t id_cap,
                                   brokk_status want, int line) {
    char id[256];
    memset(id, ID_SENTINEL, sizeof id);
    brokk_stats before = stats_of(fx->b);
    brokk_status st =
        brokk_broker_publish(fx->b, topic, topic_len, payload, payload_len, opts, id, id_cap);
    check_publish_status(fx, "publish", st, want, id, sizeof id, before, line);
    if (st == BROKK_STATUS_OK && topic_len == 1 && topic[0] == 't') fx->expected++;
    return st;
}

#define EXPECT(fx, topic, tlen, payload, plen, opts, want) \
    expect_publish((fx), (topic), (tlen), (payload), (plen), (opts), BROKK_ID_BUFFER_SIZE, \
                   (want), __LINE__)
#define EXPECT_S(fx, topic, payload, opts, want) \
    EXPECT((fx), (topic), strlen(topic), (payload), strlen(payload), (opts), (want))

static void publish_null_arguments(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char id[BROKK_ID_BUFFER_SIZE];
    CHECK_STATUS(brokk_broker_publish(NULL, "t", 1, "{}", 2, NULL, id, sizeof id),
                 BROKK_STATUS_NULL_ARGUMENT);
    EXPECT(&fx, NULL, 1, "{}", 2, NULL, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT(&fx, NULL, 0, "{}", 2, NULL, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT(&fx, "t", 1, NULL, 2, NULL, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT(&fx, "t", 1, NULL, 0, NULL, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT(&fx, NULL, 0, NULL, 0, NULL, BROKK_STATUS_NULL_ARGUMENT);
    fixture_finish(&fx);
}

static void publish_rejects_invalid_topics(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char long_topic[BROKK_TOPIC_MAX_LEN + 2];
    memset(long_topic, 'a', sizeof long_topic);
    EXPECT(&fx, "", 0, "{}", 2, NULL, BROKK_STATUS_INVALID_TOPIC);
    EXPECT(&fx, long_topic, BROKK_TOPIC_MAX_LEN + 1, "{}", 2, NULL, BROKK_STATUS_INVALID_TOPIC);
    EXPECT(&fx, long_topic, BROKK_TOPIC_MAX_LEN + 2, "{}", 2, NULL, BROKK_STATUS_INVALID_TOPIC);
    static const char *bad[] = {"a b", "a/b", " t", "t ", "a*", "a:b", "tab\t", "a#b",
                                "caf\xc3\xa9", "\xe2\x82\xac", "a+b", "a,b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_S(&fx, bad[i], "{}", NULL, BROKK_STATUS_INVALID_TOPIC);
    EXPECT(&fx, "a\0b", 3, "{}", 2, NULL, BROKK_STATUS_INVALID_TOPIC); /* interior NUL */
    EXPECT(&fx, "t\0", 2, "{}", 2, NULL, BROKK_STATUS_INVALID_TOPIC);  /* NUL counted in len */
    fixture_finish(&fx);
}

static void publish_accepts_valid_topics(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char max_topic[BROKK_TOPIC_MAX_LEN];
    memset(max_topic, 'm', sizeof max_topic);
    EXPECT(&fx, max_topic, BROKK_TOPIC_MAX_LEN, "{}", 2, NULL, BROKK_STATUS_OK);
    EXPECT_S(&fx, "ABCxyz019_.-", "{}", NULL, BROKK_STATUS_OK);
    EXPECT_S(&fx, "-", "{}", NULL, BROKK_STATUS_OK);
    EXPECT_S(&fx, ".", "{}", NULL, BROKK_STATUS_OK);
    brokk_stats s = stats_of(fx.b);
    CHECK_EQ(s.topics, 5); /* t, the 255-byte one, and three more */
    /* No group on the four new topics: retained (the default policy), not unrouted. */
    CHECK_EQ(s.unrouted, 0);
    JOIN_OK(fx.b);
    CHECK_EQ(count_of(fx.b, NULL), 4);
    fixture_finish(&fx);
}

static void publish_rejects_invalid_utf8_topic(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    EXPECT(&fx, "\xff", 1, "{}", 2, NULL, BROKK_STATUS_INVALID_UTF8);
    EXPECT(&fx, "ab\xc3", 3, "{}", 2, NULL, BROKK_STATUS_INVALID_UTF8);
    EXPECT(&fx, "\xc0\xaf", 2, "{}", 2, NULL, BROKK_STATUS_INVALID_UTF8); /* overlong '/' */
    fixture_finish(&fx);
}

/* Topic and payload are (pointer, length): bytes past the length are not read as part. */
static void publish_uses_lengths_not_nul(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    const char topic[] = "tXYZ not a topic";
    const char payload[] = "{\"a\":1}garbage that is not JSON";
    EXPECT(&fx, topic, 1, payload, 7, NULL, BROKK_STATUS_OK);
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 1)) {
        CHECK_STREQ(fx.rec.recs[0].topic, "t");
        CHECK_MEM(fx.rec.recs[0].payload, fx.rec.recs[0].payload_len, "{\"a\":1}", 7u);
    }
    fixture_finish(&fx);
}

static void publish_rejects_invalid_json(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    static const char *bad[] = {"nonsense", "{\"a\":", "{} x", "{'a':1}", "[1,]", "01",
                                "NaN", "\"unterminated", "{\"a\":1}}", "tru", " ", "{\"a\" 1}",
                                "[1 2]", "{\"a\":01}", "\"\\x\"", "\"tab\there\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_S(&fx, "t", bad[i], NULL, BROKK_STATUS_INVALID_JSON);
    EXPECT(&fx, "t", 1, "", 0, NULL, BROKK_STATUS_INVALID_JSON); /* empty, not NULL */
    EXPECT(&fx, "t", 1, "{}\0", 3, NULL, BROKK_STATUS_INVALID_JSON);
    fixture_finish(&fx);
}

static void publish_accepts_any_json_document(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    static const char *good[] = {"1", "-0.5e3", "\"s\"", "null", "true", "[1,2]", "{}",
                                 " {\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\\n\"} \n",
                                 "\"caf\xc3\xa9 \xe2\x82\xac\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        EXPECT_S(&fx, "t", good[i], NULL, BROKK_STATUS_OK);
    JOIN_OK(fx.b);
    /* Delivered byte for byte, whitespace included, in order (concurrency 1). */
    if (CHECK_EQ(recorder_count(&fx.rec), sizeof good / sizeof good[0]))
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
            CHECK_STREQ(fx.rec.recs[i].payload, good[i]);
    fixture_finish(&fx);
}

/*
 * JSON text is UTF-8 (RFC 8259 section 8.1) and the payload comes back as a brokk_str, "a view
 * of UTF-8 text (or JSON)": a payload whose strings hold invalid UTF-8 is not a JSON document.
 * Either INVALID_JSON or INVALID_UTF8 is acceptable; OK is not.
 */
static void publish_rejects_invalid_utf8_inside_json(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    static const char *bad[] = {"\"\xff\"", "{\"k\xc3\":1}", "[\"\xed\xa0\x80\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brokk_stats before = stats_of(fx.b);
        brokk_status st = brokk_broker_publish(fx.b, "t", 1, bad[i], strlen(bad[i]), NULL, NULL, 0);
        if (st == BROKK_STATUS_OK) {
            fx.expected++;
            FAILF("payload #%zu with invalid UTF-8 inside a JSON string was accepted", i);
        } else {
            if (st != BROKK_STATUS_INVALID_JSON && st != BROKK_STATUS_INVALID_UTF8)
                FAILF("payload #%zu: status %u (%s)", i, (unsigned)st, brokk_status_str(st));
            CHECK_EQ(stats_of(fx.b).published, before.published);
        }
    }
    fixture_finish(&fx);
}

static void publish_metadata_must_be_json_object(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    static const char *bad[] = {"[1]", "\"x\"", "1", "null", "true", "{", "{} {}", "{\"a\":}",
                                "x", " ", "[]"};
    brokk_publish_options o;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&o, 0, sizeof o);
        o.metadata = bad[i];
        o.metadata_len = strlen(bad[i]);
        EXPECT_S(&fx, "t", "{}", &o, BROKK_STATUS_INVALID_JSON);
    }
    memset(&o, 0, sizeof o);
    o.metadata = "";
    o.metadata_len = 0; /* empty, not NULL: not a JSON object */
    EXPECT_S(&fx, "t", "{}", &o, BROKK_STATUS_INVALID_JSON);
    fixture_finish(&fx);
}

static void publish_metadata_invalid_utf8(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.metadata = "{\"a\":\"\xff\"}";
    o.metadata_len = strlen(o.metadata);
    brokk_status st = brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, NULL, 0);
    if (st != BROKK_STATUS_INVALID_UTF8 && st != BROKK_STATUS_INVALID_JSON)
        FAILF("metadata with invalid UTF-8: status %u (%s)", (unsigned)st, brokk_status_str(st));
    if (st == BROKK_STATUS_OK) fx.expected++;
    CHECK_EQ(stats_of(fx.b).published, 0);
    fixture_finish(&fx);
}

static void publish_metadata_delivered_exactly(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    const char *md = "{\"trace\": \"abc\", \"n\": [1, 2.5, null]}";
    o.metadata = md;
    o.metadata_len = strlen(md);
    EXPECT_S(&fx, "t", "{\"x\":1}", &o, BROKK_STATUS_OK);
    /* NULL metadata means "{}" whatever metadata_len says. */
    memset(&o, 0, sizeof o);
    o.metadata = NULL;
    o.metadata_len = 17;
    EXPECT_S(&fx, "t", "2", &o, BROKK_STATUS_OK);
    EXPECT_S(&fx, "t", "3", NULL, BROKK_STATUS_OK);
    memset(&o, 0, sizeof o);
    o.metadata = "  {\"ws\":true}  ";
    o.metadata_len = strlen(o.metadata);
    EXPECT_S(&fx, "t", "4", &o, BROKK_STATUS_OK);
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 4)) {
        CHECK_STREQ(fx.rec.recs[0].metadata, md);
        CHECK_STREQ(fx.rec.recs[1].metadata, "{}");
        CHECK_STREQ(fx.rec.recs[2].metadata, "{}");
        CHECK_STREQ(fx.rec.recs[3].metadata, "  {\"ws\":true}  ");
    }
    fixture_finish(&fx);
}

/* A JSON string of exactly n bytes, quotes included. */
static char *json_string_of(size_t n) {
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[0] = s[n - 1] = '"';
    s[n] = '\0';
    return s;
}

static void publish_payload_size_limit(void) {
    fixture fx;
    if (!fixture_init(&fx, 64)) return;
    char *p64 = json_string_of(64), *p65 = json_string_of(65), *p1000 = json_string_of(1000);
    EXPECT(&fx, "t", 1, p64, 64, NULL, BROKK_STATUS_OK);
    EXPECT(&fx, "t", 1, p65, 65, NULL, BROKK_STATUS_PAYLOAD_TOO_LARGE);
    EXPECT(&fx, "t", 1, p1000, 1000, NULL, BROKK_STATUS_PAYLOAD_TOO_LARGE);
    EXPECT(&fx, "t", 1, "1", 1, NULL, BROKK_STATUS_OK);
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 2)) CHECK_STREQ(fx.rec.recs[0].payload, p64);
    free(p64);
    free(p65);
    free(p1000);
    fixture_finish(&fx);
}

static void publish_default_payload_limit_is_1mib(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char *max = json_string_of(BROKK_DEFAULT_MAX_PAYLOAD);
    char *over = json_string_of(BROKK_DEFAULT_MAX_PAYLOAD + 1);
    EXPECT(&fx, "t", 1, max, BROKK_DEFAULT_MAX_PAYLOAD, NULL, BROKK_STATUS_OK);
    EXPECT(&fx, "t", 1, over, BROKK_DEFAULT_MAX_PAYLOAD + 1, NULL, BROKK_STATUS_PAYLOAD_TOO_LARGE);
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 1))
        CHECK_EQ(fx.rec.recs[0].payload_len, BROKK_DEFAULT_MAX_PAYLOAD);
    free(max);
    free(over);
    fixture_finish(&fx);
}

static void publish_returns_given_id(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char longest[BROKK_ID_MAX_LEN + 1];
    memset(longest, 'L', BROKK_ID_MAX_LEN);
    longest[BROKK_ID_MAX_LEN] = '\0';
    const char *ids[] = {"order-42", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "x", longest};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        brokk_publish_options o;
        memset(&o, 0, sizeof o);
        o.id = ids[i];
        o.id_len = strlen(ids[i]);
        char out[BROKK_ID_BUFFER_SIZE];
        memset(out, ID_SENTINEL, sizeof out);
        CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, out, sizeof out));
        fx.expected++;
        if (memchr(out, '\0', sizeof out) == NULL)
            FAILF("id_out not NUL-terminated");
        else
            CHECK_STREQ(out, ids[i]);
    }
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 4))
        for (size_t i = 0; i < 4; i++) CHECK_STREQ(fx.rec.recs[i].parent_id, ids[i]);
    fixture_finish(&fx);
}

static void publish_rejects_invalid_ids(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char too_long[BROKK_ID_MAX_LEN + 1];
    memset(too_long, 'a', sizeof too_long);
    struct {
        const char *id;
        size_t len;
    } bad[] = {
        {"", 0},          {too_long, BROKK_ID_MAX_LEN + 1},
        {"a b", 3},       {" ", 1},
        {"tab\t", 4},     {"line\n", 5},
        {"\x7f", 1},      {"caf\xc3\xa9", 5},
        {"a\0b", 3},      {"\xe2\x82\xac", 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        brokk_publish_options o;
        memset(&o, 0, sizeof o);
        o.id = bad[i].id;
        o.id_len = bad[i].len;
        /* With BROKK_ID_BUFFER_SIZE ("always suffices") and without an id buffer. */
        EXPECT_S(&fx, "t", "{}", &o, BROKK_STATUS_INVALID_ID);
        CHECK_STATUS(brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, NULL, 0),
                     BROKK_STATUS_INVALID_ID);
    }
    CHECK_EQ(stats_of(fx.b).published, 0);
    fixture_finish(&fx);
}

/* Not UTF-8 at all: the header allows reading this as INVALID_UTF8 or INVALID_ID. */
static void publish_rejects_non_utf8_id(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "id\xff";
    o.id_len = 3;
    brokk_status st = brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, NULL, 0);
    if (st != BROKK_STATUS_INVALID_ID && st != BROKK_STATUS_INVALID_UTF8)
        FAILF("non-UTF-8 id: status %u (%s)", (unsigned)st, brokk_status_str(st));
    if (st == BROKK_STATUS_OK) fx.expected++;
    CHECK_EQ(stats_of(fx.b).published, 0);
    fixture_finish(&fx);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void publish_generates_unique_valid_ids(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    unsigned n = scaled_count(1000);
    char **ids = calloc(n, sizeof *ids);
    for (unsigned i = 0; i < n; i++) {
        char out[BROKK_ID_BUFFER_SIZE];
        memset(out, ID_SENTINEL, sizeof out);
        if (!CHECK_OK(brokk_broker_publish(fx.b, "gen", 3, "0", 1, NULL, out, sizeof out)))
            break;
        if (!CHECK(memchr(out, '\0', sizeof out) != NULL)) break;
        size_t len = strlen(out);
        CHECK(len >= 1 && len <= BROKK_ID_MAX_LEN);
        for (size_t k = 0; k < len; k++)
            if (out[k] < 0x21 || out[k] > 0x7e) {
                FAILF("generated id \"%s\" is not printable ASCII", out);
                break;
            }
        ids[i] = strdup(out);
    }
    qsort(ids, n, sizeof *ids, cmp_str);
    for (unsigned i = 1; i < n; i++)
        if (ids[i] && ids[i - 1] && strcmp(ids[i], ids[i - 1]) == 0)
            FAILF("generated id \"%s\" returned twice", ids[i]);
    for (unsigned i = 0; i < n; i++) free(ids[i]);
    free(ids);
    CHECK_EQ(count_of(fx.b, "gen"), n); /* retained: "gen" has no group */
    fixture_finish(&fx);
}

/* Generated ids differ between brokers too (they are meant to be unique without coordination). */
static void generated_ids_differ_across_brokers(void) {
    brokk_broker *a = new_broker(1), *b = new_broker(1);
    if (a && b) {
        char ia[BROKK_ID_BUFFER_SIZE], ib[BROKK_ID_BUFFER_SIZE];
        CHECK_OK(brokk_broker_publish(a, "x", 1, "1", 1, NULL, ia, sizeof ia));
        CHECK_OK(brokk_broker_publish(b, "x", 1, "1", 1, NULL, ib, sizeof ib));
        if (strcmp(ia, ib) == 0) FAILF("two brokers generated the same first id \"%s\"", ia);
    }
    brokk_broker_free(a);
    brokk_broker_free(b);
}

static void publish_id_buffer_too_small(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    /* Learn a generated id's length (with an ample buffer). */
    char out[BROKK_ID_BUFFER_SIZE];
    EXPECT(&fx, "t", 1, "{}", 2, NULL, BROKK_STATUS_OK);
    CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, NULL, out, sizeof out));
    fx.expected++;
    size_t glen = strlen(out);
    size_t caps[] = {0, 1, 8, glen};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        expect_publish(&fx, "t", 1, "{}", 2, NULL, caps[i], BROKK_STATUS_BUFFER_TOO_SMALL,
                       __LINE__);
    expect_publish(&fx, "t", 1, "{}", 2, NULL, glen + 1, BROKK_STATUS_OK, __LINE__);
    /* A given id: exactly its length plus the NUL is enough. */
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "abc";
    o.id_len = 3;
    expect_publish(&fx, "t", 1, "{}", 2, &o, 3, BROKK_STATUS_BUFFER_TOO_SMALL, __LINE__);
    expect_publish(&fx, "t", 1, "{}", 2, &o, 0, BROKK_STATUS_BUFFER_TOO_SMALL, __LINE__);
    expect_publish(&fx, "t", 1, "{}", 2, &o, 4, BROKK_STATUS_OK, __LINE__);
    char longest[BROKK_ID_MAX_LEN];
    memset(longest, 'q', sizeof longest);
    o.id = longest;
    o.id_len = BROKK_ID_MAX_LEN;
    expect_publish(&fx, "t", 1, "{}", 2, &o, BROKK_ID_MAX_LEN, BROKK_STATUS_BUFFER_TOO_SMALL,
                   __LINE__);
    expect_publish(&fx, "t", 1, "{}", 2, &o, BROKK_ID_BUFFER_SIZE, BROKK_STATUS_OK, __LINE__);
    fixture_finish(&fx);
}

static void publish_id_out_may_be_null(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, NULL, NULL, 0));
    CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, NULL, NULL, 5));
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "given";
    o.id_len = 5;
    CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, NULL, 0));
    fx.expected += 3;
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 3)) CHECK_STREQ(fx.rec.recs[2].parent_id, "given");
    /* NULL id means generate one, whatever id_len says. */
    memset(&o, 0, sizeof o);
    o.id = NULL;
    o.id_len = 9;
    char out[BROKK_ID_BUFFER_SIZE];
    CHECK_OK(brokk_broker_publish(fx.b, "t", 1, "{}", 2, &o, out, sizeof out));
    fx.expected++;
    CHECK(strlen(out) > 0);
    fixture_finish(&fx);
}

/* Several errors at once still publish nothing (whichever status wins). */
static void publish_combined_errors_publish_nothing(void) {
    fixture fx;
    if (!fixture_init(&fx, 8)) return;
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "bad id";
    o.id_len = 6;
    o.metadata = "[]";
    o.metadata_len = 2;
    char out[4];
    brokk_status st = brokk_broker_publish(fx.b, "bad topic", 9, "not json at all", 15, &o, out,
                                           sizeof out);
    CHECK(st != BROKK_STATUS_OK);
    CHECK(brokk_status_classify(st) == BROKK_STATUS_CLASS_CALLER);
    brokk_stats s = stats_of(fx.b);
    CHECK_EQ(s.published, 0);
    CHECK_EQ(s.topics, 1); /* only "t", from the subscription */
    fixture_finish(&fx);
}

/* publish copies topic, payload, options and what they point to. */
typedef struct blocked {
    gate g;
    recorder rec;
} blocked;

static brokk_verdict blocked_handler(void *ud, const brokk_message *m) {
    blocked *bl = ud;
    gate_pass(&bl->g);
    recorder_add(&bl->rec, m);
    return BROKK_VERDICT_ACK;
}

static void publish_copies_its_inputs(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    blocked bl;
    gate_init(&bl.g);
    recorder_init(&bl.rec, BROKK_VERDICT_ACK);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "copy", blocked_handler, &bl, NULL, false, 1, &sid));
    /* The first message blocks the handler, so the second waits in the queue while its
     * inputs are freed and scribbled over. */
    CHECK_OK(publish_str(b, "copy", "0"));
    CHECK(gate_wait_entered(&bl.g, 1));
    char *topic = strdup("copy");
    char *payload = strdup("{\"k\":\"payload\"}");
    char *metadata = strdup("{\"m\":true}");
    char *id = strdup("the-id");
    brokk_publish_options *o = calloc(1, sizeof *o);
    o->id = id;
    o->id_len = strlen(id);
    o->metadata = metadata;
    o->metadata_len = strlen(metadata);
    CHECK_OK(brokk_broker_publish(b, topic, strlen(topic), payload, strlen(payload), o, NULL, 0));
    memset(topic, 'X', strlen(topic));
    memset(payload, 'X', strlen(payload));
    memset(metadata, 'X', strlen(metadata));
    memset(id, 'X', strlen(id));
    free(topic);
    free(payload);
    free(metadata);
    free(id);
    free(o);
    gate_open(&bl.g);
    JOIN_OK(b);
    if (CHECK_EQ(recorder_count(&bl.rec), 2)) {
        rec *r = &bl.rec.recs[1];
        CHECK_STREQ(r->topic, "copy");
        CHECK_STREQ(r->payload, "{\"k\":\"payload\"}");
        CHECK_STREQ(r->metadata, "{\"m\":true}");
        CHECK_STREQ(r->parent_id, "the-id");
    }
    brokk_broker_free(b);
    recorder_destroy(&bl.rec);
    gate_destroy(&bl.g);
}

/* ---- publish_with: brokk_broker_publish with its other arguments in a reusable request -------- */

/* A request for `topic` with `opts`, no id buffer. */
static brokk_publish_request publish_request(const char *topic, const brokk_publish_options *opts) {
    brokk_publish_request r;
    memset(&r, 0, sizeof r);
    r.topic = topic;
    r.topic_len = topic ? strlen(topic) : 0;
    r.options = opts;
    return r;
}

/* brokk_broker_publish_with through a copy of `req` whose id buffer is a sentinel-filled
 * id_cap-byte one (or none, if req->id_out is NULL); checks the status and, on failure, that
 * nothing changed, as expect_publish does. On OK, copies the id to id_copy if not NULL. */
static brokk_status expect_publish_with(fixture *fx, const brokk_publish_request *req,
                                        const char *payload, size_t payload_len, size_t id_cap,
                                        brokk_status want, char *id_copy, int line) {
    char id[256];
    memset(id, ID_SENTINEL, sizeof id);
    brokk_publish_request r = *req;
    if (r.id_out) {
        r.id_out = id;
        r.id_out_cap = id_cap;
    }
    brokk_stats before = stats_of(fx->b);
    brokk_status st = brokk_broker_publish_with(fx->b, &r, payload, payload_len);
    check_publish_status(fx, "publish_with", st, want, id, sizeof id, before, line);
    if (st == BROKK_STATUS_OK) {
        if (r.topic_len == 1 && r.topic[0] == 't') fx->expected++;
        if (r.id_out && memchr(id, '\0', id_cap < sizeof id ? id_cap : sizeof id) == NULL)
            check_fail_(__FILE__, line, "id_out not NUL-terminated");
        else if (r.id_out && id_copy)
            strcpy(id_copy, id);
    }
    return st;
}

#define EXPECT_WITH(fx, req, payload, plen, want) \
    expect_publish_with((fx), (req), (payload), (plen), BROKK_ID_BUFFER_SIZE, (want), NULL, __LINE__)
#define EXPECT_WITH_S(fx, req, payload, want) \
    EXPECT_WITH((fx), (req), (payload), strlen(payload), (want))

/* One request, reused for every message to its topic: they arrive in order, all of them. */
static void publish_with_reuses_one_request(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    brokk_publish_request r = publish_request("t", NULL);
    const brokk_publish_request copy = r;
    unsigned n = scaled_count(200);
    for (unsigned i = 0; i < n; i++) {
        char payload[32];
        int len = snprintf(payload, sizeof payload, "{\"n\":%u}", i);
        if (!CHECK_OK(brokk_broker_publish_with(fx.b, &r, payload, (size_t)len))) break;
        fx.expected++;
    }
    CHECK(memcmp(&r, &copy, sizeof r) == 0); /* the request is only read */
    JOIN_OK(fx.b);
    CHECK_EQ(stats_of(fx.b).published, n);
    if (CHECK_EQ(recorder_count(&fx.rec), n))
        for (unsigned i = 0; i < n; i++) {
            char want[32];
            snprintf(want, sizeof want, "{\"n\":%u}", i);
            if (!CHECK_STREQ(fx.rec.recs[i].payload, want)) break;
            CHECK_STREQ(fx.rec.recs[i].topic, "t");
            CHECK_STREQ(fx.rec.recs[i].metadata, "{}");
            CHECK_EQ(fx.rec.recs[i].priority, 0);
        }
    /* Two requests for two topics, interleaved: each keeps its topic. */
    brokk_publish_request ra = publish_request("ta", NULL), rb = publish_request("tb", NULL);
    for (int i = 0; i < 5; i++) {
        CHECK_OK(brokk_broker_publish_with(fx.b, &ra, "1", 1));
        CHECK_OK(brokk_broker_publish_with(fx.b, &rb, "2", 1));
    }
    CHECK_EQ(count_of(fx.b, "ta"), 5); /* retained: no group yet */
    CHECK_EQ(count_of(fx.b, "tb"), 5);
    fixture_finish(&fx);
}

/* Fetches (default group, no wait) and acks; checks payload, parent id, metadata, priority. */
static void fetch_expect_at(const brokk_broker *b, const char *topic, const char *payload,
                            const char *id, const char *metadata, int32_t priority, int line) {
    brokk_delivery *d = NULL;
    brokk_status st = brokk_broker_fetch(b, topic, strlen(topic), NULL, 0, &d);
    if (st != BROKK_STATUS_OK || d == NULL) {
        check_fail_(__FILE__, line, "fetch(%s) returned %s, %s", topic, brokk_status_str(st),
                    d ? "a delivery" : "none");
        brokk_delivery_free(d);
        return;
    }
    const brokk_message *m = brokk_delivery_message(d);
    brokk_message_fields f;
    memset(&f, 0, sizeof f);
    if (CHECK_OK(brokk_message_read(m, &f))) {
        if (!view_eq(f.payload, payload) || !view_eq(f.parent_id, id) ||
            !view_eq(f.metadata, metadata) || f.priority != priority)
            check_fail_(__FILE__, line,
                        "fetch(%s) got payload \"%.*s\" id \"%.*s\" metadata \"%.*s\" priority "
                        "%d; want \"%s\" \"%s\" \"%s\" %d",
                        topic, (int)f.payload.len, f.payload.ptr, (int)f.parent_id.len,
                        f.parent_id.ptr, (int)f.metadata.len, f.metadata.ptr, (int)f.priority,
                        payload, id, metadata, (int)priority);
    }
    CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(m)));
    brokk_delivery_free(d);
}
#define FETCH_EXPECT(b, topic, payload, id, md, prio) \
    fetch_expect_at((b), (topic), (payload), (id), (md), (prio), __LINE__)

/* A request with options (priority, id, metadata) publishes what brokk_broker_publish does
 * with the same options; the request's options pointer stays, the options it points to change
 * between calls. */
static void publish_with_options_like_publish(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_delivery *d = (brokk_delivery *)1;
    /* The default group on both topics first, so what follows queues for it. */
    CHECK_OK(brokk_broker_fetch(b, "pw", 2, NULL, 0, &d));
    CHECK(d == NULL);
    d = (brokk_delivery *)1;
    CHECK_OK(brokk_broker_fetch(b, "pp", 2, NULL, 0, &d));
    CHECK(d == NULL);
    static const struct {
        const char *payload, *id, *metadata;
        int32_t priority;
    } msgs[] = {
        {"0", "m-0", "{\"k\":0}", 0},
        {"{\"x\":1}", "m-1", "{\"k\":1}", 5},
        {"\"two\"", "m-2", NULL, -1},
        {"[3]", NULL, "{\"k\":[3]}", 5},
        {"4", "m-4", "{}", INT32_MAX},
        {"5", "m-5", " {\"ws\": true} ", INT32_MIN},
    };
    enum { N = sizeof msgs / sizeof msgs[0] };
    brokk_publish_options o;
    char wid[BROKK_ID_BUFFER_SIZE], pid[BROKK_ID_BUFFER_SIZE];
    char wids[N][BROKK_ID_BUFFER_SIZE];
    brokk_publish_request r = publish_request("pw", &o);
    r.id_out = wid;
    r.id_out_cap = sizeof wid;
    for (int i = 0; i < N; i++) {
        memset(&o, 0, sizeof o);
        o.priority = msgs[i].priority;
        if (msgs[i].id) {
            o.id = msgs[i].id;
            o.id_len = strlen(msgs[i].id);
        }
        if (msgs[i].metadata) {
            o.metadata = msgs[i].metadata;
            o.metadata_len = strlen(msgs[i].metadata);
        }
        memset(wid, ID_SENTINEL, sizeof wid);
        memset(pid, ID_SENTINEL, sizeof pid);
        CHECK_OK(brokk_broker_publish_with(b, &r, msgs[i].payload, strlen(msgs[i].payload)));
        CHECK_OK(brokk_broker_publish(b, "pp", 2, msgs[i].payload, strlen(msgs[i].payload), &o,
                                      pid, sizeof pid));
        if (!CHECK(memchr(wid, '\0', sizeof wid) != NULL)) wid[0] = '\0';
        if (msgs[i].id) {
            CHECK_STREQ(wid, msgs[i].id);
            CHECK_STREQ(pid, msgs[i].id);
        } else {
            CHECK(strlen(wid) > 0); /* generated */
        }
        strcpy(wids[i], wid);
    }
    CHECK_EQ(count_of(b, "pw"), N);
    CHECK_EQ(count_of(b, "pp"), N);
    /* Highest priority first, FIFO within one; the same for both topics. */
    static const int order[N] = {4, 1, 3, 0, 2, 5};
    for (int k = 0; k < N; k++) {
        int i = order[k];
        const char *md = msgs[i].metadata ? msgs[i].metadata : "{}";
        FETCH_EXPECT(b, "pw", msgs[i].payload, wids[i], md, msgs[i].priority);
        if (msgs[i].id) {
            FETCH_EXPECT(b, "pp", msgs[i].payload, msgs[i].id, md, msgs[i].priority);
        } else { /* a generated id: just not the same as the other topic's */
            brokk_delivery *dp = NULL;
            if (CHECK_OK(brokk_broker_fetch(b, "pp", 2, NULL, 0, &dp)) && CHECK(dp != NULL)) {
                const brokk_message *m = brokk_delivery_message(dp);
                CHECK(view_eq(brokk_message_payload(m), msgs[i].payload));
                CHECK(view_eq(brokk_message_metadata(m), md));
                CHECK_EQ(brokk_message_priority(m), msgs[i].priority);
                CHECK(!view_eq(brokk_message_parent_id(m), wids[i]));
                CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(m)));
            }
            brokk_delivery_free(dp);
        }
    }
    CHECK_EQ(count_of(b, "pw"), 0);
    CHECK_EQ(count_of(b, "pp"), 0);
    JOIN_OK(b);
    CHECK_EQ(stats_of(b).published, 2 * N);
    brokk_broker_free(b);
}

/* id_out in the request receives each message's id, NUL-terminated: a fresh generated one
 * per publish through the same request, or the given one. */
static void publish_with_id_out(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char ids[4][BROKK_ID_BUFFER_SIZE];
    brokk_publish_request r = publish_request("t", NULL);
    r.id_out = ids[0]; /* replaced by expect_publish_with's sentinel buffer */
    for (int i = 0; i < 3; i++)
        expect_publish_with(&fx, &r, "{}", 2, BROKK_ID_BUFFER_SIZE, BROKK_STATUS_OK, ids[i],
                            __LINE__);
    CHECK(strlen(ids[0]) > 0);
    CHECK(strcmp(ids[0], ids[1]) != 0);
    CHECK(strcmp(ids[1], ids[2]) != 0);
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "given-id";
    o.id_len = 8;
    r.options = &o;
    expect_publish_with(&fx, &r, "{}", 2, BROKK_ID_BUFFER_SIZE, BROKK_STATUS_OK, ids[3], __LINE__);
    CHECK_STREQ(ids[3], "given-id");
    /* Directly too, with the caller's own buffer in the request. */
    char out[BROKK_ID_BUFFER_SIZE];
    memset(out, ID_SENTINEL, sizeof out);
    brokk_publish_request direct = publish_request("t", &o);
    direct.id_out = out;
    direct.id_out_cap = sizeof out;
    CHECK_OK(brokk_broker_publish_with(fx.b, &direct, "5", 1));
    fx.expected++;
    CHECK_STREQ(out, "given-id");
    /* No id buffer: fine, whatever the cap says. */
    direct.id_out = NULL;
    direct.id_out_cap = 3;
    CHECK_OK(brokk_broker_publish_with(fx.b, &direct, "6", 1));
    fx.expected++;
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 6)) {
        for (int i = 0; i < 4; i++) CHECK_STREQ(fx.rec.recs[i].parent_id, ids[i]);
        CHECK_STREQ(fx.rec.recs[4].parent_id, "given-id");
    }
    fixture_finish(&fx);
}

/* id_out_cap too small: BUFFER_TOO_SMALL, nothing published, id_out untouched. */
static void publish_with_id_buffer_too_small(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char gen[BROKK_ID_BUFFER_SIZE];
    brokk_publish_request r = publish_request("t", NULL);
    r.id_out = gen;
    expect_publish_with(&fx, &r, "{}", 2, BROKK_ID_BUFFER_SIZE, BROKK_STATUS_OK, gen, __LINE__);
    size_t glen = strlen(gen);
    size_t caps[] = {0, 1, 8, glen};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        expect_publish_with(&fx, &r, "{}", 2, caps[i], BROKK_STATUS_BUFFER_TOO_SMALL, NULL,
                            __LINE__);
    expect_publish_with(&fx, &r, "{}", 2, glen + 1, BROKK_STATUS_OK, NULL, __LINE__);
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.id = "abc";
    o.id_len = 3;
    r.options = &o;
    expect_publish_with(&fx, &r, "{}", 2, 3, BROKK_STATUS_BUFFER_TOO_SMALL, NULL, __LINE__);
    expect_publish_with(&fx, &r, "{}", 2, 0, BROKK_STATUS_BUFFER_TOO_SMALL, NULL, __LINE__);
    expect_publish_with(&fx, &r, "{}", 2, 4, BROKK_STATUS_OK, gen, __LINE__);
    CHECK_STREQ(gen, "abc");
    /* The caller's buffer directly: untouched on BUFFER_TOO_SMALL. */
    char out[8];
    memset(out, ID_SENTINEL, sizeof out);
    brokk_publish_request direct = publish_request("t", NULL);
    direct.id_out = out;
    direct.id_out_cap = sizeof out;
    uint64_t before = stats_of(fx.b).published;
    CHECK_STATUS(brokk_broker_publish_with(fx.b, &direct, "{}", 2), BROKK_STATUS_BUFFER_TOO_SMALL);
    for (size_t i = 0; i < sizeof out; i++) CHECK_EQ(out[i], ID_SENTINEL);
    CHECK_EQ(stats_of(fx.b).published, before);
    fixture_finish(&fx);
}

static void publish_with_null_arguments(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char id[BROKK_ID_BUFFER_SIZE];
    memset(id, ID_SENTINEL, sizeof id);
    brokk_publish_request r = publish_request("t", NULL);
    r.id_out = id;
    r.id_out_cap = sizeof id;
    CHECK_STATUS(brokk_broker_publish_with(NULL, &r, "{}", 2), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_with(fx.b, NULL, "{}", 2), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_with(NULL, NULL, "{}", 2), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_publish_with(fx.b, NULL, NULL, 0), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_EQ(id[0], ID_SENTINEL);
    EXPECT_WITH(&fx, &r, NULL, 2, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT_WITH(&fx, &r, NULL, 0, BROKK_STATUS_NULL_ARGUMENT);
    brokk_publish_request no_topic = publish_request(NULL, NULL);
    no_topic.id_out = id;
    EXPECT_WITH(&fx, &no_topic, "{}", 2, BROKK_STATUS_NULL_ARGUMENT);
    no_topic.topic_len = 1;
    EXPECT_WITH(&fx, &no_topic, "{}", 2, BROKK_STATUS_NULL_ARGUMENT);
    EXPECT_WITH(&fx, &no_topic, NULL, 0, BROKK_STATUS_NULL_ARGUMENT);
    CHECK_EQ(stats_of(fx.b).published, 0);
    fixture_finish(&fx);
}

/* Bad payloads, topics, metadata and ids: the statuses brokk_broker_publish gives, nothing
 * published. */
static void publish_with_rejects_bad_input(void) {
    fixture fx;
    if (!fixture_init(&fx, 0)) return;
    char id[BROKK_ID_BUFFER_SIZE];
    brokk_publish_request r = publish_request("t", NULL);
    r.id_out = id;
    static const char *bad_json[] = {"nonsense", "{\"a\":", "{} x", "{'a':1}", "[1,]", "01",
                                     "NaN", "\"unterminated", "tru", " "};
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++)
        EXPECT_WITH_S(&fx, &r, bad_json[i], BROKK_STATUS_INVALID_JSON);
    EXPECT_WITH(&fx, &r, "", 0, BROKK_STATUS_INVALID_JSON); /* empty, not NULL */
    EXPECT_WITH(&fx, &r, "{}\0", 3, BROKK_STATUS_INVALID_JSON);
    EXPECT_WITH(&fx, &r, "{\"a\":1}garbage", 7, BROKK_STATUS_OK); /* the length counts */
    char long_topic[BROKK_TOPIC_MAX_LEN + 1];
    memset(long_topic, 'a', sizeof long_topic);
    static const char *bad_topics[] = {"", "a b", "a/b", " t", "t ", "a*", "a:b", "a#b"};
    for (size_t i = 0; i < sizeof bad_topics / sizeof bad_topics[0]; i++) {
        brokk_publish_request bt = publish_request(bad_topics[i], NULL);
        bt.id_out = id;
        EXPECT_WITH_S(&fx, &bt, "{}", BROKK_STATUS_INVALID_TOPIC);
        CHECK_STATUS(brokk_broker_publish(fx.b, bad_topics[i], strlen(bad_topics[i]), "{}", 2,
                                          NULL, NULL, 0),
                     BROKK_STATUS_INVALID_TOPIC); /* as brokk_broker_publish */
    }
    brokk_publish_request lt = publish_request("x", NULL);
    lt.topic = long_topic;
    lt.topic_len = sizeof long_topic;
    EXPECT_WITH(&fx, &lt, "{}", 2, BROKK_STATUS_INVALID_TOPIC);
    brokk_publish_request nul = publish_request("t", NULL);
    nul.topic = "t\0";
    nul.topic_len = 2;
    EXPECT_WITH(&fx, &nul, "{}", 2, BROKK_STATUS_INVALID_TOPIC);
    brokk_publish_request utf = publish_request("\xff", NULL);
    EXPECT_WITH(&fx, &utf, "{}", 2, BROKK_STATUS_INVALID_UTF8);
    /* Bad options through the request. */
    brokk_publish_options o;
    memset(&o, 0, sizeof o);
    o.metadata = "[1]";
    o.metadata_len = 3;
    r.options = &o;
    EXPECT_WITH(&fx, &r, "{}", 2, BROKK_STATUS_INVALID_JSON);
    memset(&o, 0, sizeof o);
    o.id = "bad id";
    o.id_len = 6;
    EXPECT_WITH(&fx, &r, "{}", 2, BROKK_STATUS_INVALID_ID);
    memset(&o, 0, sizeof o);
    EXPECT_WITH(&fx, &r, "{}", 2, BROKK_STATUS_OK); /* the same request, fixed */
    CHECK_EQ(stats_of(fx.b).published, 2);
    fixture_finish(&fx);
}

/* The payload size limit holds through a request too. */
static void publish_with_payload_size_limit(void) {
    fixture fx;
    if (!fixture_init(&fx, 64)) return;
    char *p64 = json_string_of(64), *p65 = json_string_of(65);
    brokk_publish_request r = publish_request("t", NULL);
    EXPECT_WITH(&fx, &r, p64, 64, BROKK_STATUS_OK);
    EXPECT_WITH(&fx, &r, p65, 65, BROKK_STATUS_PAYLOAD_TOO_LARGE);
    JOIN_OK(fx.b);
    if (CHECK_EQ(recorder_count(&fx.rec), 1)) CHECK_STREQ(fx.rec.recs[0].payload, p64);
    free(p64);
    free(p65);
    fixture_finish(&fx);
}

static void publish_with_after_close_returns_closed(void) {
    for (int force = 0; force < 2; force++) {
        brokk_broker *b = new_broker(1);
        if (!b) return;
        char id[BROKK_ID_BUFFER_SIZE];
        brokk_publish_request r = publish_request("gone", NULL);
        r.id_out = id;
        r.id_out_cap = sizeof id;
        CHECK_OK(brokk_broker_publish_with(b, &r, "1", 1));
        CHECK_OK(brokk_broker_close(b, force ? 0 : wait_ms(), force, NULL));
        memset(id, ID_SENTINEL, sizeof id);
        CHECK_STATUS(brokk_broker_publish_with(b, &r, "2", 1), BROKK_STATUS_CLOSED);
        CHECK_STATUS(brokk_broker_publish(b, "gone", 4, "2", 1, NULL, id, sizeof id),
                     BROKK_STATUS_CLOSED); /* as brokk_broker_publish */
        CHECK_EQ(id[0], ID_SENTINEL); /* untouched: nothing was published */
        brokk_broker_free(b);
    }
}

static const test_case TESTS[] = {
    TEST_CASE(publish_null_arguments),
    TEST_CASE(publish_rejects_invalid_topics),
    TEST_CASE(publish_accepts_valid_topics),
    TEST_CASE(publish_rejects_invalid_utf8_topic),
    TEST_CASE(publish_uses_lengths_not_nul),
    TEST_CASE(publish_rejects_invalid_json),
    TEST_CASE(publish_accepts_any_json_document),
    TEST_CASE(publish_rejects_invalid_utf8_inside_json),
    TEST_CASE(publish_metadata_must_be_json_object),
    TEST_CASE(publish_metadata_invalid_utf8),
    TEST_CASE(publish_metadata_delivered_exactly),
    TEST_CASE(publish_payload_size_limit),
    TEST_CASE(publish_default_payload_limit_is_1mib),
    TEST_CASE(publish_returns_given_id),
    TEST_CASE(publish_rejects_invalid_ids),
    TEST_CASE(publish_rejects_non_utf8_id),
    TEST_CASE(publish_generates_unique_valid_ids),
    TEST_CASE(generated_ids_differ_across_brokers),
    TEST_CASE(publish_id_buffer_too_small),
    TEST_CASE(publish_id_out_may_be_null),
    TEST_CASE(publish_combined_errors_publish_nothing),
    TEST_CASE(publish_copies_its_inputs),
    TEST_CASE(publish_with_reuses_one_request),
    TEST_CASE(publish_with_options_like_publish),
    TEST_CASE(publish_with_id_out),
    TEST_CASE(publish_with_id_buffer_too_small),
    TEST_CASE(publish_with_null_arguments),
    TEST_CASE(publish_with_rejects_bad_input),
    TEST_CASE(publish_with_payload_size_limit),
    TEST_CASE(publish_with_after_close_returns_closed),
};

int main(int argc, char **argv) { return RUN_TESTS("test_publish", TESTS, argc, argv); }
