/* Version numbers, status codes and their classes, brokk_last_error, header constants. */
#include "check.h"

static const uint32_t ALL_STATUSES[] = {
    BROKK_STATUS_OK,
    BROKK_STATUS_NULL_ARGUMENT,
    BROKK_STATUS_INVALID_UTF8,
    BROKK_STATUS_INVALID_JSON,
    BROKK_STATUS_INVALID_TOPIC,
    BROKK_STATUS_INVALID_ID,
    BROKK_STATUS_PAYLOAD_TOO_LARGE,
    BROKK_STATUS_INVALID_ARGUMENT,
    BROKK_STATUS_INVALID_URL,
    BROKK_STATUS_BUFFER_TOO_SMALL,
    BROKK_STATUS_WOULD_DEADLOCK,
    BROKK_STATUS_UNSUPPORTED_BACKEND,
    BROKK_STATUS_INVALID_GROUP,
    BROKK_STATUS_INCOMPATIBLE_STORE,
    BROKK_STATUS_CANNOT_OPEN_STORE,
    BROKK_STATUS_UNKNOWN_SUBSCRIPTION,
    BROKK_STATUS_UNKNOWN_DELIVERY,
    BROKK_STATUS_ALREADY_SETTLED,
    BROKK_STATUS_UNKNOWN_LISTENER,
    BROKK_STATUS_TIMEOUT,
    BROKK_STATUS_FULL,
    BROKK_STATUS_UNAVAILABLE,
    BROKK_STATUS_STORAGE_FAILED,
    BROKK_STATUS_OUTCOME_UNKNOWN,
    BROKK_STATUS_CANCELLED,
    BROKK_STATUS_CLOSED,
    BROKK_STATUS_FORKED,
    BROKK_STATUS_PANIC,
};
#define N_STATUSES (sizeof ALL_STATUSES / sizeof ALL_STATUSES[0])

static void version_string_matches_macros(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", BROKK_VERSION_MAJOR, BROKK_VERSION_MINOR,
             BROKK_VERSION_PATCH);
    const char *v = brokk_version();
    if (CHECK(v != NULL)) CHECK_STREQ(v, want);
    /* Static: the same pointer every time. */
    CHECK(brokk_version() == v);
}

static void version_number_is_packed(void) {
    CHECK_EQ(BROKK_VERSION_NUMBER,
             BROKK_VERSION_MAJOR * 1000000 + BROKK_VERSION_MINOR * 1000 + BROKK_VERSION_PATCH);
    CHECK_EQ(brokk_version_number(), BROKK_VERSION_NUMBER);
    CHECK_EQ(brokk_version_number() / 1000000, BROKK_VERSION_MAJOR);
    CHECK_EQ(brokk_version_number() / 1000 % 1000, BROKK_VERSION_MINOR);
    CHECK_EQ(brokk_version_number() % 1000, BROKK_VERSION_PATCH);
}

static void abi_version_matches(void) { CHECK_EQ(brokk_abi_version(), BROKK_ABI_VERSION); }

