/*
 * pipeline.c: brokk's main demo, a three-stage order pipeline on the C API.
 *
 *   main --publish--> "orders" --+--> transform (parse, price, upper-case) --publish--> "invoices"
 *                                 +--> audit (fan-out: its own copy of every order)
 *   "invoices" --> sink (manual ack) --> committer thread --brokk_broker_ack-->
 *   "jobs" (priorities, routed before any worker exists) --fetch--> two competing workers
 *
 * Handlers run on brokk's worker threads, the listener on brokk's listener thread, and the
 * committer on a thread of ours, so the live log interleaves; everything the stages learn goes
 * into `struct pipeline` and is printed, sorted, after brokk_broker_join.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, under -std=c11 */
#include <brokk.h>

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ORDER_COUNT 6
#define FLAKY_ORDER 3 /* fails on its first attempt, as if a service had timed out */
#define JSON_CAP 256

/* On failure, print what brokk says and give up. brokk_last_error() belongs to the calling
 * thread and is overwritten by its next failing call, so read it at once. */
static int report(brokk_status status, const char *what) {
    if (status == BROKK_STATUS_OK) return 1;
    fprintf(stderr, "%s failed: %s: %s\n", what, brokk_status_str(status), brokk_last_error());
    return 0;
}
static void check(brokk_status status, const char *what) {
    if (!report(status, what)) exit(EXIT_FAILURE);
}

/* ---- what the stages record, read by main after join ---------------------------------- */

struct order_record {
    uint32_t attempts;        /* the attempt on which transform succeeded; 0 = never */
    uint64_t transform_delivery, audit_delivery;
    char parent_id[BROKK_ID_BUFFER_SIZE]; /* the published id both deliveries copy */
    bool audited, committed;
    char invoice[JSON_CAP];
};

struct commit_job { /* what the sink hands to the committer: copies, not views */
    uint64_t delivery_id;
    char invoice_id[BROKK_ID_BUFFER_SIZE], invoice[JSON_CAP], metadata[JSON_CAP];
    struct commit_job *next;
};

struct pipeline {
    const brokk_broker *broker;  /* const: safe to share with every thread */
    pthread_mutex_t lock;        /* stages run on different worker threads */
    struct order_record orders[ORDER_COUNT + 1]; /* indexed by order number */
    pthread_cond_t queue_ready;  /* the committer's queue, under `lock` too */
    struct commit_job *head, *tail;
    bool stopping;
    int commit_failures;
};

/* A brokk_str is a view: not NUL-terminated, owned by brokk, valid only during the callback.
 * Copy it out (NUL-terminated) to keep it or to use string functions on it. */
static int copy_view(brokk_str s, char *buf, size_t cap) {
    if (s.len >= cap) return 0;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = '\0';
    return 1;
}

/* Finds `"key":` in a flat JSON object and returns what follows. Enough for this demo's
 * payloads; a real program would use a JSON parser. */
static const char *json_field(const char *json, const char *key) {
    char pattern[32];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = strstr(json, pattern);
    if (!p) return NULL;
    p += strlen(pattern);
    while (*p == ' ') p++;
    if (*p++ != ':') return NULL;
    while (*p == ' ') p++;
    return p;
}

/* The order number of an order or invoice payload, or 0 if it is not one of ours. */
static long order_number(const char *json) {
    const char *f = json_field(json, "order");
    long n = f ? strtol(f, NULL, 10) : 0;
    return n >= 1 && n <= ORDER_COUNT ? n : 0;
}

static long price_cents(const char *item) {
    static const struct { const char *item; long cents; } prices[] = {
        {"anvil", 2990}, {"rope", 425}, {"lantern", 1250},
        {"dynamite", 775}, {"magnet", 1999}, {"rocket", 14900},
    };
    for (size_t i = 0; i < sizeof prices / sizeof prices[0]; i++)
        if (strcmp(prices[i].item, item) == 0) return prices[i].cents;
    return -1;
}

