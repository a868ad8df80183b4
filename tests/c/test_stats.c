/*
 * brokk_broker_stats and brokk_broker_stats_json: totals reconcile after join, gauges while
 * busy, the JSON snapshot parses (a strict little parser below) and agrees with the struct.
 */
#include "recorder.h"

/* ---- a strict JSON parser (RFC 8259 grammar), enough to check the snapshot --------------------- */

typedef enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jnode {
    jtype t;
    bool b;
    bool is_uint;             /* J_NUM: a plain non-negative integer */
    unsigned long long u;     /* its value */
    char *s;                  /* J_STR: raw contents, escapes kept */
    size_t n;                 /* J_ARR/J_OBJ: items */
    struct jnode *items;
    char **keys;              /* J_OBJ: raw keys */
} jnode;

typedef struct jparser {
    const char *p, *end;
    const char *err;
} jparser;

static void jws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jfail(jparser *j, const char *why) {
    if (!j->err) j->err = why;
    return false;
}

static bool jstring(jparser *j, char **out) {
    if (j->p >= j->end || *j->p != '"') return jfail(j, "expected string");
    const char *start = ++j->p;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) return jfail(j, "control character in string");
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end) return jfail(j, "truncated escape");
            char e = *j->p;
            if (e == 'u') {
                for (int i = 1; i <= 4; i++) {
                    char h = j->p + i < j->end ? j->p[i] : 0;
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return jfail(j, "bad \\u escape");
                }
                j->p += 4;
            } else if (!strchr("\"\\/bfnrt", e)) {
                return jfail(j, "bad escape");
            }
        }
        j->p++;
    }
    if (j->p >= j->end) return jfail(j, "unterminated string");
    size_t len = (size_t)(j->p - start);
    *out = malloc(len + 1);
    memcpy(*out, start, len);
    (*out)[len] = '\0';
    j->p++;
    return true;
}

static bool jvalue(jparser *j, jnode *n, int depth);

static bool jnumber(jparser *j, jnode *n) {
    const char *s = j->p;
    bool neg = false, frac = false;
    if (j->p < j->end && *j->p == '-') {
        neg = true;
        j->p++;
    }
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "bad number");
    if (*j->p == '0') {
        j->p++;
    } else {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        frac = true;
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "bad fraction");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        frac = true;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9') return jfail(j, "bad exponent");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
    }
    n->t = J_NUM;
    n->is_uint = !neg && !frac;
    if (n->is_uint) n->u = strtoull(s, NULL, 10);
    return true;
}

static bool jlit(jparser *j, const char *lit) {
    size_t len = strlen(lit);
    if ((size_t)(j->end - j->p) < len || memcmp(j->p, lit, len) != 0)
        return jfail(j, "bad literal");
    j->p += len;
    return true;
}

static bool jvalue(jparser *j, jnode *n, int depth) {
    memset(n, 0, sizeof *n);
    if (depth > 64) return jfail(j, "too deep");
    jws(j);
    if (j->p >= j->end) return jfail(j, "unexpected end");
    char c = *j->p;
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        n->t = obj ? J_OBJ : J_ARR;
        j->p++;
        jws(j);
        if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
            j->p++;
            return true;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                jws(j);
                if (!jstring(j, &key)) return false;
                jws(j);
                if (j->p >= j->end || *j->p != ':') {
                    free(key);
                    return jfail(j, "expected ':'");
                }
                j->p++;
            }
            n->items = realloc(n->items, (n->n + 1) * sizeof *n->items);
            if (obj) n->keys = realloc(n->keys, (n->n + 1) * sizeof *n->keys);
            if (obj) n->keys[n->n] = key;
            if (!jvalue(j, &n->items[n->n], depth + 1)) {
                n->n++;
                return false;
            }
            n->n++;
            jws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == (obj ? '}' : ']')) {
                j->p++;
                return true;
            }
            return jfail(j, "expected ',' or end of container");
        }
    }
    if (c == '"') {
        n->t = J_STR;
        return jstring(j, &n->s);
    }
    if (c == 't') {
        n->t = J_BOOL;
        n->b = true;
        return jlit(j, "true");
    }
    if (c == 'f') {
        n->t = J_BOOL;
        return jlit(j, "false");
    }
    if (c == 'n') {
        n->t = J_NULL;
        return jlit(j, "null");
    }
    return jnumber(j, n);
}

