/*
 * Many threads at once: publishers into one topic with two subscriptions, acks from several
 * threads, subscriptions coming and going under load, stats read all along.
 */
#include "recorder.h"

enum { PUBLISHERS = 8 };

typedef struct tally {
    unsigned per_thread;
    atomic_uint *count; /* [PUBLISHERS * per_thread] */
    int last[PUBLISHERS]; /* ordered subscription only: last index seen per publisher */
    bool ordered;
    atomic_uint out_of_order, bad_payload, total;
} tally;

static void tally_init(tally *t, unsigned per_thread, bool ordered) {
    t->per_thread = per_thread;
    t->count = calloc((size_t)PUBLISHERS * per_thread, sizeof *t->count);
    for (unsigned i = 0; i < PUBLISHERS * per_thread; i++) atomic_init(&t->count[i], 0);
    for (int i = 0; i < PUBLISHERS; i++) t->last[i] = -1;
    t->ordered = ordered;
    atomic_init(&t->out_of_order, 0);
    atomic_init(&t->bad_payload, 0);
    atomic_init(&t->total, 0);
}

static brokk_verdict tally_handler(void *ud, const brokk_message *m) {
    tally *t = ud;
    char buf[64];
    int th = -1, i = -1;
    view_cstr(brokk_message_payload(m), buf, sizeof buf);
    if (sscanf(buf, "{\"t\":%d,\"i\":%d}", &th, &i) != 2 || th < 0 || th >= PUBLISHERS || i < 0 ||
        (unsigned)i >= t->per_thread) {
        atomic_fetch_add(&t->bad_payload, 1);
        return BROKK_VERDICT_ACK;
    }
    atomic_fetch_add(&t->count[(unsigned)th * t->per_thread + (unsigned)i], 1);
    if (t->ordered) { /* concurrency 1: one invocation at a time, so plain ints are safe */
        if (i <= t->last[th]) atomic_fetch_add(&t->out_of_order, 1);
        t->last[th] = i;
    }
    atomic_fetch_add(&t->total, 1);
    return BROKK_VERDICT_ACK;
}

typedef struct publisher {
    const brokk_broker *b;
    int index;
    unsigned n;
    unsigned failures;
} publisher;

static void *publish_thread(void *arg) {
    publisher *p = arg;
    for (unsigned i = 0; i < p->n; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"t\":%d,\"i\":%u}", p->index, i);
        if (publish_str(p->b, "mt", payload) != BROKK_STATUS_OK) p->failures++;
    }
    return NULL;
}

typedef struct reader {
    const brokk_broker *b;
    atomic_uint stop;
    unsigned reads, failures, went_down;
} reader;

/* Reads stats in a loop; counters must never go down. */
static void *stats_thread(void *arg) {
    reader *r = arg;
    brokk_stats prev;
    memset(&prev, 0, sizeof prev);
    while (!atomic_load(&r->stop)) {
        brokk_stats s;
        if (brokk_broker_stats(r->b, &s) != BROKK_STATUS_OK) {
            r->failures++;
            break;
        }
        if (s.published < prev.published || s.dispatched < prev.dispatched ||
            s.processed < prev.processed)
            r->went_down++;
        prev = s;
        char *json = NULL;
        if (brokk_broker_stats_json(r->b, &json, NULL) != BROKK_STATUS_OK) r->failures++;
        brokk_string_free(json);
        r->reads++;
        sleep_ms(1);
    }
    return NULL;
}

