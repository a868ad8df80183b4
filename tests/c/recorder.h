/*
 * recorder.h: a handler (and matching listener callback) that copies everything a message view
 * shows into a growable, mutex-protected array, for tests that check what was delivered.
 */
#ifndef BROKK_TEST_RECORDER_H
#define BROKK_TEST_RECORDER_H

#include "check.h"

typedef struct rec {
    char *topic, *payload, *metadata, *id, *parent_id, *group; /* NUL-terminated copies */
    size_t payload_len, metadata_len;
    uint64_t delivery_id, subscription_id, timestamp_ms;
    uint32_t attempt;
    int32_t priority;
    pthread_t thread;
} rec;

typedef struct recorder {
    pthread_mutex_t m;
    rec *recs;
    size_t n, cap;
    brokk_verdict verdict; /* what recorder_handler returns */
    atomic_uint freed;     /* finaliser calls (recorder_free) */
} recorder;

static inline void recorder_init(recorder *r, brokk_verdict verdict) {
    pthread_mutex_init(&r->m, NULL);
    r->recs = NULL;
    r->n = r->cap = 0;
    r->verdict = verdict;
    atomic_init(&r->freed, 0);
}

static inline char *recorder_dup_(brokk_str v) {
    char *s = malloc(v.len + 1);
    if (v.len) memcpy(s, v.ptr, v.len);
    s[v.len] = '\0';
    return s;
}

static inline void recorder_add(recorder *r, const brokk_message *m) {
    rec x;
    brokk_str p = brokk_message_payload(m), md = brokk_message_metadata(m);
    x.topic = recorder_dup_(brokk_message_topic(m));
    x.payload = recorder_dup_(p);
    x.payload_len = p.len;
    x.metadata = recorder_dup_(md);
    x.metadata_len = md.len;
    x.id = recorder_dup_(brokk_message_id(m));
    x.parent_id = recorder_dup_(brokk_message_parent_id(m));
    x.group = recorder_dup_(brokk_message_group(m));
    x.priority = brokk_message_priority(m);
    x.delivery_id = brokk_message_delivery_id(m);
    x.subscription_id = brokk_message_subscription_id(m);
    x.timestamp_ms = brokk_message_timestamp_ms(m);
    x.attempt = brokk_message_attempt(m);
    x.thread = pthread_self();
    pthread_mutex_lock(&r->m);
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->recs = realloc(r->recs, r->cap * sizeof *r->recs);
    }
    r->recs[r->n++] = x;
    pthread_mutex_unlock(&r->m);
}

static inline size_t recorder_count(recorder *r) {
    pthread_mutex_lock(&r->m);
    size_t n = r->n;
    pthread_mutex_unlock(&r->m);
    return n;
}

static inline brokk_verdict recorder_handler(void *ud, const brokk_message *m) {
    recorder *r = ud;
    recorder_add(r, m);
    return r->verdict;
}

static inline void recorder_free(void *ud) { atomic_fetch_add(&((recorder *)ud)->freed, 1); }

static inline void recorder_destroy(recorder *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->recs[i].topic);
        free(r->recs[i].payload);
        free(r->recs[i].metadata);
        free(r->recs[i].id);
        free(r->recs[i].parent_id);
        free(r->recs[i].group);
    }
    free(r->recs);
    pthread_mutex_destroy(&r->m);
}

/* ---- a listener that logs every event ------------------------------------------------------ */

typedef enum ev_kind {
    EV_PUBLISH,
    EV_DISPATCHED,
    EV_PROCESSED,
    EV_FAILED,
    EV_SUBSCRIBE,
    EV_UNSUBSCRIBE,
    EV_TOPIC,
    EV_KINDS
} ev_kind;

typedef struct ev {
    ev_kind kind;
    char *topic, *id, *parent_id, *payload, *reason, *group; /* NULL where the event has none */
    uint64_t delivery_id, subscription_id;
    uint32_t attempt;
    int32_t priority;
    bool requeued;
    pthread_t thread;
} ev;

typedef struct evlog {
    pthread_mutex_t m;
    ev *evs;
    size_t n, cap;
    atomic_uint counts[EV_KINDS];
    atomic_uint freed;
} evlog;

static inline void evlog_init(evlog *l) {
    pthread_mutex_init(&l->m, NULL);
    l->evs = NULL;
    l->n = l->cap = 0;
    for (int i = 0; i < EV_KINDS; i++) atomic_init(&l->counts[i], 0);
    atomic_init(&l->freed, 0);
}

