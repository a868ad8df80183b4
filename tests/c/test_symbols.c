/*
 * Every function brokk.h declares, referenced by address, so that a function missing from the
 * library fails this program at link time (librdkafka tests/0006-symbols.c). static_checks.sh
 * compares the SYM(...) names below with the header's declarations and fails on any
 * difference, so a new function cannot be added to the header without being listed here.
 *
 * The typed pointers pin each signature: under -Werror a changed parameter or return type is a
 * compile error here (an ABI change must also bump BROKK_ABI_VERSION).
 */
#define _GNU_SOURCE
#include "check.h"

#include <dlfcn.h>

typedef void (*any_fn)(void);

typedef struct symbol {
    const char *name;
    any_fn address;
} symbol;

#define SYM(f) { #f, (any_fn)f }

static const symbol SYMBOLS[] = {
    SYM(brokk_abi_version),
    SYM(brokk_broker_ack),
    SYM(brokk_broker_ack_batch),
    SYM(brokk_broker_add_listener),
    SYM(brokk_broker_close),
    SYM(brokk_broker_count),
    SYM(brokk_broker_count_group),
    SYM(brokk_broker_fetch),
    SYM(brokk_broker_fetch_batch),
    SYM(brokk_broker_take),
    SYM(brokk_broker_take_with),
    SYM(brokk_broker_take_until),
    SYM(brokk_broker_fetch_batch_until),
    SYM(brokk_broker_join_until),
    SYM(brokk_broker_peek),
    SYM(brokk_peek_result_count),
    SYM(brokk_peek_result_read),
    SYM(brokk_peek_result_free),
    SYM(brokk_cancel_new),
    SYM(brokk_cancel_new_checked),
    SYM(brokk_cancel_trigger),
    SYM(brokk_cancel_reset),
    SYM(brokk_cancel_is_cancelled),
    SYM(brokk_cancel_free),
    SYM(brokk_broker_notify_ready),
    SYM(brokk_broker_forget_ready),
    SYM(brokk_broker_free),
    SYM(brokk_broker_release),
    SYM(brokk_broker_join),
    SYM(brokk_broker_nack),
    SYM(brokk_broker_new),
    SYM(brokk_broker_publish),
    SYM(brokk_broker_publish_batch),
    SYM(brokk_broker_publish_with),
    SYM(brokk_broker_purge),
    SYM(brokk_broker_purge_group),
    SYM(brokk_broker_remove_listener),
    SYM(brokk_broker_set_log_callback),
    SYM(brokk_log_set_callback),
    SYM(brokk_broker_stats),
    SYM(brokk_broker_stats_json),
    SYM(brokk_broker_stats_prometheus),
    SYM(brokk_broker_store_view_json),
    SYM(brokk_broker_store_view_prometheus),
    SYM(brokk_broker_subscribe),
    SYM(brokk_broker_unsubscribe),
    SYM(brokk_delivery_free),
    SYM(brokk_delivery_message),
    SYM(brokk_last_error),
    SYM(brokk_message_attempt),
    SYM(brokk_message_delivery_id),
    SYM(brokk_message_group),
    SYM(brokk_message_id),
    SYM(brokk_message_metadata),
    SYM(brokk_message_parent_id),
    SYM(brokk_message_payload),
    SYM(brokk_message_priority),
    SYM(brokk_message_read),
    SYM(brokk_message_set_failure_reason),
    SYM(brokk_message_set_requeue_delay),
    SYM(brokk_message_subscription_id),
    SYM(brokk_message_timestamp_ms),
    SYM(brokk_message_topic),
    SYM(brokk_status_classify),
    SYM(brokk_status_str),
    SYM(brokk_string_free),
    SYM(brokk_topic_name_part),
    SYM(brokk_version),
    SYM(brokk_version_number),
};
#define N_SYMBOLS (sizeof SYMBOLS / sizeof SYMBOLS[0])

