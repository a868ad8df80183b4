/*
 * Several processes on one store: a SQLite file, or one Redis prefix (run by the sqlite and redis
 * stages only; skipped on memory://).
 *
 * The parent makes a fresh db path (SQLite) or prefix (Redis) and forks CHILDREN children before it creates any broker
 * (a fork from a process with broker threads running is not something to rely on). Each child
 * opens its own broker on the file, publishes K messages (payload "cI-J", distinct per child),
 * and consumes the topic in one named group with fetch/ack until every child has published
 * (a counter in shared memory) and brokk_broker_count on the store reads 0. Each child writes
 * what it published ("P payload published-id") and processed ("C payload parent-id attempt")
 * to its own file. The parent waits for every child with a bound (killing and reaping any left
 * over, so nothing outlives the test), then checks that every message was processed exactly
 * once, by the id it was published under, and that published ids are distinct across processes.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, strdup */
#include "check.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#define CHILDREN 4
#define K 250
#define TOPIC "work"
#define GROUP "workers"

typedef struct shared_state {
    atomic_uint published; /* children that have published all K */
    atomic_uint failed;    /* children that gave up */
} shared_state;

/* Where the children write what they did: the db path (SQLite), or a file in a temp
 * directory of the test's own (Redis); "<base>.child<i>". */
static char db_path[450];

static void child_file(char *buf, size_t cap, unsigned child) {
    snprintf(buf, cap, "%s.child%u", db_path, child);
}

/* The child's body; returns its exit status (0: fine). Never returns into the test runner. */
static int child_main(unsigned me, const char *url, shared_state *sh) {
    char path[480];
    child_file(path, sizeof path, me);
    FILE *out = fopen(path, "w");
    if (!out) return 10;
    brokk_broker_options o;
    memset(&o, 0, sizeof o);
    o.worker_threads = 2;
    brokk_broker *b = NULL;
    if (!CHECK_OK(brokk_broker_new(url, &o, &b))) return 11;

    /* Joining the group first means every publish below is routed to it (no retention). */
    brokk_delivery *d = NULL;
    const brokk_fetch_options *fo = FOPTS(GROUP, strlen(GROUP));
    if (!CHECK_OK(brokk_broker_fetch(b, TOPIC, strlen(TOPIC), fo, 0, &d))) return 12;
    unsigned processed = 0;
    uint64_t end = mono_ms() + 4 * wait_ms();
    for (unsigned j = 0; j < K; j++) {
        char payload[64], id[BROKK_ID_BUFFER_SIZE];
        int n = snprintf(payload, sizeof payload, "\"c%u-%u\"", me, j);
        if (!CHECK_OK(brokk_broker_publish(b, TOPIC, strlen(TOPIC), payload, (size_t)n, NULL,
                                           id, sizeof id)))
            return 13;
        fprintf(out, "P %.*s %s\n", n - 2, payload + 1, id);
    }
    atomic_fetch_add(&sh->published, 1);

    for (;;) {
        if (d) {
            const brokk_message *m = brokk_delivery_message(d);
            brokk_str p = brokk_message_payload(m), parent = brokk_message_parent_id(m);
            fprintf(out, "C %.*s %.*s %u\n", p.len >= 2 ? (int)p.len - 2 : 0,
                    p.len >= 2 ? p.ptr + 1 : "", (int)parent.len, parent.ptr,
                    brokk_message_attempt(m));
            CHECK_OK(brokk_broker_ack(b, brokk_message_delivery_id(m)));
            brokk_delivery_free(d);
            d = NULL;
            processed++;
        } else if (atomic_load(&sh->published) == CHILDREN && count_of(b, TOPIC) == 0) {
            break; /* everyone has published and nothing waits in the file */
        } else if (atomic_load(&sh->failed) || mono_ms() > end) {
            FAILF("child %u: gave up after processing %u", me, processed);
            atomic_fetch_add(&sh->failed, 1);
            break;
        }
        if (!CHECK_OK(brokk_broker_fetch(b, TOPIC, strlen(TOPIC), fo, 20, &d))) break;
    }
    brokk_close_report r;
    CHECK_OK(brokk_broker_close(b, wait_ms(), false, &r));
    brokk_broker_free(b);
    fclose(out);
    return atomic_load(&check_failures_) ? 1 : 0;
}

