/*
 * Compiled, not run: brokk.h must stand alone (nothing included before it) as C11, C17 and
 * C++17 under -Wall -Wextra -Werror -pedantic (tests/c/static_checks.sh). The assertions below
 * check the header's own arithmetic at compile time.
 */
#include <brokk.h>

#ifdef __cplusplus
#define STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

STATIC_ASSERT(BROKK_VERSION_NUMBER ==
                  BROKK_VERSION_MAJOR * 1000000 + BROKK_VERSION_MINOR * 1000 + BROKK_VERSION_PATCH,
              "BROKK_VERSION_NUMBER packs MAJOR, MINOR and PATCH");
STATIC_ASSERT(BROKK_ID_BUFFER_SIZE == BROKK_ID_MAX_LEN + 1, "an id buffer holds the NUL");
STATIC_ASSERT(sizeof(brokk_status) == 4, "brokk_status is 32 bits");
STATIC_ASSERT(sizeof(brokk_status_class) == 4, "brokk_status_class is 32 bits");
STATIC_ASSERT(sizeof(brokk_verdict) == 4, "brokk_verdict is 32 bits");
STATIC_ASSERT(BROKK_WAIT_FOREVER == UINT64_MAX, "wait forever is the largest u64");

/* Uses each type once, so that a broken typedef fails here and not in a user's program. */
struct header_use {
    brokk_broker *broker;
    brokk_delivery *delivery;
    const brokk_message *message;
    brokk_close_report close_report;
    brokk_batch_message batch_message;
    brokk_retention_policy retention_policy;
    brokk_backpressure backpressure;
    brokk_fetch_options fetch_options;
    brokk_broker_options broker_options;
    brokk_publish_options publish_options;
    brokk_subscription_options subscription_options;
    brokk_listener listener;
    brokk_stats stats;
    brokk_message_fields message_fields;
    brokk_str str;
    brokk_handler_cb handler;
    brokk_free_cb free_cb;
    brokk_message_event_cb message_event;
    brokk_failed_event_cb failed_event;
    brokk_subscription_event_cb subscription_event;
    brokk_topic_event_cb topic_event;
    brokk_status status;
    brokk_status_class status_class;
    brokk_verdict verdict;
};

int header_c11_size(void);
int header_c11_size(void) { return (int)sizeof(struct header_use); }
