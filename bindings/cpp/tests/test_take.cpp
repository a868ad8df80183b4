// Broker::take (brokk_broker_take_until): the next delivery of a group, acked as it is taken, as
// its payload in a std::string; payloads of any size come through whole, in one call.
#include "support.hpp"

#include <algorithm>
#include <map>
#include <set>

using namespace std::chrono_literals;
using support::Backend;
using support::expect_error;
using support::Log;

namespace {

void publish_with_priority(const brokk::BrokerRef& broker, const std::string& topic, const std::string& payload,
                           std::int32_t priority) {
    brokk::PublishOptions o;
    o.priority = priority;
    broker.publish(topic, payload, o);
}

// A JSON string of exactly `size` bytes (quotes included), its letters depending on `seed`.
std::string json_string(std::size_t size, unsigned seed = 0) {
    std::string s(size, 'x');
    s.front() = '"';
    s.back() = '"';
    for (std::size_t i = 1; i + 1 < size; i++) s[i] = static_cast<char>('a' + (i + seed) % 26);
    return s;
}

brokk::FetchOptions in_group(const std::string& name) {
    brokk::FetchOptions o;
    o.group = name;
    return o;
}

}  // namespace

TEST_P(Backend, TakeHighestPriorityFirstFifoWithinOneAndAcksAsItTakes) {
    support::Observed observed;
    brokk::Broker broker(url());
    broker.add_listener(observed.listener());
    // Both groups before publishing, so each gets a copy.
    EXPECT_EQ(broker.take("jobs"), std::nullopt);
    EXPECT_EQ(broker.take("jobs", 0ms, "other"), std::nullopt);
    const std::pair<const char*, std::int32_t> jobs[] = {{"\"a\"", 1}, {"\"b\"", 5}, {"\"c\"", 0}, {"\"d\"", 9},
                                                         {"\"e\"", -1}, {"\"f\"", 9}, {"\"g\"", 0}};
    for (const auto& [payload, priority] : jobs) publish_with_priority(broker, "jobs", payload, priority);
    EXPECT_EQ(broker.count({"jobs"}), 14u);

    const std::vector<std::string> want = {"\"d\"", "\"f\"", "\"b\"", "\"a\"", "\"c\"", "\"g\"", "\"e\""};
    std::vector<std::string> got;
    for (std::size_t i = 0; i < want.size(); i++) {
        std::optional<std::string> p = broker.take("jobs");
        ASSERT_TRUE(p.has_value()) << "take #" << i;
        got.push_back(*p);
        EXPECT_EQ(broker.count({"jobs"}), 13u - i);  // gone from the group at once
        const brokk::Stats s = broker.stats();
        EXPECT_EQ(s.in_flight, 0u);  // nothing awaits an ack
        EXPECT_EQ(s.processed, i + 1);
    }
    EXPECT_EQ(got, want);
    EXPECT_EQ(broker.take("jobs"), std::nullopt);
    // The other group still has all seven, in the same order.
    EXPECT_EQ(broker.count({"jobs"}), 7u);
    for (const std::string& w : want) EXPECT_EQ(broker.take("jobs", 0ms, "other"), w);
    EXPECT_EQ(broker.take("jobs", 0ms, "other"), std::nullopt);

    broker.join(support::wait_bound());
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.published, 7u);
    EXPECT_EQ(s.dispatched, 14u);
    EXPECT_EQ(s.processed, 14u);
    EXPECT_EQ(s.failed, 0u);
    EXPECT_EQ(s.in_flight, 0u);
    EXPECT_EQ(broker.count(), 0u);
    EXPECT_EQ(observed.dispatched.size(), 14u);  // listeners hear each dispatched, then processed
    EXPECT_EQ(observed.processed.size(), 14u);
    EXPECT_EQ(observed.failures.size(), 0u);
    for (const support::Seen& p : observed.processed.items()) EXPECT_TRUE(p.group == "default" || p.group == "other");
}