static inline void evlog_push_(evlog *l, ev *e) {
    e->thread = pthread_self();
    pthread_mutex_lock(&l->m);
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->evs = realloc(l->evs, l->cap * sizeof *l->evs);
    }
    l->evs[l->n++] = *e;
    pthread_mutex_unlock(&l->m);
    atomic_fetch_add(&l->counts[e->kind], 1);
}

static inline void evlog_message_(evlog *l, ev_kind kind, const brokk_message *m) {
    ev e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.topic = recorder_dup_(brokk_message_topic(m));
    e.id = recorder_dup_(brokk_message_id(m));
    e.parent_id = recorder_dup_(brokk_message_parent_id(m));
    e.payload = recorder_dup_(brokk_message_payload(m));
    e.group = recorder_dup_(brokk_message_group(m));
    e.priority = brokk_message_priority(m);
    e.delivery_id = brokk_message_delivery_id(m);
    e.subscription_id = brokk_message_subscription_id(m);
    e.attempt = brokk_message_attempt(m);
    evlog_push_(l, &e);
}

static inline void evlog_on_publish(void *ud, const brokk_message *m) {
    evlog_message_(ud, EV_PUBLISH, m);
}
static inline void evlog_on_dispatched(void *ud, const brokk_message *m) {
    evlog_message_(ud, EV_DISPATCHED, m);
}
static inline void evlog_on_processed(void *ud, const brokk_message *m) {
    evlog_message_(ud, EV_PROCESSED, m);
}
static inline void evlog_on_failed(void *ud, const brokk_message *m, const char *reason,
                                   size_t reason_len, bool requeued) {
    ev e;
    memset(&e, 0, sizeof e);
    e.kind = EV_FAILED;
    e.topic = recorder_dup_(brokk_message_topic(m));
    e.id = recorder_dup_(brokk_message_id(m));
    e.parent_id = recorder_dup_(brokk_message_parent_id(m));
    e.payload = recorder_dup_(brokk_message_payload(m));
    e.group = recorder_dup_(brokk_message_group(m));
    e.priority = brokk_message_priority(m);
    brokk_str r = {reason ? reason : "", reason_len};
    e.reason = recorder_dup_(r);
    e.delivery_id = brokk_message_delivery_id(m);
    e.subscription_id = brokk_message_subscription_id(m);
    e.attempt = brokk_message_attempt(m);
    e.requeued = requeued;
    evlog_push_(ud, &e);
}
static inline void evlog_sub_(evlog *l, ev_kind kind, const char *topic, size_t len,
                              uint64_t sid) {
    ev e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    brokk_str t = {topic, len};
    e.topic = recorder_dup_(t);
    e.subscription_id = sid;
    evlog_push_(l, &e);
}
static inline void evlog_on_subscribe(void *ud, const char *t, size_t n, uint64_t sid) {
    evlog_sub_(ud, EV_SUBSCRIBE, t, n, sid);
}
static inline void evlog_on_unsubscribe(void *ud, const char *t, size_t n, uint64_t sid) {
    evlog_sub_(ud, EV_UNSUBSCRIBE, t, n, sid);
}
static inline void evlog_on_topic(void *ud, const char *t, size_t n) {
    evlog_sub_(ud, EV_TOPIC, t, n, 0);
}
static inline void evlog_free(void *ud) { atomic_fetch_add(&((evlog *)ud)->freed, 1); }

/* A listener with every callback logging into l. */
static inline brokk_listener evlog_listener(evlog *l) {
    brokk_listener x;
    memset(&x, 0, sizeof x);
    x.on_publish = evlog_on_publish;
    x.on_dispatched = evlog_on_dispatched;
    x.on_processed = evlog_on_processed;
    x.on_failed = evlog_on_failed;
    x.on_subscribe = evlog_on_subscribe;
    x.on_unsubscribe = evlog_on_unsubscribe;
    x.on_topic_created = evlog_on_topic;
    x.user_data = l;
    x.free_user_data = evlog_free;
    return x;
}

/* Initialises log and adds to b a listener logging into it; returns the listener id. */
static inline uint64_t evlog_add(const brokk_broker *b, evlog *log) {
    evlog_init(log);
    brokk_listener l = evlog_listener(log);
    uint64_t lid = 0;
    CHECK_OK(brokk_broker_add_listener(b, &l, &lid));
    return lid;
}

static inline unsigned evlog_count(evlog *l, ev_kind k) { return atomic_load(&l->counts[k]); }

static inline void evlog_destroy(evlog *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->evs[i].topic);
        free(l->evs[i].id);
        free(l->evs[i].parent_id);
        free(l->evs[i].payload);
        free(l->evs[i].reason);
        free(l->evs[i].group);
    }
    free(l->evs);
    pthread_mutex_destroy(&l->m);
}

#endif /* BROKK_TEST_RECORDER_H */