static void many_publishers_two_subscriptions(void) {
    brokk_broker *b = new_broker(4);
    if (!b) return;
    unsigned n = scaled_count(400);
    tally par, ord;
    tally_init(&par, n, false);
    tally_init(&ord, n, true);
    uint64_t s1, s2;
    CHECK_OK(subscribe_simple(b, "mt", tally_handler, &par, NULL, false, 4, &s1));
    CHECK_OK(subscribe_simple(b, "mt", tally_handler, &ord, NULL, false, 1, &s2));
    reader r = {b, 0, 0, 0, 0};
    pthread_t rt;
    pthread_create(&rt, NULL, stats_thread, &r);
    publisher p[PUBLISHERS];
    pthread_t t[PUBLISHERS];
    for (int i = 0; i < PUBLISHERS; i++) {
        p[i] = (publisher){b, i, n, 0};
        pthread_create(&t[i], NULL, publish_thread, &p[i]);
    }
    for (int i = 0; i < PUBLISHERS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(p[i].failures, 0);
    }
    JOIN_OK(b);
    atomic_store(&r.stop, 1);
    pthread_join(rt, NULL);
    CHECK_EQ(r.failures, 0);
    CHECK_EQ(r.went_down, 0);
    unsigned total = PUBLISHERS * n;
    tally *ts[2] = {&par, &ord};
    for (int k = 0; k < 2; k++) {
        CHECK_EQ(atomic_load(&ts[k]->bad_payload), 0);
        CHECK_EQ(atomic_load(&ts[k]->total), total);
        unsigned wrong = 0;
        for (unsigned i = 0; i < total; i++)
            if (atomic_load(&ts[k]->count[i]) != 1) wrong++;
        if (wrong) FAILF("subscription %d: %u messages not handled exactly once", k, wrong);
    }
    /* Concurrency 1 keeps each publisher's messages in the order it published them. */
    CHECK_EQ(atomic_load(&ord.out_of_order), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, total);
    CHECK_EQ(s.dispatched, 2 * total);
    CHECK_EQ(s.processed, 2 * total);
    CHECK_EQ(s.dispatched, s.processed + s.failed + s.requeued);
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.in_flight, 0);
    brokk_broker_free(b);
    free(par.count);
    free(ord.count);
}

/* Manual acks from several threads: the handler hands ids over, ackers settle them. */
typedef struct idqueue {
    pthread_mutex_t m;
    uint64_t *ids;
    size_t head, tail, cap;
    atomic_uint closed;
} idqueue;

static brokk_verdict handing_handler(void *ud, const brokk_message *m) {
    idqueue *q = ud;
    pthread_mutex_lock(&q->m);
    if (q->tail < q->cap) q->ids[q->tail++] = brokk_message_delivery_id(m);
    pthread_mutex_unlock(&q->m);
    return BROKK_VERDICT_LATER;
}

typedef struct acker {
    const brokk_broker *b;
    idqueue *q;
    unsigned acked, nacked, bad;
} acker;

static void *acker_thread(void *arg) {
    acker *a = arg;
    uint64_t end = mono_ms() + 4 * wait_ms();
    for (;;) {
        uint64_t id = 0;
        pthread_mutex_lock(&a->q->m);
        if (a->q->head < a->q->tail) id = a->q->ids[a->q->head++];
        pthread_mutex_unlock(&a->q->m);
        if (id == 0) {
            if (atomic_load(&a->q->closed) || mono_ms() > end) break;
            sleep_ms(1);
            continue;
        }
        /* Every third id is nacked for failure, the rest acked. */
        brokk_status st = id % 3 == 0 ? brokk_broker_nack(a->b, id, false, 0, "third", 5)
                                      : brokk_broker_ack(a->b, id);
        if (st != BROKK_STATUS_OK)
            a->bad++;
        else if (id % 3 == 0)
            a->nacked++;
        else
            a->acked++;
    }
    return NULL;
}

static void acks_from_many_threads(void) {
    enum { ACKERS = 4 };
    brokk_broker *b = new_broker(3);
    if (!b) return;
    unsigned n = scaled_count(1000);
    idqueue q;
    pthread_mutex_init(&q.m, NULL);
    q.ids = calloc(n, sizeof *q.ids);
    q.head = q.tail = 0;
    q.cap = n;
    atomic_init(&q.closed, 0);
    uint64_t sid;
    CHECK_OK(subscribe_simple(b, "acks", handing_handler, &q, NULL, true, 8, &sid));
    acker a[ACKERS];
    pthread_t t[ACKERS];
    for (int i = 0; i < ACKERS; i++) {
        a[i] = (acker){b, &q, 0, 0, 0};
        pthread_create(&t[i], NULL, acker_thread, &a[i]);
    }
    for (unsigned i = 0; i < n; i++) CHECK_OK(publish_str(b, "acks", "1"));
    JOIN_OK(b); /* returns once every delivery is acked or nacked */
    atomic_store(&q.closed, 1);
    unsigned acked = 0, nacked = 0;
    for (int i = 0; i < ACKERS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(a[i].bad, 0);
        acked += a[i].acked;
        nacked += a[i].nacked;
    }
    CHECK_EQ(acked + nacked, n);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.processed, acked);
    CHECK_EQ(s.failed, nacked);
    CHECK_EQ(s.dispatched, n);
    CHECK_EQ(s.in_flight, 0);
    brokk_broker_free(b);
    free(q.ids);
    pthread_mutex_destroy(&q.m);
}