TEST_P(Backend, TakeEmptyQueueGivesNullopt) {
    brokk::Broker broker(url());
    EXPECT_EQ(broker.take("empty"), std::nullopt);           // at once
    EXPECT_EQ(broker.take("empty", 0ms, "g"), std::nullopt);
    EXPECT_EQ(broker.take("empty", 20ms), std::nullopt);     // waits, then nullopt
    EXPECT_EQ(broker.take("empty", -5ms), std::nullopt);     // negative counts as zero
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.dispatched, 0u);
    EXPECT_EQ(s.processed, 0u);
}

TEST_P(Backend, TakePayloadsOfAnySizeComeThroughWhole) {
    brokk::Broker broker(url());
    EXPECT_EQ(broker.take("big"), std::nullopt);  // the group, before publishing
    // Around 4 KiB (the stack buffer an earlier binding tried first), and far beyond it, in
    // publish order.
    const std::vector<std::size_t> sizes = {100 * 1000, 4095, 4096, 4097, 2, 8192, 100 * 1000 + 1};
    std::vector<std::string> payloads;
    for (std::size_t i = 0; i < sizes.size(); i++) {
        payloads.push_back(json_string(sizes[i], static_cast<unsigned>(i)));
        broker.publish("big", payloads.back());
    }
    for (std::size_t i = 0; i < sizes.size(); i++) {
        std::optional<std::string> p = broker.take("big");
        ASSERT_TRUE(p.has_value()) << "take #" << i;
        EXPECT_EQ(p->size(), sizes[i]);
        EXPECT_TRUE(*p == payloads[i]) << "payload #" << i << " differs";
    }
    EXPECT_EQ(broker.take("big"), std::nullopt);
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, sizes.size());
    EXPECT_EQ(broker.count(), 0u);
}

// Beyond brokk's default max payload (1 MiB): brokk allocates the buffer, so nothing is
// guessed or retried whatever the size.
TEST_P(Backend, TakeOfA3MiBPayloadReturnsItByteForByte) {
    brokk::BrokerOptions options;
    options.max_payload_bytes = 4u << 20;
    brokk::Broker broker(url(), options);
    EXPECT_EQ(broker.take("huge"), std::nullopt);  // the group, before publishing
    const std::string payload = json_string(3u << 20, 7);
    broker.publish("huge", payload);
    broker.publish("huge", "\"next\"");
    const std::optional<std::string> p = broker.take("huge", support::wait_bound());
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->size(), payload.size());
    EXPECT_TRUE(*p == payload) << "the 3 MiB payload differs";  // not EXPECT_EQ: 3 MiB of output
    EXPECT_EQ(broker.take("huge"), "\"next\"");
    EXPECT_EQ(broker.take("huge"), std::nullopt);
}

TEST_P(Backend, TakeGroupsEachGetACopyAndNulloptIsTheDefaultGroup) {
    brokk::Broker broker(url());
    EXPECT_EQ(broker.take("g", 0ms, "a"), std::nullopt);
    EXPECT_EQ(broker.take("g", 0ms, "b"), std::nullopt);
    EXPECT_EQ(broker.take("g", 0ms, "default"), std::nullopt);
    for (int i = 0; i < 3; i++) broker.publish("g", std::to_string(i));
    EXPECT_EQ(broker.count({"g"}), 9u);  // three groups, a copy each

    EXPECT_EQ(broker.take("g", 0ms, "a"), "0");
    EXPECT_EQ(broker.take("g", 0ms, "a"), "1");
    EXPECT_EQ(broker.take("g", 0ms, "b"), "0");  // b's copies are untouched by a's takes
    // nullopt is "default": a take without a group and a fetch in "default" share one queue.
    EXPECT_EQ(broker.take("g"), "0");
    std::optional<brokk::Delivery> d = broker.fetch("g", 0ms, in_group("default"));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->message().payload(), "1");
    EXPECT_EQ(d->message().group(), "default");
    EXPECT_EQ(broker.take("g", 0ms, std::string_view("default")), "2");
    EXPECT_EQ(broker.take("g"), std::nullopt);  // "1" is held by the fetch, not taken
    EXPECT_EQ(broker.stats().in_flight, 1u);
    broker.ack(d->delivery_id());
    EXPECT_EQ(broker.take("g", 0ms, "a"), "2");
    EXPECT_EQ(broker.take("g", 0ms, "b"), "1");
    EXPECT_EQ(broker.take("g", 0ms, "b"), "2");
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, 9u);
}

