// Publish and subscribe, fan-out, consumer groups, priorities through fetch, batches, count and
// purge, listeners and statistics.
#include "support.hpp"

#include <algorithm>
#include <cstdio>
#include <set>

using namespace std::chrono_literals;
using support::Backend;
using brokk::Verdict;
using support::expect_error;
using support::Log;
using support::Seen;

namespace {

// A handler recording every delivery into `log` and returning `verdict`.
auto recorder(Log<Seen>& log, Verdict verdict = Verdict::Ack) {
    return [&log, verdict](const brokk::Message& m) {
        log.add(Seen::of(m));
        return verdict;
    };
}

}  // namespace

TEST(PubSub, RoundTripKeepsPayloadAndMetadataByteForByte) {
    Log<Seen> seen;
    brokk::Broker broker;
    const std::uint64_t sub = broker.subscribe("orders", recorder(seen));

    // Odd spacing, escapes, raw UTF-8 and a number spelled 2.50: delivered exactly as published.
    const std::string payload = "{\"item\" : \"anvil\",\n  \"qty\":2, \"note\": \"gr\\u00fc\xc3\x9f" "e \xe2\x98\x83\", "
                                "\"x\": [1, 2.50, null] }";
    const std::string metadata = "{ \"channel\":\"web\",  \"tags\": [\"a\"] }";
    brokk::PublishOptions options;
    options.id = "order-1";
    options.metadata = metadata;
    options.priority = 7;
    EXPECT_EQ(broker.publish("orders", payload, options), "order-1");
    broker.join(support::wait_bound());

    ASSERT_EQ(seen.size(), 1u);
    const Seen s = seen.items()[0];
    EXPECT_EQ(s.topic, "orders");
    EXPECT_EQ(s.payload, payload);
    EXPECT_EQ(s.metadata, metadata);
    EXPECT_EQ(s.parent_id, "order-1");
    EXPECT_EQ(s.id, std::to_string(s.delivery_id));
    EXPECT_NE(s.delivery_id, 0u);
    EXPECT_EQ(s.subscription_id, sub);
    EXPECT_EQ(s.priority, 7);
    EXPECT_EQ(s.attempt, 1u);
    EXPECT_EQ(s.group, "");
    EXPECT_GT(s.timestamp_ms, 0u);
}

TEST(PubSub, GeneratedIdsAndDefaultMetadata) {
    Log<Seen> seen;
    brokk::Broker broker;
    broker.subscribe("t", recorder(seen));
    const std::string first = broker.publish("t", "1");
    const std::string second = broker.publish("t", "2");
    EXPECT_FALSE(first.empty());
    EXPECT_NE(first, second);
    EXPECT_LE(first.size(), static_cast<std::size_t>(BROKK_ID_MAX_LEN));
    broker.join(support::wait_bound());
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen.items()[0].metadata, "{}");
    EXPECT_EQ(seen.items()[0].parent_id, first);
    EXPECT_EQ(seen.items()[1].parent_id, second);
}

TEST_P(Backend, PubSubFanOutGivesEveryUngroupedSubscriptionItsOwnCopy) {
    Log<Seen> a, b;
    brokk::Broker broker(url());
    broker.subscribe("news", recorder(a));
    broker.subscribe("news", recorder(b));
    std::vector<std::string> ids;
    for (int i = 0; i < 5; i++) ids.push_back(broker.publish("news", std::to_string(i)));
    broker.join(support::wait_bound());

    ASSERT_EQ(a.size(), 5u);
    ASSERT_EQ(b.size(), 5u);
    for (std::size_t i = 0; i < 5; i++) {  // concurrency 1: in publish order
        const Seen x = a.items()[i], y = b.items()[i];
        EXPECT_EQ(x.payload, std::to_string(i));
        EXPECT_EQ(y.payload, std::to_string(i));
        EXPECT_EQ(x.parent_id, ids[i]);
        EXPECT_EQ(y.parent_id, ids[i]);
        EXPECT_NE(x.delivery_id, y.delivery_id);
    }
}