static void header_constants_are_consistent(void) {
    CHECK_EQ(BROKK_ID_BUFFER_SIZE, BROKK_ID_MAX_LEN + 1);
    CHECK_EQ(BROKK_ID_MAX_LEN, 128);
    CHECK_EQ(BROKK_TOPIC_MAX_LEN, 255);
    CHECK_EQ(BROKK_MAX_CONCURRENCY, 1024);
    CHECK_EQ(BROKK_DEFAULT_MAX_PAYLOAD, 1024 * 1024);
    CHECK_EQ(BROKK_DEFAULT_RETENTION_LIMIT, 100000);
    /* Retention policies are ABI: 0 is the default (REJECT). */
    CHECK_EQ(BROKK_RETENTION_REJECT, 0);
    CHECK_EQ(BROKK_RETENTION_DROP_OLDEST, 1);
    CHECK_EQ(BROKK_RETENTION_DROP_NEWEST, 2);
    CHECK_EQ(BROKK_RETENTION_OFF, 3);
    CHECK_EQ(sizeof(brokk_retention_policy), 4);
    CHECK_EQ(sizeof(brokk_close_report), 3 * sizeof(uint64_t));
    CHECK(BROKK_WAIT_FOREVER == UINT64_MAX);
    CHECK_EQ(sizeof(brokk_status), 4);
    CHECK_EQ(sizeof(brokk_status_class), 4);
    CHECK_EQ(sizeof(brokk_verdict), 4);
    /* Verdict numbers are ABI: they must not move. */
    CHECK_EQ(BROKK_VERDICT_ACK, 0);
    CHECK_EQ(BROKK_VERDICT_NACK, 1);
    CHECK_EQ(BROKK_VERDICT_REQUEUE, 2);
    CHECK_EQ(BROKK_VERDICT_LATER, 3);
    /* Status numbers are ABI too. */
    CHECK_EQ(BROKK_STATUS_OK, 0);
    CHECK_EQ(BROKK_STATUS_UNSUPPORTED_BACKEND, 11);
    CHECK_EQ(BROKK_STATUS_INVALID_GROUP, 12);
    CHECK_EQ(BROKK_STATUS_INCOMPATIBLE_STORE, 13);
    CHECK_EQ(BROKK_STATUS_CANNOT_OPEN_STORE, 14);
    CHECK_EQ(BROKK_STATUS_FULL, 201);
    CHECK_EQ(BROKK_STATUS_UNAVAILABLE, 202);
    CHECK_EQ(BROKK_STATUS_STORAGE_FAILED, 203);
    CHECK_EQ(BROKK_STATUS_UNKNOWN_SUBSCRIPTION, 100);
    CHECK_EQ(BROKK_STATUS_TIMEOUT, 200);
    CHECK_EQ(BROKK_STATUS_CLOSED, 300);
    CHECK_EQ(BROKK_STATUS_PANIC, 900);
    CHECK_EQ(BROKK_STATUS_OUTCOME_UNKNOWN, 204);
    CHECK_EQ(BROKK_STATUS_CANCELLED, 205);
    /* brokk_stats is twenty-four u64 fields. */
    CHECK_EQ(sizeof(brokk_stats), 24 * sizeof(uint64_t));
    CHECK_EQ(BROKK_DEFAULT_QUEUE_CAPACITY, 100000);
    CHECK_EQ(BROKK_BACKPRESSURE_BLOCK, 0);
    CHECK_EQ(BROKK_BACKPRESSURE_FAIL, 1);
    CHECK_EQ(BROKK_BACKPRESSURE_DROP, 2);
    CHECK_EQ(sizeof(brokk_backpressure), 4);
    CHECK_EQ(sizeof(brokk_str), sizeof(const char *) + sizeof(size_t));
}

static void status_str_nonempty_and_distinct(void) {
    for (size_t i = 0; i < N_STATUSES; i++) {
        const char *s = brokk_status_str(ALL_STATUSES[i]);
        if (!CHECK(s != NULL)) continue;
        if (!CHECK(s[0] != '\0')) FAILF("status %u has an empty description", ALL_STATUSES[i]);
        if (strcmp(s, "unknown status") == 0)
            FAILF("known status %u is described as \"unknown status\"", ALL_STATUSES[i]);
        for (size_t j = 0; j < i; j++) {
            const char *t = brokk_status_str(ALL_STATUSES[j]);
            if (t && strcmp(s, t) == 0)
                FAILF("statuses %u and %u share the description \"%s\"", ALL_STATUSES[i],
                      ALL_STATUSES[j], s);
        }
        /* Static lifetime: the same text on every call. */
        CHECK(brokk_status_str(ALL_STATUSES[i]) == s);
    }
}

static void status_str_unknown_numbers(void) {
    static const uint32_t unknown[] = {15, 16, 50, 99, 104, 150, 199, 206, 250, 299,
                                       302, 399, 400, 899, 901, 999, 1000, 0x7fffffffu,
                                       0xffffffffu};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = brokk_status_str(unknown[i]);
        if (CHECK(s != NULL) && strcmp(s, "unknown status") != 0)
            FAILF("brokk_status_str(%u) = \"%s\", want \"unknown status\"", unknown[i], s);
    }
}