typedef struct seen {
    unsigned published;    /* P lines */
    unsigned processed;    /* C lines with attempt 1 */
    unsigned redelivered;  /* C lines with attempt > 1 */
    char pub_id[BROKK_ID_BUFFER_SIZE];
} seen;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void four_processes_share_one_group(void) {
    if (!test_durable()) {
        test_skip("needs a store shared between processes (BROKK_TEST_URL=sqlite or redis://...)");
        return;
    }
    char url[450];
    char tmpdir[300] = "";
    if (test_redis()) {
        /* One prefix, one URL, for every child: they share the group through it. */
        if (!test_url(url, sizeof url, NULL)) return;
        const char *tmp = getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/brokk-cproc-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!CHECK(mkdtemp(tmpdir) != NULL)) return;
        snprintf(db_path, sizeof db_path, "%s/out", tmpdir);
    } else {
        if (!test_url(url, sizeof url, "?synchronous=normal")) return;
        /* url is "sqlite://" + absolute path + options */
        snprintf(db_path, sizeof db_path, "%s", url + strlen("sqlite://"));
        *strchr(db_path, '?') = '\0';
    }

    shared_state *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    if (!CHECK(sh != MAP_FAILED)) return;
    atomic_init(&sh->published, 0);
    atomic_init(&sh->failed, 0);

    pid_t pids[CHILDREN];
    unsigned started = 0;
    for (unsigned i = 0; i < CHILDREN; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) _exit(child_main(i, url, sh));
        if (!CHECK(pid > 0)) break;
        pids[started++] = pid;
    }

    /* Reap with a bound; kill and reap whatever is left. */
    uint64_t end = mono_ms() + 6 * wait_ms();
    unsigned live = started;
    bool reaped[CHILDREN] = {false};
    while (live > 0) {
        for (unsigned i = 0; i < started; i++) {
            if (reaped[i]) continue;
            int ws = 0;
            pid_t r = waitpid(pids[i], &ws, WNOHANG);
            if (r == 0) continue;
            reaped[i] = true;
            live--;
            if (r < 0)
                FAILF("waitpid(child %u): %s", i, strerror(errno));
            else if (WIFSIGNALED(ws))
                FAILF("child %u killed by signal %d", i, WTERMSIG(ws));
            else if (WEXITSTATUS(ws) != 0)
                FAILF("child %u exited with status %d", i, WEXITSTATUS(ws));
        }
        if (live == 0) break;
        if (mono_ms() > end) {
            FAILF("%u children still running after the bound; killing them", live);
            for (unsigned i = 0; i < started; i++)
                if (!reaped[i]) kill(pids[i], SIGKILL);
            for (unsigned i = 0; i < started; i++)
                if (!reaped[i]) waitpid(pids[i], NULL, 0);
            break;
        }
        sleep_ms(5);
    }
    munmap(sh, sizeof *sh);

    /* Read back what the children wrote. */
    static seen s[CHILDREN][K];
    memset(s, 0, sizeof s);
    static char *ids[CHILDREN * K];
    unsigned nids = 0, per_child[CHILDREN] = {0};
    for (unsigned i = 0; i < CHILDREN; i++) {
        char path[480], line[256];
        child_file(path, sizeof path, i);
        FILE *f = fopen(path, "r");
        if (!CHECK(f != NULL)) continue;
        while (fgets(line, sizeof line, f)) {
            char kind, id[BROKK_ID_BUFFER_SIZE];
            unsigned c, j, attempt = 0;
            if (sscanf(line, "%c c%u-%u %128s %u", &kind, &c, &j, id, &attempt) < 4 ||
                c >= CHILDREN || j >= K) {
                FAILF("child %u wrote a bad line: %s", i, line);
                continue;
            }
            seen *e = &s[c][j];
            if (kind == 'P') {
                e->published++;
                snprintf(e->pub_id, sizeof e->pub_id, "%s", id);
                if (nids < CHILDREN * K) ids[nids++] = strdup(id);
            } else if (attempt == 1) {
                e->processed++;
                per_child[i]++;
                if (e->pub_id[0] && strcmp(e->pub_id, id) != 0)
                    FAILF("c%u-%u processed with parent id %s, published as %s", c, j, id,
                          e->pub_id);
            } else {
                e->redelivered++;
            }
        }
        fclose(f);
        remove(path);
    }
    unsigned bad = 0, redelivered = 0;
    for (unsigned c = 0; c < CHILDREN; c++)
        for (unsigned j = 0; j < K; j++) {
            redelivered += s[c][j].redelivered;
            if (s[c][j].published != 1 || s[c][j].processed != 1) {
                if (bad++ < 10)
                    FAILF("c%u-%u published %u times, processed %u times (attempt 1)", c, j,
                          s[c][j].published, s[c][j].processed);
            }
        }
    CHECK_EQ(bad, 0);
    if (redelivered) printf("# note: %u redeliveries (attempt > 1)\n", redelivered);
    printf("# processed per child: %u %u %u %u\n", per_child[0], per_child[1], per_child[2],
           per_child[3]);
    /* Published ids are distinct across the processes. */
    CHECK_EQ(nids, CHILDREN * K);
    qsort(ids, nids, sizeof ids[0], cmp_str);
    for (unsigned i = 1; i < nids; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0) FAILF("published id %s given twice", ids[i]);
    for (unsigned i = 0; i < nids; i++) free(ids[i]);

    /* A broker opened afterwards sees an empty store. */
    brokk_broker *b = NULL;
    if (CHECK_OK(brokk_broker_new(url, NULL, &b))) {
        CHECK_EQ(count_of(b, NULL), 0);
        brokk_broker_free(b);
    }
    if (tmpdir[0]) (void)rmdir(tmpdir);
}

static const test_case TESTS[] = {
    TEST_CASE(four_processes_share_one_group),
};

int main(int argc, char **argv) {
    return RUN_TESTS("test_processes", TESTS, argc, argv);
}