/* Records why a delivery fails; listeners see it in on_failed. */
static brokk_verdict fail_delivery(const brokk_message *msg, brokk_verdict verdict, const char *why) {
    report(brokk_message_set_failure_reason(msg, why, strlen(why)), "brokk_message_set_failure_reason");
    return verdict;
}

/* ---- stage 1: transform "orders" into "invoices" (a worker thread) --------------------- */

static brokk_verdict transform_order(void *user_data, const brokk_message *msg) {
    struct pipeline *p = user_data;
    char order[JSON_CAP], item[32] = "";
    const char *f;
    if (!copy_view(brokk_message_payload(msg), order, sizeof order))
        return fail_delivery(msg, BROKK_VERDICT_NACK, "order too large");
    long number = order_number(order);
    long qty = (f = json_field(order, "qty")) ? strtol(f, NULL, 10) : 0;
    if ((f = json_field(order, "item")) && *f == '"') sscanf(f + 1, "%31[a-z]", item);
    long cents = price_cents(item);
    if (number == 0 || qty < 1 || cents < 0)
        return fail_delivery(msg, BROKK_VERDICT_NACK, "malformed order");

    uint32_t attempt = brokk_message_attempt(msg);
    if (number == FLAKY_ORDER && attempt == 1) /* REQUEUE: back of the queue, attempt 2 */
        return fail_delivery(msg, BROKK_VERDICT_REQUEUE, "inventory service timed out (simulated)");

    for (char *c = item; *c; c++) *c = (char)toupper((unsigned char)*c);
    long total = qty * cents;
    char invoice[JSON_CAP], metadata[JSON_CAP], id[32];
    snprintf(invoice, sizeof invoice,
             "{\"order\": %ld, \"item\": \"%s\", \"qty\": %ld, \"total\": %ld.%02ld}",
             number, item, qty, total / 100, total % 100);
    brokk_str parent = brokk_message_parent_id(msg); /* our ids are plain: safe inside JSON */
    snprintf(metadata, sizeof metadata, "{\"source_id\": \"%.*s\", \"source_delivery\": %" PRIu64 "}",
             (int)parent.len, parent.ptr, brokk_message_delivery_id(msg));
    snprintf(id, sizeof id, "invoice-%ld", number);

    /* Re-entrant publish: allowed from a handler (only join and non-forced close are not). */
    brokk_publish_options opts = {.id = id, .id_len = strlen(id),
                                  .metadata = metadata, .metadata_len = strlen(metadata)};
    brokk_status status = brokk_broker_publish(p->broker, "invoices", strlen("invoices"), invoice,
                                               strlen(invoice), &opts, NULL, 0);
    if (status != BROKK_STATUS_OK) return fail_delivery(msg, BROKK_VERDICT_NACK, brokk_last_error());

    pthread_mutex_lock(&p->lock);
    struct order_record *r = &p->orders[number];
    r->attempts = attempt;
    r->transform_delivery = brokk_message_delivery_id(msg);
    copy_view(parent, r->parent_id, sizeof r->parent_id);
    pthread_mutex_unlock(&p->lock);
    return BROKK_VERDICT_ACK; /* auto-ack subscription: the verdict settles it */
}

/* ---- fan-out: audit gets its own delivery of every order (a worker thread) ------------- */

static brokk_verdict audit_order(void *user_data, const brokk_message *msg) {
    struct pipeline *p = user_data;
    char order[JSON_CAP];
    long number = copy_view(brokk_message_payload(msg), order, sizeof order) ? order_number(order) : 0;
    if (number == 0) return fail_delivery(msg, BROKK_VERDICT_NACK, "unknown order");
    pthread_mutex_lock(&p->lock);
    p->orders[number].audited = true;
    p->orders[number].audit_delivery = brokk_message_delivery_id(msg);
    pthread_mutex_unlock(&p->lock);
    return BROKK_VERDICT_ACK;
}

/* ---- stage 2: sink on "invoices", manual ack (a worker thread) -------------------------- */

