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
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <vector>

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

// The fixture of the value-parametrised tests that run on each backend ("memory", "sqlite"):
// url() is memory://, or a SQLite file in a directory of the test's own.
class Backend : public ::testing::TestWithParam<std::string> {
protected:
    std::string url() const { return GetParam() == "sqlite" ? sqlite_url(dir_.path() / "brokk.db") : "memory://"; }
    TempDir dir_;
};

}  // namespace support

#endif  // BROKK_CPP_TEST_SUPPORT_HPP