static void jfree(jnode *n) {
    for (size_t i = 0; i < n->n; i++) {
        jfree(&n->items[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->s);
}

/* Parses a whole document; on failure reports where and why. */
static bool jparse(const char *text, size_t len, jnode *out) {
    jparser j = {text, text + len, NULL};
    bool ok = jvalue(&j, out, 0);
    if (ok) {
        jws(&j);
        if (j.p != j.end) ok = jfail(&j, "trailing characters");
    }
    if (!ok) FAILF("invalid JSON at byte %zu: %s", (size_t)(j.p - text), j.err);
    return ok;
}

static jnode *jget(jnode *n, const char *key) {
    if (!n || n->t != J_OBJ) return NULL;
    jnode *found = NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->keys[i], key) == 0) {
            if (found) FAILF("duplicate key \"%s\"", key);
            found = &n->items[i];
        }
    return found;
}

/* The unsigned integer at obj[key], failing the test if it is missing or not one. */
static unsigned long long jnum(jnode *obj, const char *key) {
    jnode *v = jget(obj, key);
    if (!v || v->t != J_NUM || !v->is_uint) {
        FAILF("\"%s\" is missing or not a non-negative integer", key);
        return ~0ull;
    }
    return v->u;
}

/* The parser itself must be right for the test to mean anything. */
static void json_parser_self_test(void) {
    static const char *good[] = {"{}", "[]", "0", "-1.5e+3", "\"a\\u00e9\\n\"", "true",
                                 " {\"a\":[1,{\"b\":null}],\"c\":false} "};
    static const char *bad[] = {"", "{", "{\"a\"}", "[1,]", "01", "\"\x01\"", "tru", "{} {}",
                                "{'a':1}", "1.", "\"\\x\"", "[1 2]"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        jnode n;
        CHECK(jparse(good[i], strlen(good[i]), &n));
        jfree(&n);
    }
    unsigned before = atomic_load(&check_failures_);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jparser j = {bad[i], bad[i] + strlen(bad[i]), NULL};
        jnode n;
        bool ok = jvalue(&j, &n, 0);
        jws(&j);
        if (ok && j.p == j.end) FAILF("parser accepted invalid JSON \"%s\"", bad[i]);
        jfree(&n);
    }
    CHECK_EQ(atomic_load(&check_failures_), before);
}

/* ---- the tests ------------------------------------------------------------------------------- */

static brokk_verdict by_payload(void *ud, const brokk_message *m) {
    (void)ud;
    brokk_str p = brokk_message_payload(m);
    if (view_eq(p, "\"nack\"")) return BROKK_VERDICT_NACK;
    if (view_eq(p, "\"rq\"") && brokk_message_attempt(m) == 1) return BROKK_VERDICT_REQUEUE;
    return BROKK_VERDICT_ACK;
}

static const char *const KINDS[] = {"\"ack\"", "\"nack\"", "\"rq\""};

/* Three topics (two subscribed, one not), mixed verdicts, a listener. */
static brokk_broker *busy_broker(evlog *log, unsigned n) {
    /* Retention OFF: "s.none" (no group) counts unrouted instead of retaining. */
    brokk_broker *b = new_broker_retention(3, BROKK_RETENTION_OFF, 0);
    if (!b) return NULL;
    brokk_listener l = evlog_listener(log);
    uint64_t lid, s1, s2, s3;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    CHECK_OK(subscribe_simple(b, "s.a", by_payload, NULL, NULL, false, 1, &s1));
    CHECK_OK(subscribe_simple(b, "s.a", by_payload, NULL, NULL, false, 4, &s2));
    CHECK_OK(subscribe_simple(b, "s.b", by_payload, NULL, NULL, false, 2, &s3));
    for (unsigned i = 0; i < n; i++) {
        CHECK_OK(publish_str(b, "s.a", KINDS[i % 3]));
        CHECK_OK(publish_str(b, "s.b", KINDS[(i + 1) % 3]));
        if (i % 10 == 0) CHECK_OK(publish_str(b, "s.none", "{}"));
    }
    return b;
}