static void status_classify_known(void) {
    for (size_t i = 0; i < N_STATUSES; i++) {
        uint32_t st = ALL_STATUSES[i];
        brokk_status_class want;
        if (st == BROKK_STATUS_OK)
            want = BROKK_STATUS_CLASS_OK;
        else if (st == BROKK_STATUS_TIMEOUT || st == BROKK_STATUS_FULL ||
                 st == BROKK_STATUS_UNAVAILABLE || st == BROKK_STATUS_STORAGE_FAILED ||
                 st == BROKK_STATUS_OUTCOME_UNKNOWN || st == BROKK_STATUS_CANCELLED)
            want = BROKK_STATUS_CLASS_TRANSIENT;
        else if (st == BROKK_STATUS_CLOSED || st == BROKK_STATUS_FORKED)
            want = BROKK_STATUS_CLASS_TERMINAL;
        else if (st == BROKK_STATUS_PANIC)
            want = BROKK_STATUS_CLASS_BUG;
        else
            want = BROKK_STATUS_CLASS_CALLER;
        brokk_status_class got = brokk_status_classify(st);
        if (got != want)
            FAILF("brokk_status_classify(%u) = %u, want %u", st, (unsigned)got, (unsigned)want);
    }
    /* Spot checks of the documented meanings. */
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_NULL_ARGUMENT), BROKK_STATUS_CLASS_CALLER);
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_WOULD_DEADLOCK), BROKK_STATUS_CLASS_CALLER);
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_ALREADY_SETTLED), BROKK_STATUS_CLASS_CALLER);
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_UNKNOWN_LISTENER), BROKK_STATUS_CLASS_CALLER);
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_INVALID_GROUP), BROKK_STATUS_CLASS_CALLER);
    CHECK_EQ(brokk_status_classify(BROKK_STATUS_FULL), BROKK_STATUS_CLASS_TRANSIENT);
}

/* The store statuses: a store the caller named wrongly is the caller's mistake (the same call
 * fails again); a store out of reach or failing I/O may work on a retry. Each has its own text. */
static void store_statuses_described_and_classified(void) {
    static const struct {
        uint32_t status;
        brokk_status_class want;
    } store[] = {
        {BROKK_STATUS_INCOMPATIBLE_STORE, BROKK_STATUS_CLASS_CALLER},
        {BROKK_STATUS_CANNOT_OPEN_STORE, BROKK_STATUS_CLASS_CALLER},
        {BROKK_STATUS_UNAVAILABLE, BROKK_STATUS_CLASS_TRANSIENT},
        {BROKK_STATUS_STORAGE_FAILED, BROKK_STATUS_CLASS_TRANSIENT},
        {BROKK_STATUS_OUTCOME_UNKNOWN, BROKK_STATUS_CLASS_TRANSIENT},
    };
    for (size_t i = 0; i < sizeof store / sizeof store[0]; i++) {
        uint32_t st = store[i].status;
        brokk_status_class got = brokk_status_classify(st);
        if (got != store[i].want)
            FAILF("brokk_status_classify(%u) = %u, want %u", st, (unsigned)got,
                  (unsigned)store[i].want);
        const char *s = brokk_status_str(st);
        if (!CHECK(s != NULL)) continue;
        if (s[0] == '\0' || strcmp(s, "unknown status") == 0)
            FAILF("brokk_status_str(%u) = \"%s\"", st, s);
        CHECK(brokk_status_str(st) == s); /* static */
        /* Distinct from every other known status, the neighbours it was numbered after included. */
        for (size_t j = 0; j < N_STATUSES; j++)
            if (ALL_STATUSES[j] != st && strcmp(brokk_status_str(ALL_STATUSES[j]), s) == 0)
                FAILF("statuses %u and %u share the description \"%s\"", st, ALL_STATUSES[j], s);
    }
    /* The numbers just past each range stay unknown. */
    CHECK_STREQ(brokk_status_str(15), "unknown status");
    CHECK_STREQ(brokk_status_str(206), "unknown status");
    CHECK_EQ(brokk_status_classify(15), BROKK_STATUS_CLASS_BUG);
    CHECK_EQ(brokk_status_classify(206), BROKK_STATUS_CLASS_BUG);
}

static void status_classify_unknown_is_bug(void) {
    static const uint32_t unknown[] = {15, 99, 104, 150, 199, 206, 299, 302, 399,
                                       500, 899, 901, 999, 0xffffffffu};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        brokk_status_class got = brokk_status_classify(unknown[i]);
        if (got != BROKK_STATUS_CLASS_BUG)
            FAILF("brokk_status_classify(%u) = %u, want BUG", unknown[i], (unsigned)got);
    }
}

/* brokk_last_error is per thread and "" before any failure on that thread. */
typedef struct {
    char before[256];
    char after[256];
    brokk_status st;
} last_error_probe;

static void *fresh_thread_last_error(void *arg) {
    last_error_probe *p = arg;
    const char *e = brokk_last_error();
    snprintf(p->before, sizeof p->before, "%s", e ? e : "(NULL)");
    brokk_broker *b = (brokk_broker *)0x1; /* sentinel, must stay untouched */
    p->st = brokk_broker_new("nonsense", NULL, &b);
    e = brokk_last_error();
    snprintf(p->after, sizeof p->after, "%s", e ? e : "(NULL)");
    return NULL;
}