TEST_P(Backend, PubSubGroupMembersCompeteAndEachGroupGetsEveryMessage) {
    Log<Seen> g1, g2, h;
    brokk::Broker broker(url());
    brokk::SubscriptionOptions in_g;
    in_g.group = "g";
    brokk::SubscriptionOptions in_h;
    in_h.group = "h";
    broker.subscribe("work", recorder(g1), in_g);
    broker.subscribe("work", recorder(g2), in_g);
    broker.subscribe("work", recorder(h), in_h);
    std::set<std::string> published;
    for (int i = 0; i < 40; i++) published.insert(broker.publish("work", std::to_string(i)));
    broker.join(support::wait_bound());

    std::multiset<std::string> taken_by_g;
    for (const Seen& s : g1.items()) {
        taken_by_g.insert(s.parent_id);
        EXPECT_EQ(s.group, "g");
    }
    for (const Seen& s : g2.items()) {
        taken_by_g.insert(s.parent_id);
        EXPECT_EQ(s.group, "g");
    }
    EXPECT_EQ(taken_by_g.size(), 40u);  // each message once in group g...
    EXPECT_EQ(std::set<std::string>(taken_by_g.begin(), taken_by_g.end()), published);
    ASSERT_EQ(h.size(), 40u);  // ...and once in group h
    EXPECT_EQ(h.items()[0].group, "h");
}

TEST_P(Backend, FetchHighestPriorityFirstFifoWithinOne) {
    brokk::Broker broker(url());
    const std::pair<const char*, std::int32_t> jobs[] = {{"\"a\"", 1}, {"\"b\"", 5}, {"\"c\"", 0},
                                                         {"\"d\"", 9}, {"\"e\"", -1}, {"\"f\"", 9}};
    for (const auto& [payload, priority] : jobs) {
        brokk::PublishOptions o;
        o.priority = priority;
        broker.publish("jobs", payload, o);
    }
    EXPECT_EQ(broker.count({"jobs"}), 6u);  // retained until the first fetch

    std::vector<std::string> order;
    for (int i = 0; i < 6; i++) {
        std::optional<brokk::Delivery> d = broker.fetch("jobs", support::wait_bound());
        ASSERT_TRUE(d.has_value());
        const brokk::Message m = d->message();
        order.emplace_back(m.payload());
        EXPECT_EQ(m.group(), "default");
        EXPECT_EQ(m.attempt(), 1u);
        broker.ack(d->delivery_id());
    }
    EXPECT_EQ(order, (std::vector<std::string>{"\"d\"", "\"f\"", "\"b\"", "\"a\"", "\"c\"", "\"e\""}));
    EXPECT_FALSE(broker.fetch("jobs").has_value());  // nothing left: 0 ms means don't wait
    EXPECT_EQ(broker.count({"jobs"}), 0u);
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().processed, 6u);
}

TEST(Fetch, PriorityOrdersPushDeliveriesToo) {
    Log<Seen> seen;
    brokk::Broker broker;
    brokk::PublishOptions low, high;
    high.priority = 3;
    broker.publish("q", "\"low\"", low);
    broker.publish("q", "\"high\"", high);
    brokk::SubscriptionOptions grouped;
    grouped.group = "workers";  // the first named group takes over the retained messages
    broker.subscribe("q", recorder(seen), grouped);
    broker.join(support::wait_bound());
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen.items()[0].payload, "\"high\"");
    EXPECT_EQ(seen.items()[1].payload, "\"low\"");
}

TEST_P(Backend, PublishBatchIsAllOrNothing) {
    brokk::Broker broker(url());
    std::vector<brokk::BatchMessage> batch(3);
    for (std::size_t i = 0; i < batch.size(); i++) {
        batch[i].payload = "{\"n\": " + std::to_string(i) + "}";
        batch[i].options.id = "b-" + std::to_string(i);
        batch[i].options.priority = static_cast<std::int32_t>(i);
    }
    EXPECT_EQ(broker.publish_batch("batch", batch), (std::vector<std::string>{"b-0", "b-1", "b-2"}));
    EXPECT_TRUE(broker.publish_batch("batch", {}).empty());

    std::vector<brokk::BatchMessage> bad(3);
    bad[0].payload = "1";
    bad[1].payload = "{";  // not JSON: nothing of this batch is published
    bad[2].payload = "3";
    try {
        broker.publish_batch("batch", bad);
        FAIL() << "a batch with invalid JSON was accepted";
    } catch (const brokk::CallerError& e) {
        EXPECT_EQ(e.status(), BROKK_STATUS_INVALID_JSON);
        EXPECT_NE(std::string(e.what()).find('1'), std::string::npos) << "the index of the bad message: " << e.what();
    }
    EXPECT_EQ(broker.count({"batch"}), 3u);

    std::optional<brokk::Delivery> d = broker.fetch("batch", support::wait_bound());
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->message().parent_id(), "b-2");  // highest priority
    broker.ack(d->delivery_id());
}

