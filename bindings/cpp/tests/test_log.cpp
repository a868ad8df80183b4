// The log handlers: real records from real events (a close that left work behind, a listener
// queue overflow) at their levels, the process-wide handler against a broker's own, level
// filtering, replacement (each handler destroyed once), and a throwing handler.
#include "support.hpp"

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

using brokk::LogLevel;

namespace {

struct Record {
    LogLevel level;
    std::string target;
    std::string message;
};

// Keeps what a handler hears; shared with the handler, which may outlive the test's scope.
struct Heard {
    std::mutex m;
    std::vector<Record> records;

    brokk::LogHandler handler(std::shared_ptr<Heard> self) {
        return [self](LogLevel level, std::string_view target, std::string_view message) {
            std::lock_guard<std::mutex> lock(self->m);
            self->records.push_back({level, std::string(target), std::string(message)});
        };
    }
    std::size_t count(LogLevel level, const std::string& target, const std::string& text) {
        std::lock_guard<std::mutex> lock(m);
        std::size_t n = 0;
        for (const auto& r : records) n += r.level == level && r.target == target && r.message.find(text) != std::string::npos;
        return n;
    }
    std::size_t size() {
        std::lock_guard<std::mutex> lock(m);
        return records.size();
    }
};

std::shared_ptr<Heard> heard() { return std::make_shared<Heard>(); }

struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    int entered = 0;
    void pass() {
        std::unique_lock<std::mutex> lock(m);
        ++entered;
        cv.notify_all();
        cv.wait_for(lock, support::wait_bound(), [&] { return open; });
    }
    void release() {
        std::lock_guard<std::mutex> lock(m);
        open = true;
        cv.notify_all();
    }
    bool wait_entered() {
        std::unique_lock<std::mutex> lock(m);
        return cv.wait_for(lock, support::wait_bound(), [&] { return entered > 0; });
    }
};

// The process-wide handler is removed when a test ends, whatever happens in it.
struct ProcessHandlerReset {
    ~ProcessHandlerReset() { brokk::set_log_handler({}); }
};

}  // namespace

TEST(Log, ACloseThatLeftWorkIsAWarningForTheBrokersOwnHandler) {
    auto h = heard();
    auto gate = std::make_shared<Gate>();
    brokk::BrokerOptions o;
    o.worker_threads = 1;
    brokk::Broker broker(o);
    broker.set_log_handler(h->handler(h));
    broker.subscribe("stuck", [gate](const brokk::Message&) {
        gate->pass();
        return brokk::Verdict::Ack;
    });
    for (int i = 0; i < 3; i++) broker.publish("stuck", "1");
    ASSERT_TRUE(gate->wait_entered());
    EXPECT_THROW(broker.close(std::chrono::milliseconds(20)), brokk::TimeoutError);
    gate->release();
    EXPECT_EQ(h->count(LogLevel::Warn, "brokk::close", "unfinished"), 1u);
}

TEST(Log, AListenerQueueOverflowIsAWarning) {
    auto h = heard();
    auto gate = std::make_shared<Gate>();
    brokk::BrokerOptions o;
    o.listener_queue_capacity = 1;
    brokk::Broker broker(o);
    broker.set_log_handler(h->handler(h), LogLevel::Trace);
    brokk::Listener l;
    l.on_publish = [gate](const brokk::Message&) { gate->pass(); };
    broker.add_listener(std::move(l));
    for (int i = 0; i < 20; i++) broker.publish("events", "1");
    gate->release();
    EXPECT_GE(h->count(LogLevel::Warn, "brokk::listener", "is full"), 1u);
    broker.join(support::wait_bound());
}

TEST(Log, TheProcessWideHandlerHearsBrokersWithoutTheirOwnUpToItsLevel) {
    ProcessHandlerReset reset;
    auto process = heard();
    auto own = heard();
    brokk::set_log_handler(process->handler(process));
    {
        brokk::Broker a;
        brokk::Broker b;
        b.set_log_handler(own->handler(own));
        a.close(support::wait_bound());
        b.close(support::wait_bound());
    }
    EXPECT_EQ(process->count(LogLevel::Info, "brokk::close", "nothing left behind"), 1u);
    EXPECT_EQ(own->count(LogLevel::Info, "brokk::close", "nothing left behind"), 1u);

    auto quiet = heard();
    brokk::set_log_handler(quiet->handler(quiet), LogLevel::Warn);
    brokk::Broker().close(support::wait_bound());
    EXPECT_EQ(quiet->size(), 0u);  // an Info record above a Warn handler's level

    brokk::set_log_handler({});
    const std::size_t before = process->size();
    brokk::Broker().close(support::wait_bound());
    EXPECT_EQ(process->size(), before);
}

TEST(Log, AReplacedHandlerIsDestroyedOnceAndAThrowingOneLosesOnlyItsRecord) {
    ProcessHandlerReset reset;
    auto destroyed = support::counter();
    brokk::set_log_handler([t = std::make_shared<support::Tracker>(destroyed)](LogLevel, std::string_view, std::string_view) {});
    EXPECT_EQ(destroyed->load(), 0);
    brokk::set_log_handler([](LogLevel, std::string_view, std::string_view) { throw std::runtime_error("a bad handler"); });
    EXPECT_EQ(destroyed->load(), 1);
    brokk::Broker broker;
    broker.publish("t", "1");
    broker.close(support::wait_bound());  // its report goes to the throwing handler

    auto own_destroyed = support::counter();
    {
        brokk::Broker b;
        b.set_log_handler([t = std::make_shared<support::Tracker>(own_destroyed)](LogLevel, std::string_view, std::string_view) {});
        EXPECT_EQ(own_destroyed->load(), 0);
    }
    EXPECT_EQ(own_destroyed->load(), 1);  // with the broker
}
