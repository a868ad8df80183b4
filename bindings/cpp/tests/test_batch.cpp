// The batch calls and the one-call read: Broker::fetch_batch (owned deliveries in a vector),
// Broker::ack_batch (acks the rest, then throws the first failure) and Message::fields().
#include "support.hpp"

#include <algorithm>
#include <set>

using namespace std::chrono_literals;
using support::Backend;
using brokk::Verdict;
using support::expect_error;
using support::Log;
using support::Seen;

namespace {

std::vector<std::uint64_t> ids_of(const std::vector<brokk::Delivery>& batch) {
    std::vector<std::uint64_t> ids;
    for (const brokk::Delivery& d : batch) ids.push_back(d.delivery_id());
    return ids;
}

std::vector<std::string> payloads_of(const std::vector<brokk::Delivery>& batch) {
    std::vector<std::string> out;
    for (const brokk::Delivery& d : batch) out.emplace_back(d.message().payload());
    return out;
}

void publish_numbers(const brokk::BrokerRef& broker, const std::string& topic, int n) {
    for (int i = 0; i < n; i++) broker.publish(topic, std::to_string(i));
}

brokk::FetchOptions group(const std::string& name) {
    brokk::FetchOptions o;
    o.group = name;
    return o;
}

// A Seen filled from Message::fields() instead of the single accessors.
Seen seen_of_fields(const brokk::MessageFields& f) {
    Seen s;
    s.topic = std::string(f.topic);
    s.payload = std::string(f.payload);
    s.metadata = std::string(f.metadata);
    s.id = std::string(f.id);
    s.parent_id = std::string(f.parent_id);
    s.group = std::string(f.group);
    s.delivery_id = f.delivery_id;
    s.subscription_id = f.subscription_id;
    s.timestamp_ms = f.timestamp_ms;
    s.attempt = f.attempt;
    s.priority = f.priority;
    return s;
}

// Whether `text` holds `value` in decimal as a whole number (not part of a longer one).
bool names_number(const std::string& text, std::uint64_t value) {
    const std::string dec = std::to_string(value);
    const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
    for (std::size_t at = text.find(dec); at != std::string::npos; at = text.find(dec, at + 1)) {
        const bool before = at > 0 && is_digit(text[at - 1]);
        const bool after = at + dec.size() < text.size() && is_digit(text[at + dec.size()]);
        if (!before && !after) return true;
    }
    return false;
}

// Field by field, so that a mismatch names the field.
void expect_same(const Seen& a, const Seen& b) {
    EXPECT_EQ(a.topic, b.topic);
    EXPECT_EQ(a.payload, b.payload);
    EXPECT_EQ(a.metadata, b.metadata);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.parent_id, b.parent_id);
    EXPECT_EQ(a.group, b.group);
    EXPECT_EQ(a.delivery_id, b.delivery_id);
    EXPECT_EQ(a.subscription_id, b.subscription_id);
    EXPECT_EQ(a.timestamp_ms, b.timestamp_ms);
    EXPECT_EQ(a.attempt, b.attempt);
    EXPECT_EQ(a.priority, b.priority);
}

}  // namespace

// ---- fetch_batch ----------------------------------------------------------------------------