static brokk_verdict sink_invoice(void *user_data, const brokk_message *msg) {
    struct pipeline *p = user_data;
    struct commit_job *job = calloc(1, sizeof *job);
    if (!job || !copy_view(brokk_message_payload(msg), job->invoice, sizeof job->invoice) ||
        !copy_view(brokk_message_metadata(msg), job->metadata, sizeof job->metadata) ||
        !copy_view(brokk_message_parent_id(msg), job->invoice_id, sizeof job->invoice_id)) {
        free(job);
        return fail_delivery(msg, BROKK_VERDICT_NACK, "cannot copy invoice");
    }
    job->delivery_id = brokk_message_delivery_id(msg); /* all the committer needs to ack */
    pthread_mutex_lock(&p->lock);
    if (p->tail) p->tail->next = job; else p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->queue_ready);
    pthread_mutex_unlock(&p->lock);
    /* LATER: the delivery stays in flight until the committer acks it (join waits for that).
     * brokk registers it before calling us, so an ack that beats our return is fine too. */
    return BROKK_VERDICT_LATER;
}

/* The committer: our own thread, not brokk's. It commits (prints) and acks by delivery id. */
static void *committer_main(void *arg) {
    struct pipeline *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping) pthread_cond_wait(&p->queue_ready, &p->lock);
        struct commit_job *job = p->head;
        if (job) {
            p->head = job->next;
            if (!p->head) p->tail = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        if (!job) return NULL; /* stopping and drained */

        printf("committer: committed %s %s (metadata %s)\n", job->invoice_id, job->invoice,
               job->metadata);
        long number = order_number(job->invoice);
        pthread_mutex_lock(&p->lock);
        if (number != 0) {
            p->orders[number].committed = true;
            snprintf(p->orders[number].invoice, JSON_CAP, "%s", job->invoice);
        }
        pthread_mutex_unlock(&p->lock);
        if (!report(brokk_broker_ack(p->broker, job->delivery_id), "brokk_broker_ack"))
            p->commit_failures++; /* read by main after pthread_join */
        free(job);
    }
}

/* ---- the listener (brokk's single listener thread, one event at a time) ------------------ */

/* Only the listener thread writes these, so no lock; main reads them after join, which
 * returns only once every listener event has been delivered. */
struct listener_counts {
    unsigned long events, published, dispatched, processed, failed;
};

/* Every callback starts here: the listener sees each event once, in order. */
static struct listener_counts *tally(void *user_data) {
    struct listener_counts *c = user_data;
    c->events++;
    return c;
}
/* Printing from callbacks: printf locks stdout, so each line comes out whole. Keep it short:
 * a slow listener delays the other listeners (never deliveries). */
static void on_topic_created(void *user_data, const char *topic, size_t topic_len) {
    tally(user_data);
    printf("listener: topic \"%.*s\" created\n", (int)topic_len, topic);
}
static void on_subscribe(void *user_data, const char *topic, size_t topic_len, uint64_t id) {
    tally(user_data);
    printf("listener: subscription %" PRIu64 " on \"%.*s\"\n", id, (int)topic_len, topic);
}
static void on_failed(void *user_data, const brokk_message *msg, const char *reason, size_t reason_len,
                      bool requeued) {
    tally(user_data)->failed++;
    brokk_str id = brokk_message_parent_id(msg);
    printf("listener: FAILED %.*s (delivery %" PRIu64 ", attempt %" PRIu32 "): %.*s, requeued=%s\n",
           (int)id.len, id.ptr, brokk_message_delivery_id(msg), brokk_message_attempt(msg),
           (int)reason_len, reason, requeued ? "true" : "false");
}
static void on_publish(void *counts, const brokk_message *msg) { (void)msg; tally(counts)->published++; }
static void on_dispatched(void *counts, const brokk_message *msg) { (void)msg; tally(counts)->dispatched++; }
static void on_processed(void *counts, const brokk_message *msg) { (void)msg; tally(counts)->processed++; }
/* free_user_data: brokk calls it exactly once, after the listener's last callback. */
static void listener_release(void *user_data) {
    printf("listener released after %lu events\n", ((struct listener_counts *)user_data)->events);
    free(user_data);
}

/* ---- a prioritised work queue: two worker threads of ours compete (pull) ----------------- */

#define JOB_COUNT 8