TEST_P(Backend, CountPurgeByTopicListAndForAll) {
    brokk::Broker broker(url());
    for (int i = 0; i < 2; i++) broker.publish("a", "1");
    for (int i = 0; i < 3; i++) broker.publish("b", "1");
    EXPECT_EQ(broker.count(), 5u);
    EXPECT_EQ(broker.count({"a"}), 2u);
    EXPECT_EQ(broker.count(std::vector<std::string>{"a", "b"}), 5u);
    EXPECT_EQ(broker.count(std::vector<std::string_view>{"b"}), 3u);
    EXPECT_EQ(broker.count({}), 0u);  // an empty list names no topic; count() names them all
    EXPECT_EQ(broker.count({"never-named"}), 0u);
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.count({"a", "no such"}); });

    EXPECT_EQ(broker.purge({}), 0u);
    EXPECT_EQ(broker.purge({"a"}), 2u);
    EXPECT_EQ(broker.count(), 3u);
    EXPECT_EQ(broker.purge(), 3u);
    EXPECT_EQ(broker.count(), 0u);
    EXPECT_EQ(broker.stats().retained_dropped, 5u);
}

TEST(Listener, SeesEveryKindOfEventUntilRemoved) {
    support::Observed seen;
    brokk::Broker broker;
    const std::uint64_t listener = broker.add_listener(seen.listener());
    const std::uint64_t sub = broker.subscribe("lt", support::ack);
    broker.publish("lt", "{}", brokk::PublishOptions{std::string("p-1"), std::nullopt, 0});
    broker.join(support::wait_bound());
    broker.unsubscribe(sub);
    broker.join(support::wait_bound());  // also waits for listener events

    EXPECT_EQ(seen.topics_created.items(), std::vector<std::string>{"lt"});
    EXPECT_EQ(seen.subscribed.items(), (std::vector<std::pair<std::string, std::uint64_t>>{{"lt", sub}}));
    EXPECT_EQ(seen.unsubscribed.items(), (std::vector<std::pair<std::string, std::uint64_t>>{{"lt", sub}}));
    ASSERT_EQ(seen.published.size(), 1u);
    EXPECT_EQ(seen.published.items()[0].id, "p-1");  // on_publish: the published id, no delivery
    EXPECT_EQ(seen.published.items()[0].delivery_id, 0u);
    ASSERT_EQ(seen.dispatched.size(), 1u);
    ASSERT_EQ(seen.processed.size(), 1u);
    EXPECT_EQ(seen.processed.items()[0].parent_id, "p-1");
    EXPECT_EQ(seen.failures.size(), 0u);

    broker.remove_listener(listener);
    broker.publish("lt", "{}");
    broker.join(support::wait_bound());
    EXPECT_EQ(seen.published.size(), 1u);
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_LISTENER, [&] { broker.remove_listener(listener); });
}

TEST(Listener, ExceptionsInListenersAreSwallowed) {
    std::atomic<int> published{0}, topics{0};
    brokk::Broker broker;
    brokk::Listener throwing;
    throwing.on_publish = [&](const brokk::Message&) {
        published++;
        throw std::runtime_error("a listener bug");
    };
    throwing.on_topic_created = [&](std::string_view) {
        topics++;
        throw 42;  // not a std::exception
    };
    broker.add_listener(std::move(throwing));
    for (int i = 0; i < 3; i++) broker.publish("t" + std::to_string(i), "1");
    broker.join(support::wait_bound());
    EXPECT_EQ(published.load(), 3);  // every event still delivered after a throw
    EXPECT_EQ(topics.load(), 3);
    EXPECT_EQ(broker.stats().listeners, 1u);
}

TEST(Stats, StructAndJson) {
    brokk::Broker broker;
    broker.add_listener(brokk::Listener{});  // no callbacks: every one NULL
    broker.subscribe("s", support::ack);
    for (int i = 0; i < 3; i++) broker.publish("s", "1");
    broker.join(support::wait_bound());

    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.published, 3u);
    EXPECT_EQ(s.dispatched, 3u);
    EXPECT_EQ(s.processed, 3u);
    EXPECT_EQ(s.in_flight, 0u);
    EXPECT_EQ(s.subscriptions, 1u);
    EXPECT_EQ(s.topics, 1u);
    EXPECT_EQ(s.listeners, 1u);
    EXPECT_GE(s.workers, 2u);

    const std::string json = broker.stats_json();
    ASSERT_FALSE(json.empty());
    EXPECT_EQ(json.front(), '{');
    EXPECT_EQ(json.back(), '}');  // the length excludes the NUL
    EXPECT_NE(json.find("\"totals\""), std::string::npos) << json;
    EXPECT_NE(json.find("\"s\""), std::string::npos) << json;
}