TEST_P(Backend, FetchBatchHighestPriorityFirstInOneCallAndOneAckBatch) {
    support::Observed observed;
    brokk::Broker broker(url());
    broker.add_listener(observed.listener());
    const std::pair<const char*, std::int32_t> jobs[] = {{"\"a\"", 1}, {"\"b\"", 5}, {"\"c\"", 0},
                                                         {"\"d\"", 9}, {"\"e\"", -1}, {"\"f\"", 9}};
    for (const auto& [payload, priority] : jobs) {
        brokk::PublishOptions o;
        o.priority = priority;
        broker.publish("jobs", payload, o);
    }
    EXPECT_EQ(broker.count({"jobs"}), 6u);  // retained until the first fetch

    std::vector<brokk::Delivery> batch = broker.fetch_batch("jobs", 10);
    EXPECT_EQ(payloads_of(batch), (std::vector<std::string>{"\"d\"", "\"f\"", "\"b\"", "\"a\"", "\"c\"", "\"e\""}));
    std::set<std::uint64_t> distinct;
    for (const brokk::Delivery& d : batch) {
        EXPECT_EQ(d.message().group(), "default");
        EXPECT_EQ(d.message().attempt(), 1u);
        EXPECT_NE(d.delivery_id(), 0u);
        distinct.insert(d.delivery_id());
    }
    EXPECT_EQ(distinct.size(), 6u);
    brokk::Stats s = broker.stats();
    EXPECT_EQ(s.dispatched, 6u);
    EXPECT_EQ(s.in_flight, 6u);

    std::size_t acked = 99;
    broker.ack_batch(ids_of(batch), &acked);
    EXPECT_EQ(acked, 6u);
    broker.join(support::wait_bound());
    s = broker.stats();
    EXPECT_EQ(s.processed, 6u);
    EXPECT_EQ(s.in_flight, 0u);
    EXPECT_EQ(s.dispatched, s.processed + s.failed + s.requeued);
    EXPECT_EQ(observed.processed.size(), 6u);
    EXPECT_TRUE(broker.fetch_batch("jobs", 10).empty());
}

TEST(FetchBatch, PartialBatchesContinueInOrder) {
    brokk::Broker broker;
    publish_numbers(broker, "backlog", 5);
    std::vector<std::string> all;
    for (const std::size_t want : {2u, 2u, 1u, 0u}) {
        std::vector<brokk::Delivery> batch = broker.fetch_batch("backlog", 2);
        EXPECT_EQ(batch.size(), want);
        for (const std::string& p : payloads_of(batch)) all.push_back(p);
        broker.ack_batch(ids_of(batch));
    }
    EXPECT_EQ(all, (std::vector<std::string>{"0", "1", "2", "3", "4"}));
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, 5u);
}

TEST(FetchBatch, EmptyQueueGivesAnEmptyVector) {
    brokk::Broker broker;
    EXPECT_TRUE(broker.fetch_batch("empty", 8).empty());                       // 0 ms: no wait at all
    EXPECT_TRUE(broker.fetch_batch("empty", 8, 20ms, group("g")).empty());     // waits 20 ms, then empty
    EXPECT_TRUE(broker.fetch_batch("empty", 8, -5ms).empty());                 // negative counts as zero
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.topics, 1u);
    EXPECT_EQ(s.groups, 2u);  // "default" and "g"
    EXPECT_EQ(s.dispatched, 0u);
}

TEST(FetchBatch, WaitsForTheFirstThenTakesWhatIsQueued) {
    brokk::Broker broker;
    EXPECT_TRUE(broker.fetch_batch("wait", 8, 0ms, group("w")).empty());  // group w: publishes queue
    std::thread publisher([ref = broker.ref()] {
        std::this_thread::sleep_for(30ms);
        ref.publish_batch("wait", {brokk::BatchMessage{"1", {}}, brokk::BatchMessage{"2", {}},
                                   brokk::BatchMessage{"3", {}}});
    });
    std::vector<brokk::Delivery> batch = broker.fetch_batch("wait", 8, brokk::forever, group("w"));
    publisher.join();
    // A publish_batch reaches the group at once: the waiting fetch takes all three.
    EXPECT_EQ(payloads_of(batch), (std::vector<std::string>{"1", "2", "3"}));
    broker.ack_batch(ids_of(batch));
    broker.join(support::wait_bound());
}

// Each Delivery owns its handle: destroying the vector frees them (ASan and valgrind check that
// nothing leaks) without settling them; they are still acked by id.
TEST(FetchBatch, DeliveriesAreOwnedAndFreeingDoesNotSettle) {
    brokk::Broker broker;
    publish_numbers(broker, "own", 3);
    std::vector<std::uint64_t> ids;
    brokk::Delivery kept(nullptr);
    {
        std::vector<brokk::Delivery> batch = broker.fetch_batch("own", 3);
        ASSERT_EQ(batch.size(), 3u);
        ids = ids_of(batch);
        kept = std::move(batch[1]);  // one outlives the vector
        EXPECT_EQ(batch[1].get(), nullptr);
    }
    EXPECT_EQ(kept.message().payload(), "1");
    EXPECT_EQ(broker.stats().in_flight, 3u);  // freed, not settled
    expect_error<brokk::TimeoutError>(BROKK_STATUS_TIMEOUT, [&] { broker.join(0ms); });
    broker.ack_batch(ids);
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, 3u);
    EXPECT_EQ(kept.delivery_id(), ids[1]);  // still readable after the ack
}

