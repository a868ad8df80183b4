/*
 * two_process.c: two processes, one SQLite file. One publishes, the other consumes.
 *
 *   two_process publish /abs/path/queue.db [N]   publish N orders (default 5), then exit
 *   two_process consume /abs/path/queue.db [N]   fetch and ack N orders, then exit
 *   two_process demo    /abs/path/queue.db [N]   fork: the child consumes, the parent publishes
 *
 * The file is the queue: the publisher may run, and exit, before the consumer starts. Messages
 * published while the topic has no consumer group are retained in the file, and the first named
 * group to fetch ("billing" here) takes them over. A delivery fetched but not acked when its
 * process dies goes back to the group (attempt + 1) once its lease runs out.
 */
#define _POSIX_C_SOURCE 200809L
#include <brokk.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOPIC "orders"
#define GROUP "billing"

static void check(brokk_status st, const char *what) {
    if (st == BROKK_STATUS_OK) return;
    fprintf(stderr, "%s failed: %s: %s\n", what, brokk_status_str(st), brokk_last_error());
    exit(EXIT_FAILURE);
}

/* Each process opens its own broker on the same file. */
static brokk_broker *open_file(const char *path) {
    char url[4096];
    snprintf(url, sizeof url, "sqlite://%s", path); /* path is absolute: sqlite:///abs/... */
    brokk_broker *b = NULL;
    check(brokk_broker_new(url, NULL, &b), "brokk_broker_new");
    return b;
}

static void publish(const char *path, int n) {
    brokk_broker *b = open_file(path);
    for (int i = 1; i <= n; i++) {
        char json[64];
        int len = snprintf(json, sizeof json, "{\"order\":%d}", i);
        check(brokk_broker_publish(b, TOPIC, strlen(TOPIC), json, (size_t)len, NULL, NULL, 0),
              "publish"); /* committed to the file when publish returns */
    }
    printf("publisher %d: published %d orders\n", (int)getpid(), n);
    brokk_broker_free(b);
}

static int consume(const char *path, int n) {
    brokk_broker *b = open_file(path);
    brokk_fetch_options fo = {.group = GROUP, .group_len = strlen(GROUP)};
    int got = 0;
    while (got < n) {
        brokk_delivery *d = NULL;
        /* Waits up to 10 s; another process's publish wakes it within a few milliseconds. */
        check(brokk_broker_fetch(b, TOPIC, strlen(TOPIC), &fo, 10000, &d), "fetch");
        if (!d) break; /* nothing came: give up */
        const brokk_message *m = brokk_delivery_message(d);
        brokk_str payload = brokk_message_payload(m);
        printf("consumer %d: %.*s (attempt %u)\n", (int)getpid(), (int)payload.len, payload.ptr,
               brokk_message_attempt(m));
        check(brokk_broker_ack(b, brokk_message_delivery_id(m)), "ack"); /* gone from the file */
        brokk_delivery_free(d);
        got++;
    }
    printf("consumer %d: consumed %d of %d orders\n", (int)getpid(), got, n);
    brokk_broker_free(b);
    return got == n ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argv[2][0] != '/') {
        fprintf(stderr, "usage: %s publish|consume|demo /absolute/file.db [N]\n", argv[0]);
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 5;
    if (strcmp(argv[1], "publish") == 0) {
        publish(argv[2], n);
        return 0;
    }
    if (strcmp(argv[1], "consume") == 0) return consume(argv[2], n);
    if (strcmp(argv[1], "demo") != 0) return 2;
    /* Fork before creating any broker: a broker's threads do not survive fork. */
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
        int rc = consume(argv[2], n);
        fflush(stdout); /* _exit does not flush stdio */
        _exit(rc);
    }
    publish(argv[2], n);
    int ws = 0;
    waitpid(child, &ws, 0);
    int ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
    printf("two_process: %s\n", ok ? "done" : "consumer failed");
    return ok ? 0 : 1;
}