static void every_symbol_links(void) {
    CHECK_EQ(N_SYMBOLS, 69);
    for (size_t i = 0; i < N_SYMBOLS; i++) {
        if (SYMBOLS[i].address == NULL) FAILF("%s has no address", SYMBOLS[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(SYMBOLS[i].name, SYMBOLS[j].name) == 0)
                FAILF("%s is listed twice", SYMBOLS[i].name);
    }
}

/* The dynamic linker finds each one by name too, at the address the program linked. */
static void every_symbol_resolves_by_name(void) {
    for (size_t i = 0; i < N_SYMBOLS; i++) {
        void *p = dlsym(RTLD_DEFAULT, SYMBOLS[i].name);
        any_fn f;
        if (p == NULL) {
            FAILF("dlsym(%s) failed: %s", SYMBOLS[i].name, dlerror());
            continue;
        }
        memcpy(&f, &p, sizeof f); /* ISO C has no object-to-function pointer cast */
        if (f != SYMBOLS[i].address) FAILF("%s: dlsym address differs", SYMBOLS[i].name);
    }
}

static void signatures_are_pinned(void) {
    brokk_status (*p_new)(const char *, const brokk_broker_options *, brokk_broker **) =
        brokk_broker_new;
    void (*p_free)(brokk_broker *) = brokk_broker_free;
    void (*p_release)(brokk_broker *) = brokk_broker_release;
    brokk_status (*p_publish)(const brokk_broker *, const char *, size_t, const char *, size_t,
                              const brokk_publish_options *, char *, size_t) =
        brokk_broker_publish;
    brokk_status (*p_ack)(const brokk_broker *, uint64_t) = brokk_broker_ack;
    brokk_status (*p_nack)(const brokk_broker *, uint64_t, bool, uint64_t, const char *, size_t) =
        brokk_broker_nack;
    brokk_status (*p_join)(const brokk_broker *, uint64_t, uint64_t *) = brokk_broker_join;
    brokk_status (*p_close)(const brokk_broker *, uint64_t, bool, brokk_close_report *) =
        brokk_broker_close;
    brokk_status (*p_fetch)(const brokk_broker *, const char *, size_t, const brokk_fetch_options *,
                            uint64_t, brokk_delivery **) = brokk_broker_fetch;
    brokk_status (*p_fetch_batch)(const brokk_broker *, const char *, size_t,
                                  const brokk_fetch_options *, size_t, uint64_t, brokk_delivery **,
                                  size_t *) = brokk_broker_fetch_batch;
    brokk_status (*p_take)(const brokk_broker *, const char *, size_t, const char *, size_t, uint64_t,
                           char *, size_t, size_t *) = brokk_broker_take;
    brokk_status (*p_take_with)(const brokk_broker *, brokk_take_request *) =
        brokk_broker_take_with;
    brokk_status (*p_publish_with)(const brokk_broker *, const brokk_publish_request *,
                                   const char *, size_t) = brokk_broker_publish_with;
    brokk_status (*p_ack_batch)(const brokk_broker *, const uint64_t *, size_t, size_t *) =
        brokk_broker_ack_batch;
    brokk_status (*p_read)(const brokk_message *, brokk_message_fields *) = brokk_message_read;
    brokk_status (*p_requeue_delay)(const brokk_message *, uint64_t) =
        brokk_message_set_requeue_delay;
    const brokk_message *(*p_delivery_message)(const brokk_delivery *) = brokk_delivery_message;
    void (*p_delivery_free)(brokk_delivery *) = brokk_delivery_free;
    brokk_status (*p_count)(const brokk_broker *, const brokk_str *, size_t, uint64_t *) =
        brokk_broker_count;
    brokk_status (*p_purge)(const brokk_broker *, const brokk_str *, size_t, uint64_t *) =
        brokk_broker_purge;
    brokk_status (*p_count_group)(const brokk_broker *, const char *, size_t, const char *, size_t,
                                  uint64_t *) = brokk_broker_count_group;
    brokk_status (*p_purge_group)(const brokk_broker *, const char *, size_t, const char *, size_t,
                                  uint64_t *) = brokk_broker_purge_group;
    brokk_status (*p_publish_batch)(const brokk_broker *, const char *, size_t,
                                    const brokk_batch_message *, size_t, char *, size_t) =
        brokk_broker_publish_batch;
    int32_t (*p_priority)(const brokk_message *) = brokk_message_priority;
    brokk_str (*p_group)(const brokk_message *) = brokk_message_group;
    const char *(*p_last_error)(void) = brokk_last_error;
    brokk_status (*p_add_listener)(const brokk_broker *, const brokk_listener *, uint64_t *) =
        brokk_broker_add_listener;
    brokk_status (*p_remove_listener)(const brokk_broker *, uint64_t) =
        brokk_broker_remove_listener;
    brokk_str (*p_topic)(const brokk_message *) = brokk_message_topic;
    brokk_str (*p_payload)(const brokk_message *) = brokk_message_payload;
    brokk_str (*p_metadata)(const brokk_message *) = brokk_message_metadata;
    brokk_str (*p_id)(const brokk_message *) = brokk_message_id;
    brokk_str (*p_parent_id)(const brokk_message *) = brokk_message_parent_id;
    uint64_t (*p_delivery_id)(const brokk_message *) = brokk_message_delivery_id;
    uint64_t (*p_subscription_id)(const brokk_message *) = brokk_message_subscription_id;
    uint32_t (*p_attempt)(const brokk_message *) = brokk_message_attempt;
    uint64_t (*p_timestamp)(const brokk_message *) = brokk_message_timestamp_ms;
    brokk_status (*p_set_reason)(const brokk_message *, const char *, size_t) =
        brokk_message_set_failure_reason;
    brokk_status (*p_stats)(const brokk_broker *, brokk_stats *) = brokk_broker_stats;
    brokk_status (*p_stats_json)(const brokk_broker *, char **, size_t *) =
        brokk_broker_stats_json;
    brokk_status (*p_stats_prometheus)(const brokk_broker *, char **, size_t *) =
        brokk_broker_stats_prometheus;
    brokk_status (*p_store_view_json)(const brokk_broker *, char **, size_t *) =
        brokk_broker_store_view_json;
    brokk_status (*p_store_view_prometheus)(const brokk_broker *, char **, size_t *) =
        brokk_broker_store_view_prometheus;
    void (*p_string_free)(char *) = brokk_string_free;
    const char *(*p_status_str)(uint32_t) = brokk_status_str;
    brokk_status_class (*p_classify)(uint32_t) = brokk_status_classify;
    brokk_status (*p_subscribe)(const brokk_broker *, const char *, size_t, brokk_handler_cb,
                                void *, brokk_free_cb, const brokk_subscription_options *,
                                uint64_t *) = brokk_broker_subscribe;
    brokk_status (*p_unsubscribe)(const brokk_broker *, uint64_t) = brokk_broker_unsubscribe;
    const char *(*p_version)(void) = brokk_version;
    uint32_t (*p_version_number)(void) = brokk_version_number;
    uint32_t (*p_abi_version)(void) = brokk_abi_version;
    brokk_status (*p_topic_name_part)(const char *, size_t, size_t, char *, size_t, size_t *) =
        brokk_topic_name_part;
    brokk_status (*p_fetch_batch_until)(const brokk_broker *, const char *, size_t,
                                        const brokk_fetch_options *, size_t, uint64_t,
                                        const brokk_cancel *, brokk_delivery **, size_t *) =
        brokk_broker_fetch_batch_until;
    brokk_status (*p_take_until)(const brokk_broker *, const char *, size_t, const char *, size_t,
                                 uint64_t, const brokk_cancel *, char **, size_t *) =
        brokk_broker_take_until;
    brokk_status (*p_join_until)(const brokk_broker *, uint64_t, const brokk_cancel *, uint64_t *) =
        brokk_broker_join_until;
    brokk_status (*p_cancel_new)(brokk_cancel **) = brokk_cancel_new;
    brokk_status (*p_cancel_new_checked)(brokk_cancel_check_cb, void *, uint64_t, brokk_cancel **) =
        brokk_cancel_new_checked;
    brokk_status (*p_cancel_trigger)(const brokk_cancel *) = brokk_cancel_trigger;
    brokk_status (*p_cancel_reset)(const brokk_cancel *) = brokk_cancel_reset;
    bool (*p_cancel_is_cancelled)(const brokk_cancel *) = brokk_cancel_is_cancelled;
    void (*p_cancel_free)(brokk_cancel *) = brokk_cancel_free;
    brokk_status (*p_peek)(const brokk_broker *, const char *, size_t, const char *, size_t, size_t,
                           brokk_peek_result **) = brokk_broker_peek;
    size_t (*p_peek_count)(const brokk_peek_result *) = brokk_peek_result_count;
    brokk_status (*p_peek_read)(const brokk_peek_result *, size_t, brokk_peeked_fields *) =
        brokk_peek_result_read;
    void (*p_peek_free)(brokk_peek_result *) = brokk_peek_result_free;
    brokk_status (*p_notify_ready)(const brokk_broker *, const char *, size_t, const char *, size_t,
                                   brokk_ready_cb, void *, uint64_t *, brokk_readiness *) =
        brokk_broker_notify_ready;
    brokk_status (*p_forget_ready)(const brokk_broker *, const char *, size_t, const char *, size_t,
                                   uint64_t, bool *) = brokk_broker_forget_ready;
    brokk_status (*p_log_set_callback)(brokk_log_level, brokk_log_cb, void *, brokk_free_cb) =
        brokk_log_set_callback;
    brokk_status (*p_broker_set_log_callback)(const brokk_broker *, brokk_log_level, brokk_log_cb,
                                              void *, brokk_free_cb) = brokk_broker_set_log_callback;
    any_fn all[] = {
        (any_fn)p_new,         (any_fn)p_free, (any_fn)p_release,         (any_fn)p_publish,
        (any_fn)p_ack,         (any_fn)p_nack,           (any_fn)p_join,
        (any_fn)p_close,       (any_fn)p_last_error,     (any_fn)p_add_listener,
        (any_fn)p_remove_listener, (any_fn)p_topic,      (any_fn)p_payload,
        (any_fn)p_metadata,    (any_fn)p_id,             (any_fn)p_parent_id,
        (any_fn)p_delivery_id, (any_fn)p_subscription_id, (any_fn)p_attempt,
        (any_fn)p_timestamp,   (any_fn)p_set_reason,     (any_fn)p_stats,
        (any_fn)p_stats_json,  (any_fn)p_stats_prometheus, (any_fn)p_string_free,    (any_fn)p_status_str,
        (any_fn)p_store_view_json, (any_fn)p_store_view_prometheus,
        (any_fn)p_classify,    (any_fn)p_subscribe,      (any_fn)p_unsubscribe,
        (any_fn)p_version,     (any_fn)p_version_number, (any_fn)p_abi_version,
        (any_fn)p_fetch,       (any_fn)p_delivery_message, (any_fn)p_delivery_free,
        (any_fn)p_count,       (any_fn)p_purge,          (any_fn)p_publish_batch,
        (any_fn)p_count_group, (any_fn)p_purge_group,
        (any_fn)p_priority,    (any_fn)p_group,          (any_fn)p_requeue_delay,
        (any_fn)p_fetch_batch, (any_fn)p_ack_batch,      (any_fn)p_read,
        (any_fn)p_take,        (any_fn)p_take_with,      (any_fn)p_publish_with,
        (any_fn)p_topic_name_part, (any_fn)p_fetch_batch_until, (any_fn)p_take_until,
        (any_fn)p_join_until,  (any_fn)p_cancel_new,     (any_fn)p_cancel_new_checked,
        (any_fn)p_cancel_trigger, (any_fn)p_cancel_reset, (any_fn)p_cancel_is_cancelled,
        (any_fn)p_cancel_free, (any_fn)p_peek,         (any_fn)p_peek_count,
        (any_fn)p_peek_read,   (any_fn)p_peek_free,
        (any_fn)p_notify_ready, (any_fn)p_forget_ready,
        (any_fn)p_log_set_callback, (any_fn)p_broker_set_log_callback,
    };
    CHECK_EQ(sizeof all / sizeof all[0], N_SYMBOLS);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) CHECK(all[i] != NULL);
    /* A call through a pinned pointer, to be sure they are the real thing. */
    CHECK_EQ(p_abi_version(), BROKK_ABI_VERSION);
    CHECK_EQ(p_classify(BROKK_STATUS_CLOSED), BROKK_STATUS_CLASS_TERMINAL);
}

static const test_case TESTS[] = {
    TEST_CASE(every_symbol_links),
    TEST_CASE(every_symbol_resolves_by_name),
    TEST_CASE(signatures_are_pinned),
};

int main(int argc, char **argv) { return RUN_TESTS("test_symbols", TESTS, argc, argv); }
