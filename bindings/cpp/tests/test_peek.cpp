// BrokerRef::peek (brokk_broker_peek): the next deliveries of a group, as values, shown without
// being taken.
#include "support.hpp"

using namespace std::chrono_literals;
using support::Backend;
using support::expect_error;

namespace {

std::vector<std::string> ids_of(const std::vector<brokk::Peeked>& shown) {
    std::vector<std::string> out;
    for (const auto& p : shown) out.push_back(p.id + "/" + std::to_string(p.attempt));
    return out;
}

}  // namespace

TEST_P(Backend, PeekShowsWhatFetchWouldGetAndTakesNothing) {
    brokk::Broker broker(url());
    EXPECT_TRUE(broker.peek("jobs").empty());  // no topic: nothing, and nothing made
    EXPECT_FALSE(broker.fetch("jobs").has_value());  // makes the default group
    const std::pair<const char*, std::int32_t> jobs[] = {{"one", 0}, {"two", 5}, {"three", 0}};
    for (const auto& [id, priority] : jobs) {
        brokk::PublishOptions o;
        o.id = id;
        o.priority = priority;
        o.metadata = R"({"k":1})";
        broker.publish("jobs", std::string("\"") + id + "\"", o);
    }
    const brokk::Stats before = broker.stats();
    const std::vector<brokk::Peeked> shown = broker.peek("jobs");
    ASSERT_EQ(shown.size(), 3u);
    EXPECT_EQ(shown[0].topic, "jobs");
    EXPECT_EQ(shown[0].payload, "\"two\"");
    EXPECT_EQ(shown[0].metadata, R"({"k":1})");
    EXPECT_EQ(shown[0].priority, 5);
    EXPECT_GT(shown[0].timestamp().time_since_epoch().count(), 0);
    EXPECT_EQ(ids_of(shown), (std::vector<std::string>{"two/1", "one/1", "three/1"}));
    EXPECT_EQ(ids_of(broker.peek("jobs", "default", 2)), (std::vector<std::string>{"two/1", "one/1"}));
    const brokk::Stats after = broker.stats();
    EXPECT_EQ(after.dispatched, before.dispatched);
    EXPECT_EQ(after.in_flight, before.in_flight);
    EXPECT_EQ(after.queued, before.queued);

    // A fetch after it gets the first one, at attempt 1; requeued, it is back at attempt 2.
    std::optional<brokk::Delivery> d = broker.fetch("jobs");
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->message().parent_id(), "two");
    EXPECT_EQ(d->message().attempt(), 1u);
    EXPECT_EQ(ids_of(broker.peek("jobs")), (std::vector<std::string>{"one/1", "three/1"}));
    broker.nack(d->delivery_id(), true);
    EXPECT_EQ(ids_of(broker.peek("jobs")), (std::vector<std::string>{"two/2", "one/1", "three/1"}));
    broker.purge();
}

TEST_P(Backend, PeekOfAMissingGroupCreatesNothing) {
    brokk::Broker broker(url());
    EXPECT_TRUE(broker.peek("orders", "ghost").empty());
    broker.publish("orders", "1");
    EXPECT_EQ(broker.stats().retained, 1u);  // no group was made: the message is retained
    broker.purge();
}

TEST_P(Backend, CountAndPurgeOfOneGroup) {
    brokk::Broker broker(url());
    brokk::FetchOptions a, b;
    a.group = "a";
    b.group = "b";
    EXPECT_FALSE(broker.fetch("g", 0ms, a).has_value());  // makes the groups
    EXPECT_FALSE(broker.fetch("g", 0ms, b).has_value());
    for (int i = 0; i < 3; i++) broker.publish("g", "1");
    auto held = broker.fetch("g", 0ms, a);  // in flight: neither counted nor purged
    ASSERT_TRUE(held.has_value());
    EXPECT_EQ(broker.count_group("g", "a"), 2u);
    EXPECT_EQ(broker.count_group("g", "ghost"), 0u);
    EXPECT_EQ(broker.purge_group("g", "ghost"), 0u);
    EXPECT_EQ(broker.purge_group("g", "a"), 2u);
    EXPECT_EQ(broker.count_group("g", "a"), 0u);
    EXPECT_EQ(broker.count_group("g", "b"), 3u);
    broker.ack(held->message());
    EXPECT_EQ(broker.purge_group("g", "b"), 3u);
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_GROUP, [&] { broker.count_group("g", "bad group"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.purge_group("bad topic", "a"); });
}

TEST(Peek, RefusesBadInput) {
    brokk::Broker broker("memory://");
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_ARGUMENT, [&] { broker.peek("t", std::nullopt, 0); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_ARGUMENT,
                                     [&] { broker.peek("t", std::nullopt, brokk::max_peek + 1); });
    EXPECT_TRUE(broker.peek("t", std::nullopt, brokk::max_peek).empty());
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.peek("bad topic"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_GROUP, [&] { broker.peek("t", "bad group"); });
    broker.close(0ms, true);
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.peek("t"); });
}