static void stats_reconcile_after_join(void) {
    evlog log;
    evlog_init(&log);
    unsigned n = scaled_count(300);
    brokk_broker *b = busy_broker(&log, n);
    if (!b) return;
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    unsigned unrouted = (n + 9) / 10;
    CHECK_EQ(s.published, 2 * n + unrouted);
    CHECK_EQ(s.unrouted, unrouted);
    /* s.a fans out to 2, s.b to 1; each "rq" is dispatched twice. */
    unsigned na[3] = {0, 0, 0}, nb[3] = {0, 0, 0};
    for (unsigned i = 0; i < n; i++) {
        na[i % 3]++;
        nb[(i + 1) % 3]++;
    }
    CHECK_EQ(s.processed, 2 * (na[0] + na[2]) + nb[0] + nb[2]);
    CHECK_EQ(s.failed, 2 * na[1] + nb[1]);
    CHECK_EQ(s.requeued, 2 * na[2] + nb[2]);
    CHECK_EQ(s.dispatched, s.processed + s.failed + s.requeued);
    CHECK_EQ(s.dropped, 0);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.topics, 3);
    CHECK_EQ(s.subscriptions, 3);
    CHECK_EQ(s.listeners, 1);
    CHECK_EQ(s.workers, 3);
    CHECK_EQ(s.workers_active, 0);
    CHECK_EQ(s.listener_events_dropped, 0);
    CHECK_EQ(s.groups, 3); /* each ungrouped subscription is a group of its own */
    CHECK_EQ(s.retained, 0);
    CHECK_EQ(s.retained_dropped, 0);
    CHECK_EQ(s.delayed, 0);
    CHECK_EQ(s.expired, 0);
    CHECK_EQ(s.dead_lettered, 0);
    CHECK_EQ(s.full_dropped, 0);
    /* The listener saw what the counters say. */
    CHECK_EQ(evlog_count(&log, EV_PUBLISH), s.published);
    CHECK_EQ(evlog_count(&log, EV_DISPATCHED), s.dispatched);
    CHECK_EQ(evlog_count(&log, EV_PROCESSED), s.processed);
    CHECK_EQ(evlog_count(&log, EV_FAILED), s.failed + s.requeued);
    /* Counters never go down; uptime is a gauge that does not run backwards. */
    brokk_stats t = stats_of(b);
    CHECK(t.uptime_ms >= s.uptime_ms);
    CHECK_EQ(t.published, s.published);
    brokk_broker_free(b);
    evlog_destroy(&log);
}

typedef struct blocker {
    gate g;
} blocker;

static brokk_verdict blocking_handler(void *ud, const brokk_message *m) {
    (void)m;
    gate_pass(&((blocker *)ud)->g);
    return BROKK_VERDICT_ACK;
}

static void stats_gauges_while_busy(void) {
    brokk_broker *b = new_broker(2);
    if (!b) return;
    blocker x;
    gate_init(&x.g);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "g", blocking_handler, &x, NULL, false, 1, &sid));
    CHECK_OK(publish_str(b, "g", "1"));
    CHECK(gate_wait_entered(&x.g, 1));
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "g", "1"));
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.in_flight, 1);
    CHECK_EQ(s.queued, 3);
    CHECK_EQ(s.workers_active, 1);
    CHECK_EQ(s.dispatched, 1);
    CHECK_EQ(s.processed, 0);
    CHECK_EQ(s.published, 4);
    char *json = NULL;
    size_t len = 0;
    if (CHECK_OK(brokk_broker_stats_json(b, &json, &len))) {
        jnode root;
        if (jparse(json, len, &root)) {
            jnode *tot = jget(&root, "totals"), *br = jget(&root, "broker");
            CHECK_EQ(jnum(tot, "in_flight"), 1);
            CHECK_EQ(jnum(tot, "queued"), 3);
            CHECK_EQ(jnum(br, "workers_active"), 1);
        }
        jfree(&root);
        brokk_string_free(json);
    }
    gate_open(&x.g);
    JOIN_OK(b);
    s = stats_of(b);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.workers_active, 0);
    CHECK_EQ(s.processed, 4);
    brokk_broker_free(b);
    gate_destroy(&x.g);
}

