// brokk.h from C++17: included first and alone, compiled with -Wall -Wextra -Werror -pedantic,
// and used through its extern "C" declarations (a linkage mistake fails at link time here).
// Prints results in the suite's format; run by tests/c/run.sh like the C programs.
#include <brokk.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>

static_assert(std::is_same<std::underlying_type<brokk_status>::type, uint32_t>::value,
              "brokk_status is a uint32_t enum in C++");
static_assert(std::is_same<std::underlying_type<brokk_status_class>::type, uint32_t>::value,
              "brokk_status_class is a uint32_t enum in C++");
static_assert(std::is_same<brokk_verdict, uint32_t>::value, "brokk_verdict is a uint32_t");
static_assert(std::is_standard_layout<brokk_stats>::value && std::is_trivial<brokk_stats>::value,
              "brokk_stats is a plain C struct");
static_assert(sizeof(brokk_stats) == 24 * sizeof(uint64_t), "brokk_stats is 24 u64s");
static_assert(std::is_standard_layout<brokk_message_fields>::value &&
                  std::is_trivial<brokk_message_fields>::value,
              "brokk_message_fields is a plain C struct");

namespace {

int failures = 0;

bool check(bool ok, const char *what, int line) {
    if (!ok) {
        std::printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, line, what);
        failures++;
    }
    return ok;
}
#define CHECK(c) check((c), #c, __LINE__)

struct counts {
    std::atomic<int> handled{0};
    std::atomic<int> freed{0};
    std::string payload;  // written by the handler, read after join
};

extern "C" brokk_verdict on_message(void *user_data, const brokk_message *msg) {
    auto *c = static_cast<counts *>(user_data);
    brokk_str p = brokk_message_payload(msg);
    c->payload.assign(p.ptr, p.len);
    c->handled++;
    return BROKK_VERDICT_ACK;
}

extern "C" void on_free(void *user_data) { static_cast<counts *>(user_data)->freed++; }

void version_from_cpp() {
    std::string want = std::to_string(BROKK_VERSION_MAJOR) + "." +
                       std::to_string(BROKK_VERSION_MINOR) + "." +
                       std::to_string(BROKK_VERSION_PATCH);
    CHECK(want == brokk_version());
    CHECK(brokk_version_number() == BROKK_VERSION_NUMBER);
    CHECK(brokk_abi_version() == BROKK_ABI_VERSION);
}

void statuses_from_cpp() {
    // In C++ the status is a real enum; the functions still take any number.
    brokk_status st = BROKK_STATUS_CLOSED;
    CHECK(brokk_status_classify(st) == BROKK_STATUS_CLASS_TERMINAL);
    CHECK(std::strcmp(brokk_status_str(12345), "unknown status") == 0);
    brokk_broker *b = nullptr;
    CHECK(brokk_broker_new("nonsense", nullptr, &b) == BROKK_STATUS_INVALID_URL);
    CHECK(b == nullptr);
    CHECK(brokk_last_error()[0] != '\0');
}

void publish_and_deliver_from_cpp() {
    brokk_broker_options opts{};
    opts.worker_threads = 2;
    brokk_broker *b = nullptr;
    if (!CHECK(brokk_broker_new("memory://", &opts, &b) == BROKK_STATUS_OK)) return;
    counts c;
    brokk_subscription_options so{};
    uint64_t sid = 0;
    CHECK(brokk_broker_subscribe(b, "cpp", 3, on_message, &c, on_free, &so, &sid) ==
          BROKK_STATUS_OK);
    const std::string payload = R"({"from":"c++"})";
    char id[BROKK_ID_BUFFER_SIZE];
    CHECK(brokk_broker_publish(b, "cpp", 3, payload.data(), payload.size(), nullptr, id,
                               sizeof id) == BROKK_STATUS_OK);
    uint64_t remaining = 99;
    CHECK(brokk_broker_join(b, 5000ull * 20, &remaining) == BROKK_STATUS_OK);
    CHECK(remaining == 0);
    CHECK(c.handled == 1);
    CHECK(c.payload == payload);
    brokk_stats s{};
    CHECK(brokk_broker_stats(b, &s) == BROKK_STATUS_OK);
    CHECK(s.processed == 1);
    char *json = nullptr;
    size_t len = 0;
    CHECK(brokk_broker_stats_json(b, &json, &len) == BROKK_STATUS_OK);
    CHECK(json != nullptr && std::strlen(json) == len);
    brokk_string_free(json);
    brokk_close_report report{};
    CHECK(brokk_broker_close(b, BROKK_WAIT_FOREVER, false, &report) == BROKK_STATUS_OK);
    CHECK(report.remaining == 0 && report.dropped == 0);
    brokk_broker_free(b);
    CHECK(c.freed == 1);
}

struct test {
    const char *name;
    void (*fn)();
};

}  // namespace

int main(int argc, char **argv) {
    const test tests[] = {
        {"version_from_cpp", version_from_cpp},
        {"statuses_from_cpp", statuses_from_cpp},
        {"publish_and_deliver_from_cpp", publish_and_deliver_from_cpp},
    };
    int passed = 0, failed = 0;
    std::printf("# header_cpp\n");
    for (const test &t : tests) {
        if (argc > 1 && !std::strstr(t.name, argv[1])) continue;
        int before = failures;
        t.fn();
        if (failures == before) {
            passed++;
            std::printf("ok - %s\n", t.name);
        } else {
            failed++;
            std::printf("not ok - %s\n", t.name);
        }
    }
    std::printf("header_cpp: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