// The Prometheus text (docs/c-api.md, "Prometheus"): HELP/TYPE lines and a sample per topic.
TEST(Stats, Prometheus) {
    brokk::Broker broker;
    broker.subscribe("s", support::ack);
    for (int i = 0; i < 3; i++) broker.publish("s", "1");
    broker.join(support::wait_bound());
    const std::string text = broker.stats_prometheus();
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');  // the length excludes the NUL
    EXPECT_NE(text.find("# TYPE brokk_messages_published_total counter\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nbrokk_messages_published_total{topic=\"s\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nbrokk_deliveries_processed_total{topic=\"s\"} 3\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nbrokk_topics 1\n"), std::string::npos) << text;
}

// The store view (docs/c-api.md, "Store view"): retained messages and each group by state, read
// without making anything.
TEST(Stats, StoreView) {
    brokk::Broker broker;
    broker.publish("parked", "1");  // no group yet: retained
    brokk::FetchOptions workers;
    workers.group = "workers";
    EXPECT_FALSE(broker.fetch("jobs", std::chrono::milliseconds(0), workers));  // makes the group
    broker.publish("jobs", "1");
    const std::string json = broker.store_view_json();
    EXPECT_NE(json.find("\"groups\":{},\"retained\":1}"), std::string::npos) << json;  // parked
    EXPECT_NE(json.find("\"workers\":{\"delayed\":0,\"in_flight\":0,\"ready\":1}"), std::string::npos) << json;
    const std::string text = broker.store_view_prometheus();
    EXPECT_NE(text.find("\nbrokk_store_messages_retained{topic=\"parked\"} 1\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nbrokk_store_deliveries_ready{topic=\"jobs\",group=\"workers\"} 1\n"), std::string::npos)
        << text;
    EXPECT_EQ(broker.count({"parked"}), 1u);  // the view made no group
}

// ---- SQLite: what only a file does -------------------------------------------------------------

// The TEST_P(Backend, …) tests above and in test_ack.cpp and test_batch.cpp run on each backend.
INSTANTIATE_TEST_SUITE_P(OnEach, Backend, ::testing::Values(std::string("memory"), std::string("sqlite"), std::string("redis")),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

namespace {

brokk::FetchOptions in_group(const std::string& group) {
    brokk::FetchOptions o;
    o.group = group;
    return o;
}

}  // namespace

TEST(SQLite, QueuedMessagesSurviveANewBrokerOnTheSameFile) {
    support::TempDir dir;
    const std::string url = support::sqlite_url(dir.path() / "store.db");
    {
        brokk::Broker first(url);
        EXPECT_FALSE(first.fetch("durable", 0ms, in_group("g")).has_value());  // the group exists now
        for (int i = 0; i < 3; i++) {
            brokk::PublishOptions o;
            o.id = "m-" + std::to_string(i);
            o.priority = i % 2;
            first.publish("durable", std::to_string(i), o);
        }
        first.publish("retained", "\"kept\"");  // no group on this topic: retained
        EXPECT_EQ(first.count(), 4u);
        // A graceful close would wait for group g to be drained, as on memory://; forced, it
        // leaves everything durable in the file.
        first.close(0ms, true);
    }
    brokk::Broker second(url);
    EXPECT_EQ(second.count(), 4u);
    std::vector<brokk::Delivery> got = second.fetch_batch("durable", 10, support::wait_bound(), in_group("g"));
    std::vector<std::string> order;
    std::vector<std::uint64_t> ids;
    for (const brokk::Delivery& d : got) {
        order.push_back(std::string(d.message().parent_id()) + "/" + std::string(d.message().payload()));
        EXPECT_EQ(d.message().attempt(), 1u);
        ids.push_back(d.delivery_id());
    }
    EXPECT_EQ(order, (std::vector<std::string>{"m-1/1", "m-0/0", "m-2/2"}));
    second.ack_batch(ids);
    std::optional<brokk::Delivery> kept = second.fetch("retained", support::wait_bound(), in_group("late"));
    ASSERT_TRUE(kept.has_value());
    EXPECT_EQ(kept->message().payload(), "\"kept\"");
    second.ack(kept->delivery_id());
    second.join(support::wait_bound());
    EXPECT_EQ(second.count(), 0u);
}

TEST(SQLite, CloseHandsHeldDeliveriesBackWithTheNextAttempt) {
    support::TempDir dir;
    const std::string url = support::sqlite_url(dir.path() / "store.db");
    {
        brokk::Broker first(url);
        first.publish("held", "1");
        std::optional<brokk::Delivery> d = first.fetch("held", support::wait_bound(), in_group("g"));
        ASSERT_TRUE(d.has_value());
        EXPECT_EQ(d->message().attempt(), 1u);
        EXPECT_EQ(first.count({"held"}), 0u);  // in flight: not counted
        try {
            first.close(20ms);
            FAIL() << "close returned OK with a delivery awaiting an ack";
        } catch (const brokk::TimeoutError& e) {
            EXPECT_EQ(e.remaining(), 1u);
        }
    }
    brokk::Broker second(url);
    EXPECT_EQ(second.count({"held"}), 1u);
    std::optional<brokk::Delivery> again = second.fetch("held", support::wait_bound(), in_group("g"));
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->message().attempt(), 2u);
    EXPECT_EQ(again->message().payload(), "1");
    second.ack(again->delivery_id());
}