TEST(FetchBatch, OptionsApplyToEveryDelivery) {
    brokk::Broker broker;
    publish_numbers(broker, "dl", 2);
    brokk::FetchOptions o = group("dlg");
    o.ack_deadline = 50ms;
    std::vector<std::uint64_t> first = ids_of(broker.fetch_batch("dl", 8, 0ms, o));  // never acked
    ASSERT_EQ(first.size(), 2u);
    std::vector<std::uint64_t> again;
    ASSERT_TRUE(support::eventually([&] {
        for (const brokk::Delivery& d : broker.fetch_batch("dl", 8, 20ms, group("dlg"))) {
            EXPECT_EQ(d.message().attempt(), 2u);
            again.push_back(d.delivery_id());
            broker.ack(d.delivery_id());
        }
        return again.size() >= 2;
    }));
    EXPECT_EQ(std::set<std::uint64_t>(again.begin(), again.end()), std::set<std::uint64_t>(first.begin(), first.end()));
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().expired, 2u);
}

TEST(FetchBatch, BadInputThrowsCallerErrors) {
    brokk::Broker broker;
    broker.publish("t", "1");
    using E = brokk::CallerError;
    expect_error<E>(BROKK_STATUS_INVALID_ARGUMENT, [&] { broker.fetch_batch("t", 0); });
    expect_error<E>(BROKK_STATUS_INVALID_ARGUMENT, [&] { broker.fetch_batch("t", 0, brokk::forever); });  // never waits
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.fetch_batch("", 4); });
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.fetch_batch("a b", 4); });
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.fetch_batch(std::string(BROKK_TOPIC_MAX_LEN + 1, 'a'), 4); });
    expect_error<E>(BROKK_STATUS_INVALID_UTF8, [&] { broker.fetch_batch("t\xff", 4); });
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.fetch_batch("t", 4, 0ms, group("")); });
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.fetch_batch("t", 4, brokk::forever, group("a group")); });
    expect_error<E>(BROKK_STATUS_INVALID_UTF8, [&] { broker.fetch_batch("t", 4, 0ms, group("g\xc3")); });
    brokk::FetchOptions bad_dlq;
    bad_dlq.dead_letter_topic = "dead letters";
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.fetch_batch("t", 4, 0ms, bad_dlq); });
    expect_error<E>(BROKK_STATUS_NULL_ARGUMENT, [&] { brokk::BrokerRef().fetch_batch("t", 4); });
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.dispatched, 0u);  // nothing was taken
    EXPECT_EQ(s.groups, 0u);
    EXPECT_EQ(broker.count({"t"}), 1u);
}

// ---- ack_batch ------------------------------------------------------------------------------