/* Subscriptions come and go while messages flow: each finaliser runs exactly once, and the
 * counters still add up. */
typedef struct churner {
    const brokk_broker *b;
    unsigned rounds;
    atomic_uint *freed; /* [rounds] */
    atomic_uint handled;
    unsigned failures;
} churner;

typedef struct churn_sub {
    churner *c;
    unsigned round;
} churn_sub;

static brokk_verdict churn_handler(void *ud, const brokk_message *m) {
    (void)m;
    atomic_fetch_add(&((churn_sub *)ud)->c->handled, 1);
    return BROKK_VERDICT_ACK;
}

static void churn_free(void *ud) {
    churn_sub *s = ud;
    atomic_fetch_add(&s->c->freed[s->round], 1);
    free(s);
}

static void *churn_thread(void *arg) {
    churner *c = arg;
    for (unsigned r = 0; r < c->rounds; r++) {
        churn_sub *s = malloc(sizeof *s);
        s->c = c;
        s->round = r;
        uint64_t sid;
        if (subscribe_simple(c->b, "mt", churn_handler, s, churn_free, false, 1 + r % 3, &sid) !=
            BROKK_STATUS_OK) {
            c->failures++;
            free(s);
            continue;
        }
        sleep_ms(1);
        if (brokk_broker_unsubscribe(c->b, sid) != BROKK_STATUS_OK) c->failures++;
    }
    return NULL;
}

static void subscriptions_churn_under_load(void) {
    brokk_broker *b = new_broker(4);
    if (!b) return;
    unsigned n = scaled_count(300);
    tally stay;
    tally_init(&stay, n, true);
    uint64_t s1;
    CHECK_OK(subscribe_simple(b, "mt", tally_handler, &stay, NULL, false, 1, &s1));
    churner c;
    c.b = b;
    c.rounds = scaled_count(50);
    c.freed = calloc(c.rounds, sizeof *c.freed);
    for (unsigned i = 0; i < c.rounds; i++) atomic_init(&c.freed[i], 0);
    atomic_init(&c.handled, 0);
    c.failures = 0;
    pthread_t ct;
    pthread_create(&ct, NULL, churn_thread, &c);
    publisher p[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (publisher){b, i, n, 0};
        pthread_create(&t[i], NULL, publish_thread, &p[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(p[i].failures, 0);
    }
    pthread_join(ct, NULL);
    CHECK_EQ(c.failures, 0);
    JOIN_OK(b);
    /* Each churned subscription is finalised once its last invocation returned. */
    uint64_t end = mono_ms() + wait_ms();
    for (unsigned r = 0; r < c.rounds; r++)
        while (atomic_load(&c.freed[r]) == 0 && mono_ms() < end) sleep_ms(1);
    for (unsigned r = 0; r < c.rounds; r++)
        if (atomic_load(&c.freed[r]) != 1)
            FAILF("churned subscription %u finalised %u times", r, atomic_load(&c.freed[r]));
    CHECK_EQ(atomic_load(&stay.total), 4 * n);
    CHECK_EQ(atomic_load(&stay.out_of_order), 0);
    brokk_stats s = stats_of(b);
    CHECK_EQ(s.published, 4 * n);
    CHECK_EQ(s.subscriptions, 1);
    CHECK_EQ(s.dispatched, s.processed + s.failed + s.requeued);
    CHECK_EQ(s.processed, 4 * n + atomic_load(&c.handled));
    CHECK_EQ(s.queued, 0);
    CHECK_EQ(s.in_flight, 0);
    brokk_broker_free(b);
    for (unsigned r = 0; r < c.rounds; r++) CHECK_EQ(atomic_load(&c.freed[r]), 1);
    free(c.freed);
    free(stay.count);
}

static const test_case TESTS[] = {
    TEST_CASE(many_publishers_two_subscriptions),
    TEST_CASE(acks_from_many_threads),
    TEST_CASE(subscriptions_churn_under_load),
};

int main(int argc, char **argv) { return RUN_TESTS("test_threads", TESTS, argc, argv); }