TEST(SQLite, TwoBrokersOnOneFileCompeteInAGroupAndCountThePurgeCoversTheFile) {
    support::TempDir dir;
    const std::string url = support::sqlite_url(dir.path() / "shared.db");
    brokk::Broker a(url), b(url);
    for (const brokk::Broker* x : {&a, &b}) EXPECT_FALSE(x->fetch("shared", 0ms, in_group("workers")).has_value());
    EXPECT_FALSE(b.fetch("shared", 0ms, in_group("audit")).has_value());
    for (int i = 0; i < 20; i++) a.publish("shared", std::to_string(i));
    EXPECT_EQ(b.count({"shared"}), 40u);  // the whole file: both groups
    std::multiset<int> taken;
    for (const brokk::Broker* x : {&a, &b, &a, &b}) {
        std::vector<brokk::Delivery> batch = x->fetch_batch("shared", 5, support::wait_bound(), in_group("workers"));
        std::vector<std::uint64_t> ids;
        for (const brokk::Delivery& d : batch) {
            taken.insert(std::stoi(std::string(d.message().payload())));
            ids.push_back(d.delivery_id());
        }
        x->ack_batch(ids);
    }
    ASSERT_EQ(taken.size(), 20u);
    EXPECT_EQ(std::set<int>(taken.begin(), taken.end()).size(), 20u);  // each taken once
    EXPECT_EQ(a.count(), 20u);                                           // the audit group's copies
    EXPECT_EQ(b.purge({"shared"}), 20u);
    EXPECT_EQ(a.count(), 0u);
}

TEST(SQLite, BadFilesThrowTheirStoreErrors) {
    support::TempDir dir;
    // A directory, and a file in a folder that does not exist: CannotOpenStoreError.
    expect_error<brokk::CannotOpenStoreError>(BROKK_STATUS_CANNOT_OPEN_STORE,
                                              [&] { brokk::Broker b(support::sqlite_url(dir.path())); });
    expect_error<brokk::CannotOpenStoreError>(
        BROKK_STATUS_CANNOT_OPEN_STORE, [&] { brokk::Broker b(support::sqlite_url(dir.path() / "no" / "such" / "x.db")); });
    EXPECT_FALSE(std::filesystem::exists(dir.path() / "no"));
    // Random bytes: IncompatibleStoreError, and the file is left as it was.
    const std::filesystem::path junk = dir.path() / "junk.db";
    std::string bytes(8192, '\0');
    std::uint32_t x = 0x9e3779b9u;
    for (char& c : bytes) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    {
        std::FILE* f = std::fopen(junk.c_str(), "wb");
        ASSERT_NE(f, nullptr);
        ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
        std::fclose(f);
    }
    expect_error<brokk::IncompatibleStoreError>(BROKK_STATUS_INCOMPATIBLE_STORE,
                                                [&] { brokk::Broker b(support::sqlite_url(junk)); });
    EXPECT_EQ(std::filesystem::file_size(junk), bytes.size());
    // Both are caller errors: retrying the same call fails again.
    try {
        brokk::Broker b(support::sqlite_url(junk));
        FAIL() << "opened random bytes";
    } catch (const brokk::CallerError& e) {
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_CALLER);
    }
}