TEST_P(Backend, AckBatchThrowsTheFirstFailureAfterAckingTheRest) {
    brokk::Broker broker(url());
    publish_numbers(broker, "mid", 6);
    const std::vector<std::uint64_t> id = ids_of(broker.fetch_batch("mid", 6));
    ASSERT_EQ(id.size(), 6u);
    broker.ack(id[1]);
    const std::uint64_t unknown = 987654321;

    std::size_t acked = 99;
    try {
        broker.ack_batch({id[0], id[2], unknown, id[1], id[3]}, &acked);
        FAIL() << "a batch with an unknown id was acked";
    } catch (const brokk::CallerError& e) {
        EXPECT_EQ(e.status(), BROKK_STATUS_UNKNOWN_DELIVERY);  // the first failure, not ALREADY_SETTLED
        EXPECT_TRUE(names_number(e.what(), 2)) << "the index: " << e.what();
        EXPECT_TRUE(names_number(e.what(), unknown)) << "the id: " << e.what();
    }
    EXPECT_EQ(acked, 3u);  // id[0], id[2], id[3]

    acked = 99;
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED, [&] { broker.ack_batch({id[4], id[4]}, &acked); });
    EXPECT_EQ(acked, 1u);
    acked = 99;
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED,
                                     [&] { broker.ack_batch(std::vector<std::uint64_t>{id[0], id[5]}, &acked); });
    EXPECT_EQ(acked, 1u);  // id[5]: a failure first does not stop the rest either

    broker.join(support::wait_bound());
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.processed, 6u);  // each exactly once
    EXPECT_EQ(s.in_flight, 0u);
    EXPECT_EQ(s.dispatched, s.processed + s.failed + s.requeued);
}

TEST(AckBatch, EmptyBatchesAndNullInput) {
    brokk::Broker broker;
    std::size_t acked = 99;
    EXPECT_NO_THROW(broker.ack_batch({}, &acked));
    EXPECT_EQ(acked, 0u);
    EXPECT_NO_THROW(broker.ack_batch(std::vector<std::uint64_t>{}));
    EXPECT_NO_THROW(broker.ack_batch(nullptr, 0));
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [&] { broker.ack_batch(nullptr, 2); });
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [&] { brokk::BrokerRef().ack_batch({1, 2}); });
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { broker.ack_batch({0}); });

    // A manual-ack handler's LATER deliveries are acked by batch too.
    Log<Seen> seen;
    brokk::SubscriptionOptions manual;
    manual.manual_ack = true;
    broker.subscribe("m", [&seen](const brokk::Message& m) {
        seen.add(Seen::of(m));
        return Verdict::Later;
    }, manual);
    publish_numbers(broker, "m", 3);
    ASSERT_TRUE(seen.wait_for(3));
    std::vector<std::uint64_t> ids;
    for (const Seen& s : seen.items()) ids.push_back(s.delivery_id);
    broker.ack_batch(ids.data(), ids.size(), &acked);
    EXPECT_EQ(acked, 3u);
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, 3u);
}

// ---- around close ---------------------------------------------------------------------------

TEST(UseAfterClose, BatchCallsThrowClosedError) {
    brokk::Broker broker;
    publish_numbers(broker, "late", 2);
    std::vector<brokk::Delivery> batch = broker.fetch_batch("late", 4);
    ASSERT_EQ(batch.size(), 2u);
    broker.close(0ms, true);
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.fetch_batch("late", 4); });
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.fetch_batch("late", 4, brokk::forever, group("g")); });
    std::size_t acked = 99;
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.ack_batch(ids_of(batch), &acked); });
    EXPECT_EQ(acked, 0u);
    EXPECT_EQ(batch[0].message().payload(), "0");  // the handles stay readable until destroyed
}

TEST(UseAfterClose, BlockedFetchBatchThrowsClosedError) {
    Log<std::string> outcome;
    brokk::Broker broker;
    std::thread fetcher([&outcome, ref = broker.ref()] {
        try {
            ref.fetch_batch("empty", 8, brokk::forever);
            outcome.add("returned");
        } catch (const brokk::ClosedError&) {
            outcome.add("closed");
        } catch (const std::exception& e) {
            outcome.add(e.what());
        }
    });
    EXPECT_TRUE(support::eventually([&] { return broker.stats().groups == 1; }));  // under way
    broker.close(support::wait_bound());
    fetcher.join();
    EXPECT_EQ(outcome.items(), std::vector<std::string>{"closed"});
}

// ---- Message::fields ------------------------------------------------------------------------

