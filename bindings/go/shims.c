/*
 * shims.c: the C half of the Go binding, after wasmtime-go's shims.c.
 *
 * 1. Trampolines with the exact C signatures of brokk's callback typedefs. Each forwards to an
 *    //export'ed Go function (callbacks.go) with user_data turned back into the integer
 *    cgo.Handle it is. Go recovers panics there; nothing unwinds into brokk.
 * 2. Wrappers that make one brokk call and copy brokk_last_error() in the same cgo call, on
 *    the same OS thread (see gbrokk_result in shims.h).
 */
#include "shims.h"

#include <string.h>

#include "_cgo_export.h"

const char gbrokk_empty[1] = "";

const gbrokk_view gbrokk_no_view = {0};

/* ---- trampolines --------------------------------------------------------------------------- */

/* Fills `view` with the message and every field of it: the Go side then reads the fields
 * without a cgo call per accessor. brokk_message_read fails only for NULL, which brokk never
 * passes to a callback (its output is then untouched: zeroed here, all the same). */
static void read_view(const brokk_message *message, gbrokk_view *view) {
    view->message = message;
    if (brokk_message_read(message, &view->fields) != BROKK_STATUS_OK) {
        memset(&view->fields, 0, sizeof view->fields);
    }
}

static brokk_verdict handler_trampoline(void *user_data, const brokk_message *message) {
    gbrokk_view view;
    read_view(message, &view);
    return gbrokkHandle((uintptr_t)user_data, &view);
}

static void free_trampoline(void *user_data) {
    gbrokkRelease((uintptr_t)user_data);
}

static void on_message(void *user_data, uint32_t event, const brokk_message *message) {
    gbrokk_view view;
    read_view(message, &view);
    gbrokkOnMessage((uintptr_t)user_data, event, &view);
}

static void on_publish_trampoline(void *user_data, const brokk_message *message) {
    on_message(user_data, GBROKK_ON_PUBLISH, message);
}

static void on_dispatched_trampoline(void *user_data, const brokk_message *message) {
    on_message(user_data, GBROKK_ON_DISPATCHED, message);
}

static void on_processed_trampoline(void *user_data, const brokk_message *message) {
    on_message(user_data, GBROKK_ON_PROCESSED, message);
}

static void on_failed_trampoline(void *user_data, const brokk_message *message, const char *reason,
                                 size_t reason_len, bool requeued) {
    gbrokk_view view;
    read_view(message, &view);
    gbrokkOnFailed((uintptr_t)user_data, &view, (char *)reason, reason_len, requeued);
}

static void on_subscribe_trampoline(void *user_data, const char *topic, size_t topic_len,
                                    uint64_t subscription_id) {
    gbrokkOnSubscription((uintptr_t)user_data, GBROKK_ON_SUBSCRIBE, (char *)topic, topic_len,
                         subscription_id);
}

static void on_unsubscribe_trampoline(void *user_data, const char *topic, size_t topic_len,
                                      uint64_t subscription_id) {
    gbrokkOnSubscription((uintptr_t)user_data, GBROKK_ON_UNSUBSCRIBE, (char *)topic, topic_len,
                         subscription_id);
}

static void on_topic_created_trampoline(void *user_data, const char *topic, size_t topic_len) {
    gbrokkOnTopicCreated((uintptr_t)user_data, (char *)topic, topic_len);
}

/* ---- status and last error in one cgo call ----------------------------------------------- */

static gbrokk_result result(brokk_status status) {
    gbrokk_result r = {status, NULL};
    if (status != BROKK_STATUS_OK) {
        const char *text = brokk_last_error(); /* this thread's, read at once */
        size_t size = strlen(text) + 1;
        r.last_error = malloc(size);
        if (r.last_error) memcpy(r.last_error, text, size);
    }
    return r;
}

gbrokk_result gbrokk_broker_new(const char *url, const brokk_broker_options *options,
                                brokk_broker **broker_out) {
    return result(brokk_broker_new(url, options, broker_out));
}

gbrokk_result gbrokk_broker_close(const brokk_broker *broker, uint64_t timeout_ms, bool force,
                                  brokk_close_report *report_out) {
    return result(brokk_broker_close(broker, timeout_ms, force, report_out));
}

gbrokk_result gbrokk_broker_join_until(const brokk_broker *broker, uint64_t timeout_ms,
                                       const brokk_cancel *cancel, uint64_t *remaining_out) {
    return result(brokk_broker_join_until(broker, timeout_ms, cancel, remaining_out));
}

gbrokk_publish_result gbrokk_broker_publish(const brokk_broker *broker, const char *topic,
                                            size_t topic_len, const char *payload,
                                            size_t payload_len, bool has_options,
                                            const char *id, size_t id_len, const char *metadata,
                                            size_t metadata_len, int32_t priority) {
    gbrokk_publish_result r;
    brokk_publish_options options = {id, id_len, metadata, metadata_len, priority};
    /* A caller's id is the message's id: Go returns its own string, so brokk need not copy it. */
    bool want_id = !(has_options && id != NULL);
    r.result = result(brokk_broker_publish(broker, topic, topic_len, payload, payload_len,
                                           has_options ? &options : NULL, want_id ? r.id : NULL,
                                           want_id ? sizeof r.id : 0));
    r.id_len = want_id && r.result.status == BROKK_STATUS_OK ? strlen(r.id) : 0;
    return r;
}