struct job_queue {
    const brokk_broker *broker;
    pthread_mutex_t lock;
    int done;     /* jobs acked so far, by either worker */
    int failures;
};

struct worker {
    struct job_queue *queue;
    int number, taken;
    int32_t priorities[JOB_COUNT]; /* in the order this worker fetched them */
};

/* Fetch from the group "workers": both workers are members, so each job goes to exactly one of
 * them, highest priority first. A fetched delivery is ours until brokk_delivery_free; freeing
 * does not settle it, so ack first. */
static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct job_queue *q = w->queue;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        int finished = q->done == JOB_COUNT || q->failures > 0;
        pthread_mutex_unlock(&q->lock);
        if (finished) return NULL;
        brokk_delivery *delivery = NULL;
        /* An ack deadline: were this worker to die holding a job, the job would go back to the
         * group after 30 s instead of waiting for ever. */
        brokk_fetch_options fetch = {.group = "workers", .group_len = strlen("workers"),
                                     .ack_deadline_ms = 30000};
        brokk_status status = brokk_broker_fetch(q->broker, "jobs", strlen("jobs"), &fetch, 100, &delivery);
        if (!report(status, "brokk_broker_fetch")) {
            pthread_mutex_lock(&q->lock);
            q->failures++;
            pthread_mutex_unlock(&q->lock);
            return NULL;
        }
        if (!delivery) continue; /* nothing within 100 ms: look whether the other took the rest */
        const brokk_message *msg = brokk_delivery_message(delivery);
        brokk_str job = brokk_message_payload(msg);
        int32_t priority = brokk_message_priority(msg);
        printf("worker %d: %.*s (priority %" PRId32 ")\n", w->number, (int)job.len, job.ptr, priority);
        w->priorities[w->taken++] = priority;
        nanosleep(&(struct timespec){.tv_nsec = 3000000}, NULL); /* the "work": 3 ms */
        status = brokk_broker_ack(q->broker, brokk_message_delivery_id(msg));
        brokk_delivery_free(delivery);
        pthread_mutex_lock(&q->lock);
        if (report(status, "brokk_broker_ack")) q->done++; else q->failures++;
        pthread_mutex_unlock(&q->lock);
    }
}

/* Routes jobs before any worker exists (the topic retains them for the first group), then lets
 * two workers drain the queue. Returns whether every job was done in priority order. */
static int run_work_queue(const brokk_broker *broker) {
    static const struct { const char *job; int32_t priority; } jobs[JOB_COUNT] = {
        {"resize-thumbnails", 1}, {"send-invoice-emails", 5}, {"rebuild-search-index", 0},
        {"charge-cards", 9},      {"nightly-report", -1},     {"refund-order-3", 9},
        {"warm-cache", 0},        {"fraud-check", 5},
    };
    /* One batch: all jobs or none, one call. */
    char payloads[JOB_COUNT][64];
    brokk_batch_message batch[JOB_COUNT];
    memset(batch, 0, sizeof batch);
    for (int i = 0; i < JOB_COUNT; i++) {
        snprintf(payloads[i], sizeof payloads[i], "\"%s\"", jobs[i].job);
        batch[i].payload = payloads[i];
        batch[i].payload_len = strlen(payloads[i]);
        batch[i].options.priority = jobs[i].priority;
    }
    check(brokk_broker_publish_batch(broker, "jobs", strlen("jobs"), batch, JOB_COUNT, NULL, 0),
          "brokk_broker_publish_batch");
    brokk_str topic = {.ptr = "jobs", .len = strlen("jobs")};
    uint64_t waiting = 0;
    check(brokk_broker_count(broker, &topic, 1, &waiting), "brokk_broker_count");
    printf("jobs: %" PRIu64 " waiting, retained until the first worker's fetch\n", waiting);

    static struct job_queue q = {.lock = PTHREAD_MUTEX_INITIALIZER};
    q.broker = broker;
    struct worker workers[2] = {{.queue = &q, .number = 1}, {.queue = &q, .number = 2}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) != 0) return 0;
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);

    /* Each worker fetched one job at a time from one queue, so each saw priorities falling. */
    int ordered = 1;
    for (int i = 0; i < 2; i++)
        for (int j = 1; j < workers[i].taken; j++)
            if (workers[i].priorities[j] > workers[i].priorities[j - 1]) ordered = 0;
    printf("jobs: %d of %d done by 2 competing workers (%d + %d); each took its jobs highest "
           "priority first: %s\n", q.done, JOB_COUNT, workers[0].taken, workers[1].taken,
           ordered ? "yes" : "NO");
    return q.done == JOB_COUNT && q.failures == 0 && ordered &&
           workers[0].taken + workers[1].taken == JOB_COUNT;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void subscribe(struct pipeline *p, const char *topic, brokk_handler_cb handler, bool manual_ack) {
    /* concurrency 1 (the default): each stage handles its deliveries one at a time, in order.
     * No free_user_data: main owns `p` and outlives the broker. */
    brokk_subscription_options opts = {.manual_ack = manual_ack, .concurrency = 1};
    uint64_t id;
    check(brokk_broker_subscribe(p->broker, topic, strlen(topic), handler, p, NULL, &opts, &id),
          "brokk_broker_subscribe");
}