static void *idle_thread_last_error(void *arg) {
    last_error_probe *p = arg;
    const char *e = brokk_last_error();
    snprintf(p->before, sizeof p->before, "%s", e ? e : "(NULL)");
    return NULL;
}

static void last_error_is_per_thread(void) {
    last_error_probe a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    pthread_t t;
    pthread_create(&t, NULL, fresh_thread_last_error, &a);
    pthread_join(t, NULL);
    CHECK_STREQ(a.before, "");
    CHECK_EQ(a.st, BROKK_STATUS_INVALID_URL);
    CHECK(a.after[0] != '\0');
    /* A failure on this thread does not show on another one. */
    brokk_broker *out = NULL;
    CHECK_STATUS(brokk_broker_new("ftp://x", NULL, &out), BROKK_STATUS_INVALID_URL);
    pthread_create(&t, NULL, idle_thread_last_error, &b);
    pthread_join(t, NULL);
    CHECK_STREQ(b.before, "");
    const char *mine = brokk_last_error();
    CHECK(mine != NULL && mine[0] != '\0');
}

static void last_error_describes_each_failure(void) {
    brokk_broker *out = NULL;
    char first[512];
    CHECK_STATUS(brokk_broker_new("ftp://x", NULL, &out), BROKK_STATUS_INVALID_URL);
    snprintf(first, sizeof first, "%s", brokk_last_error());
    CHECK_STATUS(brokk_broker_new(NULL, NULL, NULL), BROKK_STATUS_NULL_ARGUMENT);
    const char *second = brokk_last_error();
    CHECK(second != NULL && second[0] != '\0');
    if (second && strcmp(first, second) == 0)
        FAILF("two different failures gave the same last error \"%s\"", first);
}

static void string_free_null_is_noop(void) {
    brokk_string_free(NULL);
    brokk_broker_free(NULL);
    CHECK(1);
}

/* brokk_topic_name_part: the vectors every binding checks (core/src/names.rs). */
static void topic_name_part_vectors(void) {
    static const struct { const char *in; size_t max; const char *want; } V[] = {
        {"default", 255, "default"},          {"orders.eu-west1", 255, "orders.eu-west1"},
        {"my app", 255, "my_20app"},          {"billing(v2)", 255, "billing_28v2_29"},
        {"team/app", 255, "team_2fapp"},      {"a_b", 255, "a_5fb"},
        {"\xc3\xbc", 255, "_c3_bc"},           {"", 255, ""},
        {"abcdefghijklmnopqrstuvwxyz", 20, "ab_x8450deb1cdc382a2"},
    };
    char out[256];
    size_t len = 0;
    for (size_t i = 0; i < sizeof V / sizeof V[0]; i++) {
        if (CHECK_STATUS(brokk_topic_name_part(V[i].in, strlen(V[i].in), V[i].max, out, sizeof out, &len),
                         BROKK_STATUS_OK)) {
            CHECK_STREQ(out, V[i].want);
            CHECK_EQ(len, strlen(V[i].want));
        }
    }
    char small[4];
    CHECK_STATUS(brokk_topic_name_part("my app", 6, 255, small, sizeof small, &len),
                 BROKK_STATUS_BUFFER_TOO_SMALL);
    CHECK_EQ(len, 8);
    CHECK_STATUS(brokk_topic_name_part("\xff", 1, 255, out, sizeof out, &len), BROKK_STATUS_INVALID_UTF8);
    CHECK_STATUS(brokk_topic_name_part(NULL, 0, 255, out, sizeof out, &len), BROKK_STATUS_NULL_ARGUMENT);
}

static const test_case TESTS[] = {
    TEST_CASE(version_string_matches_macros),
    TEST_CASE(version_number_is_packed),
    TEST_CASE(abi_version_matches),
    TEST_CASE(header_constants_are_consistent),
    TEST_CASE(status_str_nonempty_and_distinct),
    TEST_CASE(status_str_unknown_numbers),
    TEST_CASE(status_classify_known),
    TEST_CASE(status_classify_unknown_is_bug),
    TEST_CASE(store_statuses_described_and_classified),
    TEST_CASE(last_error_is_per_thread),
    TEST_CASE(last_error_describes_each_failure),
    TEST_CASE(string_free_null_is_noop),
    TEST_CASE(topic_name_part_vectors),
};

int main(int argc, char **argv) { return RUN_TESTS("test_basics", TESTS, argc, argv); }