gbrokk_result gbrokk_broker_publish_batch(const brokk_broker *broker, const char *topic,
                                          size_t topic_len, const brokk_batch_message *messages,
                                          size_t count, char *ids_out, size_t ids_out_cap) {
    return result(brokk_broker_publish_batch(broker, topic, topic_len, messages, count, ids_out,
                                             ids_out_cap));
}

gbrokk_result gbrokk_broker_subscribe(const brokk_broker *broker, const char *topic,
                                      size_t topic_len, uintptr_t handle,
                                      const brokk_subscription_options *options,
                                      uint64_t *subscription_id_out) {
    return result(brokk_broker_subscribe(broker, topic, topic_len, handler_trampoline,
                                         (void *)handle, free_trampoline, options,
                                         subscription_id_out));
}

gbrokk_result gbrokk_broker_unsubscribe(const brokk_broker *broker, uint64_t subscription_id) {
    return result(brokk_broker_unsubscribe(broker, subscription_id));
}

gbrokk_result gbrokk_broker_ack(const brokk_broker *broker, uint64_t delivery_id) {
    return result(brokk_broker_ack(broker, delivery_id));
}

gbrokk_result gbrokk_broker_nack(const brokk_broker *broker, uint64_t delivery_id, bool requeue,
                                 uint64_t requeue_delay_ms, const char *reason,
                                 size_t reason_len) {
    return result(brokk_broker_nack(broker, delivery_id, requeue, requeue_delay_ms, reason,
                                    reason_len));
}

gbrokk_fetch_result gbrokk_broker_fetch(const brokk_broker *broker, const char *topic,
                                        size_t topic_len, const brokk_fetch_options *options,
                                        uint64_t timeout_ms, const brokk_cancel *cancel) {
    gbrokk_fetch_result r;
    memset(&r, 0, sizeof r);
    if (cancel == NULL) {
        r.result = result(brokk_broker_fetch(broker, topic, topic_len, options, timeout_ms,
                                             &r.delivery));
    } else {
        size_t n = 0;
        r.result = result(brokk_broker_fetch_batch_until(broker, topic, topic_len, options, 1,
                                                         timeout_ms, cancel, &r.delivery, &n));
    }
    if (r.delivery != NULL) read_view(brokk_delivery_message(r.delivery), &r.view);
    return r;
}

gbrokk_result gbrokk_broker_fetch_batch_until(const brokk_broker *broker, const char *topic,
                                              size_t topic_len, const brokk_fetch_options *options,
                                              size_t max, uint64_t timeout_ms,
                                              const brokk_cancel *cancel,
                                              brokk_delivery **deliveries_out, size_t *count_out) {
    return result(brokk_broker_fetch_batch_until(broker, topic, topic_len, options, max,
                                                 timeout_ms, cancel, deliveries_out, count_out));
}

gbrokk_take_result gbrokk_broker_take_until(const brokk_broker *broker, const char *topic,
                                            size_t topic_len, const char *group, size_t group_len,
                                            uint64_t timeout_ms, const brokk_cancel *cancel) {
    gbrokk_take_result r = {{BROKK_STATUS_OK, NULL}, NULL, 0};
    r.result = result(brokk_broker_take_until(broker, topic, topic_len, group, group_len,
                                              timeout_ms, cancel, &r.payload, &r.len));
    return r;
}

brokk_cancel *gbrokk_cancel_new(void) {
    brokk_cancel *cancel = NULL;
    if (brokk_cancel_new(&cancel) != BROKK_STATUS_OK) return NULL;
    return cancel;
}

void gbrokk_deliveries_read(brokk_delivery *const *deliveries, size_t count, void *views_out) {
    gbrokk_view *views = views_out;
    for (size_t i = 0; i < count; i++) {
        read_view(brokk_delivery_message(deliveries[i]), &views[i]);
    }
}

gbrokk_result gbrokk_broker_ack_batch(const brokk_broker *broker, const uint64_t *ids,
                                     size_t count, size_t *acked_out) {
    return result(brokk_broker_ack_batch(broker, ids, count, acked_out));
}

gbrokk_result gbrokk_broker_peek(const brokk_broker *broker, const char *topic, size_t topic_len,
                                 const char *group, size_t group_len, size_t max,
                                 brokk_peek_result **result_out) {
    return result(brokk_broker_peek(broker, topic, topic_len, group, group_len, max, result_out));
}

gbrokk_result gbrokk_peek_result_read_all(const brokk_peek_result *peeked,
                                          brokk_peeked_fields *fields_out, size_t count) {
    for (size_t i = 0; i < count; i++) {
        brokk_status status = brokk_peek_result_read(peeked, i, &fields_out[i]);
        if (status != BROKK_STATUS_OK) return result(status);
    }
    return result(BROKK_STATUS_OK);
}