static void stats_bad_input(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    brokk_stats s;
    memset(&s, 0xAB, sizeof s);
    CHECK_STATUS(brokk_broker_stats(NULL, &s), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_stats(b, NULL), BROKK_STATUS_NULL_ARGUMENT);
    unsigned char *bytes = (unsigned char *)&s;
    for (size_t i = 0; i < sizeof s; i++)
        if (bytes[i] != 0xAB) {
            FAILF("stats_out written on failure");
            break;
        }
    char *json = (char *)"untouched";
    size_t len = 4242;
    CHECK_STATUS(brokk_broker_stats_json(NULL, &json, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_stats_json(b, NULL, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_stats_json(NULL, &json, NULL), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STREQ(json, "untouched");
    CHECK_EQ(len, 4242);
    brokk_broker_free(b);
}

static void stats_json_is_sane_and_agrees(void) {
    evlog log;
    evlog_init(&log);
    unsigned n = scaled_count(90);
    brokk_broker *b = busy_broker(&log, n);
    if (!b) return;
    JOIN_OK(b);
    brokk_stats s = stats_of(b);
    char *json = NULL;
    size_t len = 0;
    if (!CHECK_OK(brokk_broker_stats_json(b, &json, &len))) {
        brokk_broker_free(b);
        evlog_destroy(&log);
        return;
    }
    CHECK(json != NULL);
    CHECK_EQ(len, strlen(json));
    CHECK(strstr(json, "\"topics\"") && strstr(json, "\"totals\"") && strstr(json, "\"broker\""));
    jnode root;
    if (jparse(json, len, &root) && CHECK(root.t == J_OBJ)) {
        jnode *topics = jget(&root, "topics"), *tot = jget(&root, "totals"),
              *br = jget(&root, "broker");
        if (CHECK(topics && tot && br) && CHECK(topics->t == J_OBJ)) {
            CHECK_EQ(topics->n, 3);
            jnode *a = jget(topics, "s.a"), *bb = jget(topics, "s.b"),
                  *none = jget(topics, "s.none");
            CHECK(a && bb && none);
            CHECK_EQ(jnum(tot, "published"), s.published);
            CHECK_EQ(jnum(tot, "unrouted"), s.unrouted);
            CHECK_EQ(jnum(tot, "dispatched"), s.dispatched);
            CHECK_EQ(jnum(tot, "processed"), s.processed);
            CHECK_EQ(jnum(tot, "failed"), s.failed);
            CHECK_EQ(jnum(tot, "requeued"), s.requeued);
            CHECK_EQ(jnum(tot, "dropped"), s.dropped);
            CHECK_EQ(jnum(tot, "queued"), 0);
            CHECK_EQ(jnum(tot, "in_flight"), 0);
            CHECK_EQ(jnum(tot, "subscriptions"), 3);
            CHECK_EQ(jnum(br, "topics"), 3);
            CHECK_EQ(jnum(br, "subscriptions"), 3);
            CHECK_EQ(jnum(br, "listeners"), 1);
            CHECK_EQ(jnum(br, "workers"), 3);
            CHECK_EQ(jnum(br, "listener_events_dropped"), 0);
            (void)jnum(br, "uptime_ms");
            (void)jnum(br, "workers_active");
            if (a && bb && none) {
                CHECK_EQ(jnum(a, "subscriptions"), 2);
                CHECK_EQ(jnum(bb, "subscriptions"), 1);
                CHECK_EQ(jnum(none, "subscriptions"), 0);
                CHECK_EQ(jnum(a, "published"), n);
                CHECK_EQ(jnum(bb, "published"), n);
                CHECK_EQ(jnum(none, "unrouted"), (n + 9) / 10);
                CHECK_EQ(jnum(a, "published") + jnum(bb, "published") + jnum(none, "published"),
                         s.published);
                CHECK_EQ(jnum(a, "dispatched") + jnum(bb, "dispatched"), s.dispatched);
                CHECK_EQ(jnum(a, "dispatched"),
                         jnum(a, "processed") + jnum(a, "failed") + jnum(a, "requeued"));
            }
        }
    }
    jfree(&root);
    brokk_string_free(json);
    /* json_len_out may be NULL. */
    json = NULL;
    if (CHECK_OK(brokk_broker_stats_json(b, &json, NULL))) {
        CHECK(json != NULL && strlen(json) > 0);
        brokk_string_free(json);
    }
    brokk_broker_free(b);
    evlog_destroy(&log);
}

static void stats_json_of_empty_broker(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char *json = NULL;
    size_t len = 0;
    if (CHECK_OK(brokk_broker_stats_json(b, &json, &len))) {
        CHECK_EQ(len, strlen(json));
        jnode root;
        if (jparse(json, len, &root)) {
            jnode *topics = jget(&root, "topics");
            if (CHECK(topics && topics->t == J_OBJ)) CHECK_EQ(topics->n, 0);
            CHECK_EQ(jnum(jget(&root, "totals"), "published"), 0);
            CHECK_EQ(jnum(jget(&root, "broker"), "workers"), 1);
        }
        jfree(&root);
        brokk_string_free(json);
    }
    brokk_broker_free(b);
}

/* Each snapshot is the caller's own string; several can be alive and freed in any order. */
static void stats_json_strings_are_independent(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    char *j[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(publish_str(b, "ind", "1"));
        CHECK_OK(brokk_broker_stats_json(b, &j[i], NULL));
    }
    CHECK(j[0] && j[1] && j[2] && j[0] != j[1] && j[1] != j[2]);
    brokk_string_free(j[1]);
    brokk_broker_free(b); /* owned strings outlive the broker */
    if (j[0] && j[2]) CHECK(strstr(j[0], "\"ind\"") && strstr(j[2], "\"ind\""));
    brokk_string_free(j[2]);
    brokk_string_free(j[0]);
}

/* The JSON snapshot's consumer-group and retention fields (docs/c-api.md, "Statistics"). */
static void stats_json_groups_and_retention(void) {
    brokk_broker *b = new_broker_retention(2, BROKK_RETENTION_DROP_OLDEST, 2);
    if (!b) return;
    for (int i = 0; i < 5; i++) CHECK_OK(publish_str(b, "r1", "1"));
    uint64_t sid;
    brokk_subscription_options o;
    memset(&o, 0, sizeof o);
    CHECK_OK(brokk_broker_subscribe(b, "g", 1, by_payload, NULL, NULL, &o, &sid));
    CHECK_OK(brokk_broker_subscribe(b, "g", 1, by_payload, NULL, NULL, &o, &sid));
    o.group = "grp";
    o.group_len = 3;
    CHECK_OK(brokk_broker_subscribe(b, "g", 1, by_payload, NULL, NULL, &o, &sid));
    CHECK_OK(brokk_broker_subscribe(b, "g", 1, by_payload, NULL, NULL, &o, &sid));
    JOIN_OK(b);
    for (int round = 0; round < 2; round++) {
        char *json = NULL;
        size_t len = 0;
        if (!CHECK_OK(brokk_broker_stats_json(b, &json, &len))) break;
        jnode root;
        if (jparse(json, len, &root)) {
            jnode *topics = jget(&root, "topics"), *tot = jget(&root, "totals");
            jnode *r1 = jget(topics, "r1"), *g = jget(topics, "g");
            if (CHECK(r1 && g && tot)) {
                CHECK_EQ(jnum(r1, "retained"), round == 0 ? 2 : 0);
                CHECK_EQ(jnum(r1, "retained_dropped"), round == 0 ? 3 : 5);
                CHECK_EQ(jnum(r1, "groups"), 0);
                CHECK_EQ(jnum(r1, "published"), 5);
                CHECK_EQ(jnum(r1, "unrouted"), 0);
                CHECK_EQ(jnum(g, "groups"), 3); /* two anonymous, one named */
                CHECK_EQ(jnum(g, "subscriptions"), 4);
                CHECK_EQ(jnum(g, "retained"), 0);
                CHECK_EQ(jnum(tot, "groups"), 3);
                CHECK_EQ(jnum(tot, "retained"), jnum(r1, "retained"));
                CHECK_EQ(jnum(tot, "retained_dropped"), jnum(r1, "retained_dropped"));
                /* The struct has the same totals. */
                brokk_stats st = stats_of(b);
                CHECK_EQ(st.retained, jnum(tot, "retained"));
                CHECK_EQ(st.retained_dropped, jnum(tot, "retained_dropped"));
                CHECK_EQ(st.groups, jnum(tot, "groups"));
            }
        }
        jfree(&root);
        brokk_string_free(json);
        if (round == 0) {
            uint64_t purged = 0;
            brokk_str t = {"r1", 2};
            CHECK_OK(brokk_broker_purge(b, &t, 1, &purged));
            CHECK_EQ(purged, 2);
        }
    }
    brokk_broker_free(b);
}

/* The Prometheus text (docs/c-api.md, "Prometheus"): HELP and TYPE lines, one sample per topic
 * labelled with its name, the length, outputs untouched on failure, CLOSED after close. */
static void stats_prometheus_text(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "prom.a", "1"));
    CHECK_OK(publish_str(b, "prom-b", "1"));
    char *text = NULL;
    size_t len = 0;
    if (CHECK_OK(brokk_broker_stats_prometheus(b, &text, &len))) {
        CHECK_EQ(len, strlen(text));
        CHECK(len > 0 && text[len - 1] == '\n');
        CHECK(strstr(text, "# HELP brokk_messages_published_total ") != NULL);
        CHECK(strstr(text, "# TYPE brokk_messages_published_total counter\n") != NULL);
        CHECK(strstr(text, "\nbrokk_messages_published_total{topic=\"prom.a\"} 3\n") != NULL);
        CHECK(strstr(text, "\nbrokk_messages_published_total{topic=\"prom-b\"} 1\n") != NULL);
        CHECK(strstr(text, "# TYPE brokk_deliveries_queued gauge\n") != NULL);
        CHECK(strstr(text, "\nbrokk_topics 2\n") != NULL);
        CHECK(strstr(text, "\nbrokk_workers 1\n") != NULL);
        brokk_string_free(text);
    }
    /* text_len_out may be NULL. */
    text = NULL;
    if (CHECK_OK(brokk_broker_stats_prometheus(b, &text, NULL))) {
        CHECK(text != NULL && strstr(text, "brokk_uptime_seconds ") != NULL);
        brokk_string_free(text);
    }
    text = (char *)"untouched";
    len = 4242;
    CHECK_STATUS(brokk_broker_stats_prometheus(NULL, &text, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_stats_prometheus(b, NULL, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STREQ(text, "untouched");
    CHECK_EQ(len, 4242);
    brokk_close_report report;
    CHECK_OK(brokk_broker_close(b, 1000, false, &report));
    CHECK_STATUS(brokk_broker_stats_prometheus(b, &text, &len), BROKK_STATUS_CLOSED);
    CHECK_STREQ(text, "untouched");
    brokk_broker_free(b);
}

/* The store view (docs/c-api.md, "Store view"): every topic of the store with what it retains
 * and per group its deliveries by state, as JSON and Prometheus text; it makes no topic or
 * group; outputs untouched on failure, CLOSED after close. */
static void store_view_json_and_prometheus(void) {
    brokk_broker *b = new_broker(1);
    if (!b) return;
    for (int i = 0; i < 2; i++) CHECK_OK(publish_str(b, "sv.held", "1"));
    brokk_delivery *d = NULL;
    CHECK_OK(brokk_broker_fetch(b, "sv.jobs", 7, NULL, 0, &d)); /* makes the default group */
    CHECK(d == NULL);
    for (int i = 0; i < 3; i++) CHECK_OK(publish_str(b, "sv.jobs", "1"));
    CHECK_OK(brokk_broker_fetch(b, "sv.jobs", 7, NULL, 0, &d));
    CHECK(d != NULL);
    char *json = NULL;
    size_t len = 0;
    if (CHECK_OK(brokk_broker_store_view_json(b, &json, &len))) {
        CHECK_EQ(len, strlen(json));
        jnode root;
        if (jparse(json, len, &root)) {
            jnode *backend = jget(&root, "backend");
            CHECK(backend && backend->t == J_STR);
            jnode *topics = jget(&root, "topics");
            if (CHECK(topics && topics->t == J_OBJ)) CHECK_EQ(topics->n, 2);
            jnode *held = jget(topics, "sv.held"), *jobs = jget(topics, "sv.jobs");
            if (CHECK(held && jobs)) {
                CHECK_EQ(jnum(held, "retained"), 2);
                CHECK_EQ(jnum(held, "anonymous_groups"), 0);
                jnode *groups = jget(held, "groups");
                if (CHECK(groups && groups->t == J_OBJ)) CHECK_EQ(groups->n, 0);
                CHECK_EQ(jnum(jobs, "retained"), 0);
                jnode *g = jget(jget(jobs, "groups"), "default");
                if (CHECK(g)) {
                    CHECK_EQ(jnum(g, "ready"), 2);
                    CHECK_EQ(jnum(g, "delayed"), 0);
                    CHECK_EQ(jnum(g, "in_flight"), 1);
                }
                CHECK_EQ(jnum(jget(jobs, "anonymous"), "ready"), 0);
            }
            jfree(&root);
        }
        brokk_string_free(json);
    }
    char *text = NULL;
    if (CHECK_OK(brokk_broker_store_view_prometheus(b, &text, &len))) {
        CHECK_EQ(len, strlen(text));
        CHECK(len > 0 && text[len - 1] == '\n');
        CHECK(strstr(text, "# TYPE brokk_store_deliveries_ready gauge\n") != NULL);
        CHECK(strstr(text, "\nbrokk_store_deliveries_ready{topic=\"sv.jobs\",group=\"default\"} 2\n") != NULL);
        CHECK(strstr(text, "\nbrokk_store_deliveries_in_flight{topic=\"sv.jobs\",group=\"default\"} 1\n") != NULL);
        CHECK(strstr(text, "\nbrokk_store_messages_retained{topic=\"sv.held\"} 2\n") != NULL);
        brokk_string_free(text);
    }
    /* Looking made nothing: sv.held still has no group, so it still retains. */
    CHECK_OK(publish_str(b, "sv.held", "1"));
    uint64_t waiting = 0;
    brokk_str t = {"sv.held", 7};
    CHECK_OK(brokk_broker_count(b, &t, 1, &waiting));
    CHECK_EQ(waiting, 3);
    if (d) {
        CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(brokk_delivery_message(d))));
        brokk_delivery_free(d);
    }
    text = (char *)"untouched";
    len = 4242;
    CHECK_STATUS(brokk_broker_store_view_json(NULL, &text, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_store_view_json(b, NULL, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_store_view_prometheus(NULL, &text, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STATUS(brokk_broker_store_view_prometheus(b, NULL, &len), BROKK_STATUS_NULL_ARGUMENT);
    CHECK_STREQ(text, "untouched");
    CHECK_EQ(len, 4242);
    brokk_close_report report;
    CHECK_OK(brokk_broker_close(b, 0, true, &report));
    CHECK_STATUS(brokk_broker_store_view_json(b, &text, &len), BROKK_STATUS_CLOSED);
    CHECK_STATUS(brokk_broker_store_view_prometheus(b, &text, &len), BROKK_STATUS_CLOSED);
    CHECK_STREQ(text, "untouched");
    brokk_broker_free(b);
}

static const test_case TESTS[] = {
    TEST_CASE(json_parser_self_test),
    TEST_CASE(stats_reconcile_after_join),
    TEST_CASE(stats_gauges_while_busy),
    TEST_CASE(stats_bad_input),
    TEST_CASE(stats_json_is_sane_and_agrees),
    TEST_CASE(stats_json_of_empty_broker),
    TEST_CASE(stats_json_strings_are_independent),
    TEST_CASE(stats_json_groups_and_retention),
    TEST_CASE(stats_prometheus_text),
    TEST_CASE(store_view_json_and_prometheus),
};

int main(int argc, char **argv) { return RUN_TESTS("test_stats", TESTS, argc, argv); }