TEST(MessageFields, MatchTheAccessorsInAHandler) {
    Log<std::pair<Seen, Seen>> seen;  // (accessors, fields)
    brokk::Broker broker;
    brokk::SubscriptionOptions o;
    o.group = "readers";
    const std::uint64_t sub = broker.subscribe("read", [&seen](const brokk::Message& m) {
        seen.add({Seen::of(m), seen_of_fields(m.fields())});
        return m.attempt() == 1 ? Verdict::Requeue : Verdict::Ack;
    }, o);
    brokk::PublishOptions p;
    p.id = "read-1";
    p.metadata = "{\"k\": [1, 2]}";
    p.priority = -42;
    broker.publish("read", "{\"caf\xc3\xa9\": true}", p);
    broker.join(support::wait_bound());
    ASSERT_EQ(seen.size(), 2u);
    for (const auto& [accessors, fields] : seen.items()) expect_same(accessors, fields);
    const Seen second = seen.items()[1].second;
    EXPECT_EQ(second.attempt, 2u);
    EXPECT_EQ(second.parent_id, "read-1");
    EXPECT_EQ(second.metadata, "{\"k\": [1, 2]}");
    EXPECT_EQ(second.group, "readers");
    EXPECT_EQ(second.priority, -42);
    EXPECT_EQ(second.subscription_id, sub);
    EXPECT_EQ(second.id, std::to_string(second.delivery_id));
}

TEST(MessageFields, MatchTheAccessorsInAListener) {
    Log<std::pair<Seen, Seen>> published;
    brokk::Broker broker;
    brokk::Listener l;
    l.on_publish = [&published](const brokk::Message& m) { published.add({Seen::of(m), seen_of_fields(m.fields())}); };
    broker.add_listener(std::move(l));
    broker.publish("read", "[7]", brokk::PublishOptions{std::string("pub-7"), std::nullopt, 0});
    broker.join(support::wait_bound());
    ASSERT_EQ(published.size(), 1u);
    expect_same(published.items()[0].first, published.items()[0].second);
    EXPECT_EQ(published.items()[0].second.id, "pub-7");
    EXPECT_EQ(published.items()[0].second.delivery_id, 0u);  // on_publish: no delivery yet
}

TEST(MessageFields, MatchTheAccessorsOnFetchedDeliveriesAndLiveAsLong) {
    brokk::Broker broker;
    std::vector<brokk::BatchMessage> batch(3);
    for (std::size_t i = 0; i < batch.size(); i++) {
        batch[i].payload = "[" + std::to_string(i) + "]";
        batch[i].options.priority = static_cast<std::int32_t>(3 - i);
    }
    batch[1].options.metadata = "{\"meta\": 1}";
    const std::vector<std::string> ids = broker.publish_batch("read", batch);
    std::vector<brokk::Delivery> taken = broker.fetch_batch("read", 8, 0ms, group("fg"));
    ASSERT_EQ(taken.size(), 3u);
    std::vector<brokk::MessageFields> fields;
    for (std::size_t i = 0; i < taken.size(); i++) {
        const brokk::Message m = taken[i].message();
        fields.push_back(m.fields());
        expect_same(Seen::of(m), seen_of_fields(fields.back()));
        EXPECT_EQ(fields.back().payload, batch[i].payload);
        EXPECT_EQ(fields.back().parent_id, ids[i]);
        EXPECT_EQ(fields.back().metadata, i == 1 ? "{\"meta\": 1}" : "{}");
        EXPECT_EQ(fields.back().group, "fg");
        EXPECT_EQ(fields.back().subscription_id, 0u);
    }
    broker.ack_batch(ids_of(taken));
    for (int i = 0; i < 20; i++) broker.publish("other", "[0]");
    broker.purge();
    for (std::size_t i = 0; i < taken.size(); i++) EXPECT_EQ(fields[i].payload, batch[i].payload);  // as long as the Delivery
}

TEST(MessageFields, AViewOfNullThrows) {
    brokk::Broker broker;
    broker.publish("t", "1");
    std::vector<brokk::Delivery> taken = broker.fetch_batch("t", 1);
    ASSERT_EQ(taken.size(), 1u);
    brokk::Delivery moved = std::move(taken[0]);
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [&] { taken[0].message().fields(); });
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [] { brokk::Message(nullptr).fields(); });
    EXPECT_EQ(moved.message().fields().payload, "1");
    broker.ack(moved.delivery_id());
}