int main(void) {
    if (brokk_abi_version() != BROKK_ABI_VERSION) {
        fprintf(stderr, "built against brokk ABI %d, running with %" PRIu32 "\n", BROKK_ABI_VERSION,
                brokk_abi_version());
        return EXIT_FAILURE;
    }
    printf("brokk %s: order pipeline demo\n", brokk_version());

    brokk_broker_options options = {.worker_threads = 4}; /* zero fields mean defaults */
    brokk_broker *broker = NULL;
    check(brokk_broker_new("memory://", &options, &broker), "brokk_broker_new");
    /* static: handlers and the committer use it until the broker is freed and joined. */
    static struct pipeline p = {.lock = PTHREAD_MUTEX_INITIALIZER,
                                .queue_ready = PTHREAD_COND_INITIALIZER};
    p.broker = broker;

    /* The listener takes ownership of `counts` on success; we keep a borrowed pointer, valid
     * until brokk_broker_free runs listener_release. */
    struct listener_counts *counts = calloc(1, sizeof *counts);
    if (!counts) return EXIT_FAILURE;
    brokk_listener listener = {.on_publish = on_publish, .on_dispatched = on_dispatched,
                               .on_processed = on_processed, .on_failed = on_failed,
                               .on_subscribe = on_subscribe, .on_topic_created = on_topic_created,
                               .user_data = counts, .free_user_data = listener_release};
    uint64_t listener_id;
    brokk_status status = brokk_broker_add_listener(broker, &listener, &listener_id);
    if (status != BROKK_STATUS_OK) free(counts); /* a failed registration takes nothing */
    check(status, "brokk_broker_add_listener");

    pthread_t committer;
    if (pthread_create(&committer, NULL, committer_main, &p) != 0) return EXIT_FAILURE;
    subscribe(&p, "orders", transform_order, false);
    subscribe(&p, "orders", audit_order, false);
    subscribe(&p, "invoices", sink_invoice, true);
    /* join also waits for listener events, so the setup lines above print before we go on. */
    check(brokk_broker_join(broker, 10000, NULL), "brokk_broker_join");

    printf("\n-- live log: main, the listener and the committer interleave --\n");
    static const struct { const char *item; long qty; } orders[ORDER_COUNT] = {
        {"anvil", 2}, {"rope", 10}, {"lantern", 3}, {"dynamite", 12}, {"magnet", 1}, {"rocket", 1},
    };
    for (int i = 0; i < ORDER_COUNT; i++) {
        char payload[JSON_CAP], id[BROKK_ID_BUFFER_SIZE];
        snprintf(payload, sizeof payload, "{\"order\": %d, \"item\": \"%s\", \"qty\": %ld}", i + 1,
                 orders[i].item, orders[i].qty);
        /* Our own ids keep the story readable; with .id = NULL brokk generates one and writes
         * it to the id_out buffer (BROKK_ID_BUFFER_SIZE bytes), here NULL. */
        snprintf(id, sizeof id, "order-%d", i + 1);
        const char *metadata = "{\"channel\": \"web\"}";
        brokk_publish_options opts = {.id = id, .id_len = strlen(id),
                                      .metadata = metadata, .metadata_len = strlen(metadata)};
        printf("main: publishing %s %s\n", id, payload);
        check(brokk_broker_publish(broker, "orders", strlen("orders"), payload, strlen(payload), &opts,
                                   NULL, 0), "brokk_broker_publish");
    }

    /* Wait for the whole pipeline: every delivery settled (the committer's acks included)
     * and every listener event delivered. Bounded, so a stuck stage cannot hang the demo. */
    uint64_t remaining = 0;
    status = brokk_broker_join(broker, 10000, &remaining);
    if (status == BROKK_STATUS_TIMEOUT)
        fprintf(stderr, "join: %" PRIu64 " deliveries still outstanding\n", remaining);
    check(status, "brokk_broker_join");

    pthread_mutex_lock(&p.lock);
    p.stopping = true;
    pthread_cond_signal(&p.queue_ready);
    pthread_mutex_unlock(&p.lock);
    pthread_join(committer, NULL);
    printf("main: committer joined\n");

    printf("\n-- results, sorted by order --\n");
    int invoiced = 0;
    for (int n = 1; n <= ORDER_COUNT; n++) {
        const struct order_record *r = &p.orders[n];
        invoiced += r->committed;
        printf("order-%d: transform attempts=%" PRIu32 " audited=%s committed=%s %s\n", n, r->attempts,
               r->audited ? "yes" : "no", r->committed ? "yes" : "no", r->invoice);
    }
    printf("invoiced %d of %d orders\n", invoiced, ORDER_COUNT);
    printf("fan-out: %s went to transform as delivery %" PRIu64 " and to audit as delivery %" PRIu64
           ", both with parent id %s\n", p.orders[1].parent_id, p.orders[1].transform_delivery,
           p.orders[1].audit_delivery, p.orders[1].parent_id);
    printf("listener saw %lu events: published=%lu dispatched=%lu processed=%lu failed=%lu\n",
           counts->events, counts->published, counts->dispatched, counts->processed, counts->failed);

    brokk_stats stats;
    check(brokk_broker_stats(broker, &stats), "brokk_broker_stats");
    printf("stats: published=%" PRIu64 " unrouted=%" PRIu64 " dispatched=%" PRIu64
           " processed=%" PRIu64 " failed=%" PRIu64 " requeued=%" PRIu64 " dropped=%" PRIu64
           " in_flight=%" PRIu64 "\n", stats.published, stats.unrouted, stats.dispatched,
           stats.processed, stats.failed, stats.requeued, stats.dropped, stats.in_flight);
    printf("stats: topics=%" PRIu64 " subscriptions=%" PRIu64 " listeners=%" PRIu64 " workers=%" PRIu64
           " listener_events_dropped=%" PRIu64 "\n", stats.topics, stats.subscriptions, stats.listeners,
           stats.workers, stats.listener_events_dropped);
    char *json = NULL; /* owned by us: release with brokk_string_free, not free() */
    check(brokk_broker_stats_json(broker, &json, NULL), "brokk_broker_stats_json");
    printf("stats JSON: %s\n", json);
    brokk_string_free(json);

    printf("\n-- a prioritised work queue --\n");
    int jobs_ok = run_work_queue(broker);

    /* close stops new work and drains (nothing is left); free then releases everything. */
    brokk_close_report closed = {0};
    status = brokk_broker_close(broker, 5000, false, &closed);
    printf("close: %s (%" PRIu64 " deliveries left, %" PRIu64 " retained messages discarded)\n",
           brokk_status_str(status), closed.remaining, closed.retained_discarded);
    check(status, "brokk_broker_close");
    brokk_broker_free(broker); /* runs listener_release on this thread */

    int ok = invoiced == ORDER_COUNT && p.commit_failures == 0 && jobs_ok;
    printf("pipeline %s\n", ok ? "done" : "FAILED");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
