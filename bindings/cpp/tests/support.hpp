// support.hpp: what the C++ tests share: scaled waits (never timing assertions), a thread-safe
// record of what handlers and listeners saw, and a callable that counts its own destruction.
#ifndef BROKK_CPP_TEST_SUPPORT_HPP
#define BROKK_CPP_TEST_SUPPORT_HPP

#include <brokk.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

#include <unistd.h>

namespace support {

using namespace std::chrono_literals;

// BROKK_TEST_TIMEOUT_SCALE multiplies every wait bound (default 1). Bounds are upper limits for
// things that must happen, never assertions that something is fast.
inline int scale() {
    const char* e = std::getenv("BROKK_TEST_TIMEOUT_SCALE");
    const int s = e != nullptr ? std::atoi(e) : 1;
    return s >= 1 ? s : 1;
}

// The bound for anything that must happen "soon": 10 s, scaled.
inline std::chrono::milliseconds wait_bound() { return std::chrono::milliseconds(10000) * scale(); }

// Polls `done` until it holds or wait_bound() passes; returns whether it held.
inline bool eventually(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + wait_bound();
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// A copy of everything a message view shows.
struct Seen {
    std::string topic, payload, metadata, id, parent_id, group;
    std::uint64_t delivery_id = 0, subscription_id = 0, timestamp_ms = 0;
    std::uint32_t attempt = 0;
    std::int32_t priority = 0;

    static Seen of(const brokk::Message& m) {
        Seen s;
        s.topic = std::string(m.topic());
        s.payload = std::string(m.payload());
        s.metadata = std::string(m.metadata());
        s.id = std::string(m.id());
        s.parent_id = std::string(m.parent_id());
        s.group = std::string(m.group());
        s.delivery_id = m.delivery_id();
        s.subscription_id = m.subscription_id();
        s.timestamp_ms = m.timestamp_ms();
        s.attempt = m.attempt();
        s.priority = m.priority();
        return s;
    }
};

// A thread-safe list, shared between a test and the callbacks it registers.
template <class T>
class Log {
public:
    void add(T item) {
        std::lock_guard<std::mutex> lock(m_);
        items_.push_back(std::move(item));
        cv_.notify_all();
    }
    std::vector<T> items() const {
        std::lock_guard<std::mutex> lock(m_);
        return items_;
    }
    std::size_t size() const {
        std::lock_guard<std::mutex> lock(m_);
        return items_.size();
    }
    // Waits (bounded) until the log holds at least n items; returns whether it did.
    bool wait_for(std::size_t n) const {
        std::unique_lock<std::mutex> lock(m_);
        return cv_.wait_for(lock, wait_bound(), [&] { return items_.size() >= n; });
    }

private:
    mutable std::mutex m_;
    mutable std::condition_variable cv_;
    std::vector<T> items_;
};

// What a listener's on_failed saw.
struct Failure {
    std::uint64_t delivery_id;
    std::string parent_id;
    std::string reason;
    bool requeued;
    std::uint32_t attempt;
};

// A listener recording failures, and counting the other events.
struct Observed {
    Log<Failure> failures;
    Log<Seen> published, dispatched, processed;
    Log<std::string> topics_created;
    Log<std::pair<std::string, std::uint64_t>> subscribed, unsubscribed;

    brokk::Listener listener() {
        brokk::Listener l;
        l.on_failed = [this](const brokk::Message& m, std::string_view reason, bool requeued) {
            failures.add(Failure{m.delivery_id(), std::string(m.parent_id()), std::string(reason), requeued, m.attempt()});
        };
        l.on_publish = [this](const brokk::Message& m) { published.add(Seen::of(m)); };
        l.on_dispatched = [this](const brokk::Message& m) { dispatched.add(Seen::of(m)); };
        l.on_processed = [this](const brokk::Message& m) { processed.add(Seen::of(m)); };
        l.on_topic_created = [this](std::string_view t) { topics_created.add(std::string(t)); };
        l.on_subscribe = [this](std::string_view t, std::uint64_t id) { subscribed.add({std::string(t), id}); };
        l.on_unsubscribe = [this](std::string_view t, std::uint64_t id) { unsubscribed.add({std::string(t), id}); };
        return l;
    }
};

// Counts destructions of live (not moved-from) instances: a handler holding one shows how many
// times brokk's finaliser destroyed the callable. Move-only, so a handler holding one also shows
// that subscribe moves the callable and never copies it.
class Tracker {
public:
    explicit Tracker(std::shared_ptr<std::atomic<int>> destroyed) : destroyed_(std::move(destroyed)) {}
    Tracker(Tracker&& o) noexcept : destroyed_(o.destroyed_), live_(o.live_) { o.live_ = false; }
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;
    Tracker& operator=(Tracker&&) = delete;
    ~Tracker() {
        if (live_) destroyed_->fetch_add(1);
    }

private:
    std::shared_ptr<std::atomic<int>> destroyed_;
    bool live_ = true;
};

inline std::shared_ptr<std::atomic<int>> counter() { return std::make_shared<std::atomic<int>>(0); }

// A one-shot gate: handlers wait on it (bounded) until the test opens it.
class Gate {
public:
    void open() {
        std::lock_guard<std::mutex> lock(m_);
        open_ = true;
        cv_.notify_all();
    }
    bool wait() {
        std::unique_lock<std::mutex> lock(m_);
        return cv_.wait_for(lock, wait_bound(), [&] { return open_; });
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool open_ = false;
};

inline brokk::Verdict ack(const brokk::Message&) { return brokk::Verdict::Ack; }

// Runs `f` and checks that it throws exactly E (not a subclass of it) with `status` and a
// non-empty what().
template <class E, class F>
void expect_error(brokk::Status status, F&& f) {
    try {
        f();
        ADD_FAILURE() << "no exception; expected status " << status << " (" << brokk::status_str(status) << ")";
    } catch (const E& e) {
        EXPECT_EQ(typeid(e), typeid(E)) << "a subclass was thrown: " << typeid(e).name();
        EXPECT_EQ(e.status(), status) << e.what();
        EXPECT_STRNE(e.what(), "");
    } catch (const std::exception& e) {
        ADD_FAILURE() << "wrong exception type " << typeid(e).name() << ": " << e.what();
    }
}

// A wait that a test means to interrupt: far beyond wait_bound(), so that a call that was not
// woken ends on its own (and the test fails) rather than hanging the run.
inline std::chrono::milliseconds interrupted_wait() { return wait_bound() * 3; }

// Runs `call` (a blocking brokk call given `cancel` and interrupted_wait()) on another thread,
// waits (bounded) until `under_way` says it is waiting, then cancels `cancel` from this thread
// and checks that the call threw exactly CancelledError within wait_bound() (a generous
// bound, not a timing assertion). A cancel that came before the call started would be no
// different to brokk: the token stays cancelled.
inline void expect_woken_by_cancel(const brokk::Cancel& cancel, const std::function<void()>& call,
                                   const std::function<bool()>& under_way) {
    Log<std::string> outcome;
    std::thread waiter([&] {
        try {
            call();
            outcome.add("returned");
        } catch (const brokk::Error& e) {
            const bool exact = typeid(e) == typeid(brokk::CancelledError) && e.status() == BROKK_STATUS_CANCELLED;
            outcome.add(exact ? "cancelled" : std::string(typeid(e).name()) + ": " + e.what());
        } catch (const std::exception& e) {
            outcome.add(e.what());
        }
    });
    EXPECT_TRUE(eventually(under_way)) << "the call never got under way";
    EXPECT_EQ(outcome.size(), 0u) << "the call returned before it was cancelled";
    const auto start = std::chrono::steady_clock::now();
    cancel.cancel();
    EXPECT_TRUE(outcome.wait_for(1)) << "the call was not woken by the cancel";
    const auto elapsed = std::chrono::steady_clock::now() - start;
    waiter.join();
    EXPECT_EQ(outcome.items(), std::vector<std::string>{"cancelled"});
    EXPECT_LT(elapsed, wait_bound());
}

// A fresh directory under the system's temp folder, removed with everything in it.
class TempDir {
public:
    TempDir() {
        std::string name = (std::filesystem::temp_directory_path() / "brokk-cpp-XXXXXX").string();
        if (mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = name;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

// The URL of the SQLite store at `path` (absolute: sqlite:// + /abs/path).
inline std::string sqlite_url(const std::filesystem::path& path) { return "sqlite://" + path.string(); }

// ---- Redis: one server for the whole run ----------------------------------------------------

#ifndef BROKK_SOURCE_ROOT
#error "BROKK_SOURCE_ROOT (the checkout, for core/src/store/redis/test-server.sh) is set by CMakeLists.txt"
#endif

// The redis-server the "redis" tests use, started once (core/src/store/redis/test-server.sh). Under ctest a
// fixture test ("redis.start", owned by ctest's pid) starts it before the first test and
// "redis.stop" stops it after the last; the tests find its port in the file
// BROKK_TEST_REDIS_PORT_FILE names. Run directly (no such variable), the test binary starts its
// own on first use, owned by its pid, and RedisServer::TearDown (a gtest global environment)
// stops it after the last test. No redis-server: the test fails, saying why (never a skip).
class RedisServer : public ::testing::Environment {
public:
    static RedisServer& instance() {
        static RedisServer* server = new RedisServer;  // owned by gtest once registered
        return *server;
    }

    // "redis://127.0.0.1:PORT/0".
    std::string base_url() {
        std::lock_guard<std::mutex> lock(m_);
        if (port_.empty()) start();
        return "redis://127.0.0.1:" + port_ + "/0";
    }

    void TearDown() override {
        std::lock_guard<std::mutex> lock(m_);
        if (dir_.empty()) return;
        const std::string cmd = "sh '" + script() + "' stop '" + dir_ + "'";
        if (std::system(cmd.c_str()) != 0) ADD_FAILURE() << "could not stop redis-server: " << cmd;
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
        dir_.clear();
        port_.clear();
    }

private:
    static std::string script() { return std::string(BROKK_SOURCE_ROOT) + "/core/src/store/redis/test-server.sh"; }

    static std::string read_port(const std::string& file) {
        std::ifstream in(file);
        std::string port;
        in >> port;
        return port;
    }

    void start() {
        if (const char* file = std::getenv("BROKK_TEST_REDIS_PORT_FILE"); file != nullptr && *file != '\0') {
            port_ = read_port(file);
            if (port_.empty())
                throw std::runtime_error(std::string("no redis-server port in ") + file +
                                         " (the ctest fixture redis.start failed? is redis-server installed?)");
            return;
        }
        std::string name = (std::filesystem::temp_directory_path() / "brokk-cpp-redis-XXXXXX").string();
        if (mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = name;
        const std::string cmd = "sh '" + script() + "' start '" + dir_ + "' " + std::to_string(getpid()) + " >/dev/null";
        if (std::system(cmd.c_str()) != 0)
            throw std::runtime_error("core/src/store/redis/test-server.sh could not start redis-server (installed? apt-get install redis-server)");
        port_ = read_port(dir_ + "/port");
        if (port_.empty()) throw std::runtime_error("core/src/store/redis/test-server.sh wrote no port in " + dir_);
    }

    std::mutex m_;
    std::string dir_, port_;
};

inline ::testing::Environment* const redis_environment = ::testing::AddGlobalTestEnvironment(&RedisServer::instance());

// A key prefix of the running test's own ("cpp<pid>-<n>-<test name>", at most 64 characters of
// letters, digits and "_.-"), so tests sharing the server share nothing.
inline std::string redis_prefix() {
    static std::atomic<unsigned> next{0};
    std::string name = "x";
    if (const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info())
        name = std::string(info->test_suite_name()) + "." + info->name();
    std::string prefix = "cpp" + std::to_string(getpid()) + "-" + std::to_string(next++) + "-";
    for (char c : name) {
        if (prefix.size() >= 64) break;
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        prefix += ok ? c : '_';
    }
    return prefix;
}

// The URL of a fresh Redis store: the shared server, a prefix nobody else uses.
inline std::string redis_url() { return RedisServer::instance().base_url() + "?prefix=" + redis_prefix(); }

// The fixture of the value-parametrised tests that run on each backend ("memory", "sqlite",
// "redis"): url() is memory://, a SQLite file in a directory of the test's own, or the shared
// redis-server under a prefix of the test's own (the same store for each call in one test, as
// the SQLite file is).
class Backend : public ::testing::TestWithParam<std::string> {
protected:
    std::string url() {
        if (GetParam() == "sqlite") return sqlite_url(dir_.path() / "brokk.db");
        if (GetParam() == "redis") {
            if (redis_.empty()) redis_ = redis_url();
            return redis_;
        }
        return "memory://";
    }
    TempDir dir_;
    std::string redis_;
};

}  // namespace support

#endif  // BROKK_CPP_TEST_SUPPORT_HPP