gbrokk_result gbrokk_broker_count(const brokk_broker *broker, const brokk_str *topics,
                                  size_t topic_count, uint64_t *count_out) {
    return result(brokk_broker_count(broker, topics, topic_count, count_out));
}

gbrokk_result gbrokk_broker_purge(const brokk_broker *broker, const brokk_str *topics,
                                  size_t topic_count, uint64_t *purged_out) {
    return result(brokk_broker_purge(broker, topics, topic_count, purged_out));
}

gbrokk_result gbrokk_broker_count_group(const brokk_broker *broker, const char *topic, size_t topic_len,
                                        const char *group, size_t group_len, uint64_t *count_out) {
    return result(brokk_broker_count_group(broker, topic, topic_len, group, group_len, count_out));
}

gbrokk_result gbrokk_broker_purge_group(const brokk_broker *broker, const char *topic, size_t topic_len,
                                        const char *group, size_t group_len, uint64_t *purged_out) {
    return result(brokk_broker_purge_group(broker, topic, topic_len, group, group_len, purged_out));
}

gbrokk_result gbrokk_broker_add_listener(const brokk_broker *broker, uintptr_t handle,
                                         uint32_t events, uint64_t *listener_id_out) {
    /* Only the callbacks Go set are installed: brokk skips NULL ones without crossing into Go. */
    brokk_listener listener = {0};
    if (events & GBROKK_ON_PUBLISH) listener.on_publish = on_publish_trampoline;
    if (events & GBROKK_ON_DISPATCHED) listener.on_dispatched = on_dispatched_trampoline;
    if (events & GBROKK_ON_PROCESSED) listener.on_processed = on_processed_trampoline;
    if (events & GBROKK_ON_FAILED) listener.on_failed = on_failed_trampoline;
    if (events & GBROKK_ON_SUBSCRIBE) listener.on_subscribe = on_subscribe_trampoline;
    if (events & GBROKK_ON_UNSUBSCRIBE) listener.on_unsubscribe = on_unsubscribe_trampoline;
    if (events & GBROKK_ON_TOPIC_CREATED) listener.on_topic_created = on_topic_created_trampoline;
    listener.user_data = (void *)handle;
    listener.free_user_data = free_trampoline;
    return result(brokk_broker_add_listener(broker, &listener, listener_id_out));
}

static void log_trampoline(void *user_data, brokk_log_level level, const char *target,
                           const char *message) {
    gbrokkLog((uintptr_t)user_data, level, (char *)target, (char *)message);
}

/* Every level: the Go side asks the slog.Logger whether it takes each record (its level may
 * change at any time; brokk's records are rare). */
gbrokk_result gbrokk_log_set_callback(bool set, uintptr_t handle) {
    if (!set) return result(brokk_log_set_callback(BROKK_LOG_TRACE, NULL, NULL, NULL));
    return result(
        brokk_log_set_callback(BROKK_LOG_TRACE, log_trampoline, (void *)handle, free_trampoline));
}

gbrokk_result gbrokk_broker_set_log_callback(const brokk_broker *broker, bool set, uintptr_t handle) {
    if (!set) return result(brokk_broker_set_log_callback(broker, BROKK_LOG_TRACE, NULL, NULL, NULL));
    return result(brokk_broker_set_log_callback(broker, BROKK_LOG_TRACE, log_trampoline,
                                                (void *)handle, free_trampoline));
}

gbrokk_result gbrokk_broker_remove_listener(const brokk_broker *broker, uint64_t listener_id) {
    return result(brokk_broker_remove_listener(broker, listener_id));
}

gbrokk_result gbrokk_broker_stats(const brokk_broker *broker, brokk_stats *stats_out) {
    return result(brokk_broker_stats(broker, stats_out));
}

gbrokk_result gbrokk_broker_stats_json(const brokk_broker *broker, char **json_out,
                                       size_t *json_len_out) {
    return result(brokk_broker_stats_json(broker, json_out, json_len_out));
}

gbrokk_result gbrokk_broker_stats_prometheus(const brokk_broker *broker, char **text_out,
                                             size_t *text_len_out) {
    return result(brokk_broker_stats_prometheus(broker, text_out, text_len_out));
}

gbrokk_result gbrokk_broker_store_view_json(const brokk_broker *broker, char **json_out,
                                            size_t *json_len_out) {
    return result(brokk_broker_store_view_json(broker, json_out, json_len_out));
}

gbrokk_result gbrokk_broker_store_view_prometheus(const brokk_broker *broker, char **text_out,
                                                  size_t *text_len_out) {
    return result(brokk_broker_store_view_prometheus(broker, text_out, text_len_out));
}

gbrokk_result gbrokk_message_set_failure_reason(const brokk_message *msg, const char *reason,
                                                size_t reason_len) {
    return result(brokk_message_set_failure_reason(msg, reason, reason_len));
}

gbrokk_result gbrokk_message_set_requeue_delay(const brokk_message *msg, uint64_t delay_ms) {
    return result(brokk_message_set_requeue_delay(msg, delay_ms));
}
