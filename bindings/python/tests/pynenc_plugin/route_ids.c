/*
 * route_ids.c: a C producer routing pynenc invocation ids to brokk, for a pynenc worker whose
 * broker is brokk.pynenc_plugin.BrokkBroker to retrieve (tests/pynenc_plugin/test_cross_language.py).
 *
 *   route_ids URL APP_ID QUEUE PRIORITY ID...
 *
 * The mapping is the plugin's (brokk/pynenc_plugin.py): queue QUEUE of app APP_ID is the topic
 * "pynenc." N(APP_ID, 100) "__" N(QUEUE, what is left of 255 bytes), where N is
 * brokk_topic_name_part (any text onto [A-Za-z0-9_.-]); an invocation id is a message whose payload is the id as a JSON string;
 * pynenc's priority p (a float in [-100, 100]) is the brokk priority round(p * 1e6).
 * Exits 0 once every id is published (on SQLite: committed to the file).
 */
#include <brokk.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRIORITY_SCALE 1000000.0

static void check(brokk_status st, const char *what) {
    if (st == BROKK_STATUS_OK) return;
    fprintf(stderr, "route_ids: %s failed: %s: %s\n", what, brokk_status_str(st), brokk_last_error());
    exit(EXIT_FAILURE);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s URL APP_ID QUEUE PRIORITY ID...\n", argv[0]);
        return 2;
    }
    char topic[BROKK_TOPIC_MAX_LEN + 1] = "pynenc.";
    size_t topic_len = strlen(topic), part_len = 0;
    check(brokk_topic_name_part(argv[2], strlen(argv[2]), 100, topic + topic_len, sizeof topic - topic_len,
                                &part_len),
          "brokk_topic_name_part (app id)");
    topic_len += part_len;
    memcpy(topic + topic_len, "__", 3);
    topic_len += 2;
    check(brokk_topic_name_part(argv[3], strlen(argv[3]), BROKK_TOPIC_MAX_LEN - topic_len, topic + topic_len,
                                sizeof topic - topic_len, &part_len),
          "brokk_topic_name_part (queue)");
    topic_len += part_len;
    double priority = strtod(argv[4], NULL);
    if (!(priority >= -100.0 && priority <= 100.0)) {
        fprintf(stderr, "route_ids: priority must be within [-100, 100]\n");
        return 2;
    }
    brokk_publish_options opts = {0};
    opts.priority = (int32_t)lround(priority * PRIORITY_SCALE);

    brokk_broker *b = NULL;
    check(brokk_broker_new(argv[1], NULL, &b), "brokk_broker_new");
    for (int i = 5; i < argc; i++) {
        /* Invocation ids are UUIDs: no character needs escaping in a JSON string. */
        size_t id_len = strlen(argv[i]);
        char *json = malloc(id_len + 3);
        if (!json) return 1;
        json[0] = '"';
        memcpy(json + 1, argv[i], id_len);
        json[id_len + 1] = '"';
        json[id_len + 2] = '\0';
        check(brokk_broker_publish(b, topic, topic_len, json, id_len + 2, &opts, NULL, 0),
              "brokk_broker_publish");
        free(json);
    }
    /* Forced: a publisher has nothing to wait for, and its messages are already committed. */
    check(brokk_broker_close(b, 0, true, NULL), "brokk_broker_close");
    brokk_broker_free(b);
    printf("route_ids: routed %d ids to %s\n", argc - 5, topic);
    return 0;
}