TEST(Take, WaitsForAPublish) {
    brokk::Broker broker;
    EXPECT_EQ(broker.take("wait"), std::nullopt);  // the group: publishes queue there
    std::thread publisher([ref = broker.ref()] {
        std::this_thread::sleep_for(30ms);
        ref.publish("wait", "\"arrived\"");
    });
    const std::optional<std::string> p = broker.take("wait", support::wait_bound());
    publisher.join();
    EXPECT_EQ(p, "\"arrived\"");
    broker.join(support::wait_bound());
}

// Several takers in one group, small and large payloads: each message is taken exactly once,
// whole.
TEST(Take, ConcurrentTakersGetEachMessageOnceAndWhole) {
    brokk::Broker broker;
    EXPECT_EQ(broker.take("race", 0ms, "w"), std::nullopt);
    const int n = 60 / (support::scale() > 1 ? 3 : 1);
    std::map<std::string, int> published;
    for (int i = 0; i < n; i++) {
        const std::string p = json_string(i % 3 == 0 ? 20000 + static_cast<std::size_t>(i) : 10 + static_cast<std::size_t>(i),
                                          static_cast<unsigned>(i));
        published[p] = i;
        broker.publish("race", p);
    }
    Log<std::string> taken;
    std::vector<std::thread> takers;
    for (int t = 0; t < 4; t++)
        takers.emplace_back([&taken, ref = broker.ref()] {
            while (std::optional<std::string> p = ref.take("race", 0ms, "w")) taken.add(std::move(*p));
        });
    for (std::thread& t : takers) t.join();
    const std::vector<std::string> all = taken.items();
    EXPECT_EQ(all.size(), static_cast<std::size_t>(n));
    std::set<int> seen;
    for (const std::string& p : all) {
        auto it = published.find(p);
        ASSERT_NE(it, published.end()) << "a payload that was not published (" << p.size() << " bytes)";
        EXPECT_TRUE(seen.insert(it->second).second) << "message " << it->second << " taken twice";
    }
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, static_cast<std::uint64_t>(n));
}

TEST(Take, BadNamesThrowCallerErrorsAndTakeNothing) {
    brokk::Broker broker;
    EXPECT_EQ(broker.take("t"), std::nullopt);
    broker.publish("t", "1");
    using E = brokk::CallerError;
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.take(""); });
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.take("a b"); });
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.take(std::string(BROKK_TOPIC_MAX_LEN + 1, 'a')); });
    expect_error<E>(BROKK_STATUS_INVALID_UTF8, [&] { broker.take("t\xff"); });
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.take("t", 0ms, ""); });
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.take("t", 0ms, "a b"); });
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.take("t", brokk::forever, "a/b"); });  // never waits
    expect_error<E>(BROKK_STATUS_INVALID_UTF8, [&] { broker.take("t", 0ms, "g\xc3"); });
    // A moved-from broker holds nothing.
    brokk::Broker other = std::move(broker);
    expect_error<E>(BROKK_STATUS_NULL_ARGUMENT, [&] { broker.take("t"); });  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(other.count({"t"}), 1u);
    EXPECT_EQ(other.take("t"), "1");
}

TEST(UseAfterClose, TakeThrowsClosedError) {
    brokk::Broker broker;
    EXPECT_EQ(broker.take("t"), std::nullopt);
    broker.close(support::wait_bound());
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.take("t"); });
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.take("t", support::wait_bound(), "g"); });
}

TEST(UseAfterClose, BlockedTakeThrowsClosedError) {
    Log<std::string> outcome;
    brokk::Broker broker;
    std::thread taker([&outcome, ref = broker.ref()] {
        try {
            ref.take("empty", brokk::forever);
            outcome.add("returned");
        } catch (const brokk::ClosedError&) {
            outcome.add("closed");
        } catch (const std::exception& e) {
            outcome.add(e.what());
        }
    });
    // Wait for the take to be under way: its group exists once it has started.
    EXPECT_TRUE(support::eventually([&] { return broker.stats().groups == 1; }));
    broker.close(support::wait_bound());
    taker.join();
    EXPECT_EQ(outcome.items(), std::vector<std::string>{"closed"});
}
