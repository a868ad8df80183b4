/*
 * shims.h: the C half of the Go binding (see shims.c). Declarations only: cgo forbids
 * definitions in the preamble of a Go file that uses //export.
 */
#ifndef BROKK_GO_SHIMS_H
#define BROKK_GO_SHIMS_H

#include <brokk.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* What every wrapped call returns: the status and, unless it is BROKK_STATUS_OK, a malloc'ed
 * copy of brokk_last_error() taken on the same OS thread right after the call (NULL only if
 * malloc failed). The Go side frees it. Go cannot read brokk_last_error() in a second cgo call:
 * its goroutine may have moved to another thread in between. */
typedef struct gbrokk_result {
    brokk_status status;
    char *last_error;
} gbrokk_result;

/* A non-NULL pointer for empty strings: brokk refuses NULL for required text, and Go's empty
 * strings have no data pointer. */
extern const char gbrokk_empty[1];

/* Which listener callbacks to install: bits of gbrokk_broker_add_listener's `events`. */
#define GBROKK_ON_PUBLISH 1u
#define GBROKK_ON_DISPATCHED 2u
#define GBROKK_ON_PROCESSED 4u
#define GBROKK_ON_FAILED 8u
#define GBROKK_ON_SUBSCRIBE 16u
#define GBROKK_ON_UNSUBSCRIBE 32u
#define GBROKK_ON_TOPIC_CREATED 64u

/* Wrappers of the status-returning functions: same arguments, same meaning, see brokk.h. */
gbrokk_result gbrokk_broker_new(const char *url, const brokk_broker_options *options,
                                brokk_broker **broker_out);
gbrokk_result gbrokk_broker_close(const brokk_broker *broker, uint64_t timeout_ms, bool force,
                                  brokk_close_report *report_out);
gbrokk_result gbrokk_broker_join_until(const brokk_broker *broker, uint64_t timeout_ms,
                                       const brokk_cancel *cancel, uint64_t *remaining_out);
gbrokk_result gbrokk_broker_publish_batch(const brokk_broker *broker, const char *topic,
                                          size_t topic_len, const brokk_batch_message *messages,
                                          size_t count, char *ids_out, size_t ids_out_cap);
gbrokk_result gbrokk_broker_unsubscribe(const brokk_broker *broker, uint64_t subscription_id);
gbrokk_result gbrokk_broker_ack(const brokk_broker *broker, uint64_t delivery_id);
gbrokk_result gbrokk_broker_nack(const brokk_broker *broker, uint64_t delivery_id, bool requeue,
                                 uint64_t requeue_delay_ms, const char *reason,
                                 size_t reason_len);
gbrokk_result gbrokk_broker_ack_batch(const brokk_broker *broker, const uint64_t *ids,
                                     size_t count, size_t *acked_out);
gbrokk_result gbrokk_broker_fetch_batch_until(const brokk_broker *broker, const char *topic,
                                              size_t topic_len, const brokk_fetch_options *options,
                                              size_t max, uint64_t timeout_ms,
                                              const brokk_cancel *cancel,
                                              brokk_delivery **deliveries_out, size_t *count_out);
gbrokk_result gbrokk_broker_count(const brokk_broker *broker, const brokk_str *topics,
                                  size_t topic_count, uint64_t *count_out);
gbrokk_result gbrokk_broker_purge(const brokk_broker *broker, const brokk_str *topics,
                                  size_t topic_count, uint64_t *purged_out);
gbrokk_result gbrokk_broker_count_group(const brokk_broker *broker, const char *topic, size_t topic_len,
                                        const char *group, size_t group_len, uint64_t *count_out);
gbrokk_result gbrokk_broker_purge_group(const brokk_broker *broker, const char *topic, size_t topic_len,
                                        const char *group, size_t group_len, uint64_t *purged_out);
gbrokk_result gbrokk_broker_peek(const brokk_broker *broker, const char *topic, size_t topic_len,
                                 const char *group, size_t group_len, size_t max,
                                 brokk_peek_result **result_out);
/* Every delivery of `result` into fields_out[0..count) (count: brokk_peek_result_count), in one
 * call; the views live as long as `result`. */
gbrokk_result gbrokk_peek_result_read_all(const brokk_peek_result *result,
                                          brokk_peeked_fields *fields_out, size_t count);
gbrokk_result gbrokk_broker_remove_listener(const brokk_broker *broker, uint64_t listener_id);
gbrokk_result gbrokk_broker_stats(const brokk_broker *broker, brokk_stats *stats_out);
gbrokk_result gbrokk_broker_stats_json(const brokk_broker *broker, char **json_out,
                                       size_t *json_len_out);
gbrokk_result gbrokk_broker_stats_prometheus(const brokk_broker *broker, char **text_out,
                                             size_t *text_len_out);
gbrokk_result gbrokk_broker_store_view_json(const brokk_broker *broker, char **json_out,
                                            size_t *json_len_out);
gbrokk_result gbrokk_broker_store_view_prometheus(const brokk_broker *broker, char **text_out,
                                                  size_t *text_len_out);
gbrokk_result gbrokk_message_set_failure_reason(const brokk_message *msg, const char *reason,
                                                size_t reason_len);
gbrokk_result gbrokk_message_set_requeue_delay(const brokk_message *msg, uint64_t delay_ms);

/* Registrations: `handle` is a handle of the Go side's table (handles.go), passed to brokk as
 * user_data (an integer cast to a pointer here, in C, never in Go) and deleted by the
 * free_user_data trampoline. */
gbrokk_result gbrokk_broker_subscribe(const brokk_broker *broker, const char *topic,
                                      size_t topic_len, uintptr_t handle,
                                      const brokk_subscription_options *options,
                                      uint64_t *subscription_id_out);
gbrokk_result gbrokk_broker_add_listener(const brokk_broker *broker, uintptr_t handle,
                                         uint32_t events, uint64_t *listener_id_out);

/* Log callbacks (log.go): with `set` false the callback is removed (NULL) and `handle` unused. */
gbrokk_result gbrokk_log_set_callback(bool set, uintptr_t handle);
gbrokk_result gbrokk_broker_set_log_callback(const brokk_broker *broker, bool set, uintptr_t handle);

/* Publish without a pointer from Go to a Go output: the options come as scalars (`has_options`
 * false means NULL options) and the id comes back in the result, so nothing Go passes has to
 * live on the heap (cgo moves every Go object whose address it passes to the heap). */
typedef struct gbrokk_publish_result {
    gbrokk_result result;
    size_t id_len; /* strlen(id) on BROKK_STATUS_OK; 0 (and id unset) if the caller gave the id */
    char id[BROKK_ID_BUFFER_SIZE];
} gbrokk_publish_result;

gbrokk_publish_result gbrokk_broker_publish(const brokk_broker *broker, const char *topic,
                                            size_t topic_len, const char *payload,
                                            size_t payload_len, bool has_options,
                                            const char *id, size_t id_len, const char *metadata,
                                            size_t metadata_len, int32_t priority);

/* A message view and every field of it (brokk_message_read): what a Go Message reads, so that
 * its accessors make no cgo call. The trampolines fill one on their C stack for the duration of
 * the callback; a fetched delivery's lives in the Go Delivery. */
typedef struct gbrokk_view {
    const brokk_message *message;
    brokk_message_fields fields;
} gbrokk_view;

/* An invalid view: a NULL message and empty fields (what a Go Message points to once its
 * callback has returned or its Delivery is closed). */
extern const gbrokk_view gbrokk_no_view;

/* Never defined: Go holds a gbrokk_view as a *gbrokk_view_ref. cgo makes a pointer to an
 * incomplete C type a pointer the garbage collector ignores (runtime/cgo.Incomplete), so a Go
 * Message, which holds nothing else, is allocated without pointers: the cheapest allocation
 * Go has, made once per handler call. */
typedef struct gbrokk_view_ref gbrokk_view_ref;

/* brokk_broker_fetch, then, if a delivery came, its view (brokk_delivery_message and
 * brokk_message_read): one cgo call per fetch, and no Go pointer passed (cgo would check the
 * memory it points to). `delivery` is NULL and `view` zero when none came in time. With a
 * `cancel` token it is brokk_broker_fetch_batch_until with max 1, brokk's only fetch that a
 * token interrupts. */
typedef struct gbrokk_fetch_result {
    gbrokk_result result;
    brokk_delivery *delivery;
    gbrokk_view view;
} gbrokk_fetch_result;

gbrokk_fetch_result gbrokk_broker_fetch(const brokk_broker *broker, const char *topic,
                                        size_t topic_len, const brokk_fetch_options *options,
                                        uint64_t timeout_ms, const brokk_cancel *cancel);

/* brokk_broker_take_until with both outputs returned by value, so that Go passes no pointer:
 * `payload` is brokk's NUL-terminated copy of the payload (the caller frees it with
 * brokk_string_free) and `len` its length, or NULL and 0 when nothing came in time or the call
 * failed. */
typedef struct gbrokk_take_result {
    gbrokk_result result;
    char *payload;
    size_t len;
} gbrokk_take_result;

gbrokk_take_result gbrokk_broker_take_until(const brokk_broker *broker, const char *topic,
                                            size_t topic_len, const char *group, size_t group_len,
                                            uint64_t timeout_ms, const brokk_cancel *cancel);

/* brokk_cancel_new with the token returned by value (NULL if it failed, which brokk_cancel_new
 * does only for a NULL output). */
brokk_cancel *gbrokk_cancel_new(void);

/* The view of each of `count` fetched deliveries into `views_out[i]` (brokk_delivery_message
 * and brokk_message_read): one cgo call for a whole batch of brokk_broker_fetch_batch.
 * `views_out` is an array of gbrokk_view, passed as void * so that cgo, which checks what a Go
 * pointer of a struct type with pointers points to field by field, leaves the Go memory (made
 * pointer-free on purpose, see fetch.go) alone. */
void gbrokk_deliveries_read(brokk_delivery *const *deliveries, size_t count, void *views_out);

#endif /* BROKK_GO_SHIMS_H */
