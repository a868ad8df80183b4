// Settlement: manual ack from another thread, nack with requeue and delay, ack deadlines,
// dead-letter topics, backpressure and retention limits, join and close timeouts.
#include "support.hpp"

using namespace std::chrono_literals;
using support::Backend;
using brokk::Verdict;
using support::expect_error;
using support::Log;
using support::Seen;

namespace {

auto later(Log<Seen>& log) {
    return [&log](const brokk::Message& m) {
        log.add(Seen::of(m));
        return Verdict::Later;
    };
}

brokk::SubscriptionOptions manual() {
    brokk::SubscriptionOptions o;
    o.manual_ack = true;
    return o;
}

}  // namespace

TEST_P(Backend, ManualAckAckedFromAnotherThread) {
    Log<Seen> seen;
    Log<std::string> errors;
    brokk::Broker broker(url());
    broker.subscribe("invoices", later(seen), manual());
    for (int i = 0; i < 5; i++) broker.publish("invoices", std::to_string(i));

    std::thread committer([&seen, &errors, ref = broker.ref()] {
        try {
            for (std::size_t i = 0; i < 5; i++) {
                if (!seen.wait_for(i + 1)) throw std::runtime_error("delivery never came");
                ref.ack(seen.items()[i].delivery_id);
            }
        } catch (const std::exception& e) {
            errors.add(e.what());
        }
    });
    committer.join();
    EXPECT_EQ(errors.items(), std::vector<std::string>{});
    broker.join(support::wait_bound());

    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.processed, 5u);
    EXPECT_EQ(s.in_flight, 0u);
    const std::uint64_t first = seen.items()[0].delivery_id;
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED, [&] { broker.ack(first); });
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED, [&] { broker.nack(first, true); });
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { broker.ack(987654321); });
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { broker.nack(987654321, false); });
}

// A delivery id names a delivery of the broker that issued it. Two brokers of one process both
// count their deliveries, so B holds a delivery with the same number as A's: acking A's id on B
// must throw UNKNOWN_DELIVERY and settle nothing, neither B's delivery nor A's.
TEST(ManualAck, DeliveryIdOfAnotherBrokerIsUnknown) {
    brokk::Broker a, b;
    a.publish("jobs", "\"a\"");
    b.publish("jobs", "\"b\"");
    std::optional<brokk::Delivery> da = a.fetch("jobs", support::wait_bound());
    std::optional<brokk::Delivery> db = b.fetch("jobs", support::wait_bound());
    ASSERT_TRUE(da.has_value());
    ASSERT_TRUE(db.has_value());
    const std::uint64_t a_id = da->delivery_id(), b_id = db->delivery_id();

    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { b.ack(a_id); });
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { b.nack(a_id, true); });
    std::size_t acked = 99;
    expect_error<brokk::CallerError>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { b.ack_batch({a_id}, &acked); });
    EXPECT_EQ(acked, 0u);
    EXPECT_EQ(b.stats().in_flight, 1u) << "B's own delivery was settled by A's id";
    EXPECT_EQ(b.stats().processed + b.stats().failed, 0u);

    // Each delivery is still there to be acked by its own broker.
    EXPECT_NO_THROW(a.ack(a_id));
    EXPECT_NO_THROW(b.ack(b_id));
    for (const brokk::Broker* broker : {&a, &b}) {
        EXPECT_EQ(broker->stats().processed, 1u);
        EXPECT_EQ(broker->stats().in_flight, 0u);
    }
}

TEST(ManualAck, AutoAckedDeliveryIsAlreadySettled) {
    Log<Seen> seen;
    brokk::Broker broker;
    broker.subscribe("t", [&seen](const brokk::Message& m) {
        seen.add(Seen::of(m));
        return Verdict::Later;  // LATER on an auto-ack subscription means ACK
    });
    broker.publish("t", "1");
    broker.join(support::wait_bound());
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(broker.stats().processed, 1u);
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED, [&] { broker.ack(seen.items()[0].delivery_id); });
}

TEST_P(Backend, NackRequeueWithDelayFromOutsideTheHandler) {
    support::Observed observed;
    Log<Seen> seen;
    brokk::Broker broker(url());
    broker.add_listener(observed.listener());
    broker.subscribe("jobs", later(seen), manual());
    broker.publish("jobs", "\"j\"", brokk::PublishOptions{std::string("job-1"), std::nullopt, 0});

    ASSERT_TRUE(seen.wait_for(1));
    const Seen first = seen.items()[0];
    broker.nack(first.delivery_id, true, 30ms, "retry please");
    ASSERT_TRUE(seen.wait_for(2));
    const Seen second = seen.items()[1];
    EXPECT_EQ(second.delivery_id, first.delivery_id);  // kept across redeliveries
    EXPECT_EQ(second.attempt, 2u);
    EXPECT_EQ(second.payload, "\"j\"");
    broker.ack(second.delivery_id);
    broker.join(support::wait_bound());

    ASSERT_EQ(observed.failures.size(), 1u);
    const support::Failure f = observed.failures.items()[0];
    EXPECT_EQ(f.reason, "retry please");
    EXPECT_TRUE(f.requeued);
    EXPECT_EQ(f.parent_id, "job-1");
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.requeued, 1u);
    EXPECT_EQ(s.processed, 1u);
    EXPECT_EQ(s.failed, 0u);
}

TEST_P(Backend, NackWithoutRequeueGivesUp) {
    support::Observed observed;
    Log<Seen> seen;
    brokk::Broker broker(url());
    broker.add_listener(observed.listener());
    broker.subscribe("jobs", later(seen), manual());
    broker.publish("jobs", "1");
    ASSERT_TRUE(seen.wait_for(1));
    broker.nack(seen.items()[0].delivery_id, false, 0ms, std::string("poison"));
    broker.join(support::wait_bound());
    ASSERT_EQ(observed.failures.size(), 1u);
    EXPECT_EQ(observed.failures.items()[0].reason, "poison");
    EXPECT_FALSE(observed.failures.items()[0].requeued);
    EXPECT_EQ(broker.stats().failed, 1u);
    EXPECT_EQ(seen.size(), 1u);
}

TEST(Nack, HandlerRequeuesWithDelayAndReason) {
    support::Observed observed;
    Log<Seen> seen;
    brokk::Broker broker;
    broker.add_listener(observed.listener());
    broker.subscribe("flaky", [&seen](const brokk::Message& m) {
        seen.add(Seen::of(m));
        if (m.attempt() == 1) {
            m.set_requeue_delay(20ms);
            m.set_failure_reason("inventory timed out");
            return Verdict::Requeue;
        }
        return Verdict::Ack;
    });
    broker.publish("flaky", "1");
    broker.join(support::wait_bound());
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen.items()[1].attempt, 2u);
    ASSERT_EQ(observed.failures.size(), 1u);
    EXPECT_EQ(observed.failures.items()[0].reason, "inventory timed out");
    EXPECT_TRUE(observed.failures.items()[0].requeued);
    EXPECT_EQ(broker.stats().requeued, 1u);
}

TEST(AckDeadline, UnackedDeliveryIsRedelivered) {
    support::Observed observed;
    Log<Seen> seen;
    brokk::Broker broker;
    broker.add_listener(observed.listener());
    brokk::SubscriptionOptions o = manual();
    o.ack_deadline = 50ms;
    broker.subscribe("slow", [&seen](const brokk::Message& m) {
        seen.add(Seen::of(m));
        return m.attempt() == 1 ? Verdict::Later : Verdict::Ack;  // the first attempt is never acked
    }, o);
    broker.publish("slow", "1");
    broker.join(support::wait_bound());

    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen.items()[1].attempt, 2u);
    EXPECT_EQ(seen.items()[1].delivery_id, seen.items()[0].delivery_id);
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.expired, 1u);
    EXPECT_EQ(s.processed, 1u);
    ASSERT_EQ(observed.failures.size(), 1u);
    EXPECT_TRUE(observed.failures.items()[0].requeued);
    expect_error<brokk::CallerError>(BROKK_STATUS_ALREADY_SETTLED, [&] { broker.ack(seen.items()[0].delivery_id); });
}

TEST_P(Backend, AckDeadlineUnackedFetchIsTakenBack) {
    brokk::Broker broker(url());
    broker.publish("jobs", "\"j\"");
    brokk::FetchOptions f;
    f.ack_deadline = 50ms;
    std::optional<brokk::Delivery> first = broker.fetch("jobs", support::wait_bound(), f);
    ASSERT_TRUE(first.has_value());
    std::optional<brokk::Delivery> second = broker.fetch("jobs", support::wait_bound(), f);  // after the deadline
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(second->delivery_id(), first->delivery_id());
    EXPECT_EQ(first->message().attempt(), 1u);  // each Delivery keeps its own view
    EXPECT_EQ(second->message().attempt(), 2u);
    broker.ack(second->delivery_id());
    broker.join(support::wait_bound());
    EXPECT_EQ(broker.stats().expired, 1u);
}

TEST(DeadLetter, GivenUpDeliveriesGoToTheDeadLetterTopic) {
    Log<Seen> dead;
    brokk::Broker broker;
    broker.subscribe("dlq", [&dead](const brokk::Message& m) {
        dead.add(Seen::of(m));
        return Verdict::Ack;
    });
    brokk::SubscriptionOptions o;
    o.max_attempts = 2;
    o.dead_letter_topic = "dlq";
    std::atomic<int> attempts{0};
    broker.subscribe("work", [&attempts](const brokk::Message& m) {
        attempts++;
        m.set_failure_reason("boom");
        return Verdict::Requeue;
    }, o);
    broker.publish("work", "{\"w\": 1}", brokk::PublishOptions{std::string("w-1"), std::string("{\"k\": 1}"), 0});
    broker.join(support::wait_bound());

    EXPECT_EQ(attempts.load(), 2);
    ASSERT_EQ(dead.size(), 1u);
    const Seen d = dead.items()[0];
    EXPECT_EQ(d.payload, "{\"w\": 1}");
    EXPECT_NE(d.metadata.find("\"dead_letter\""), std::string::npos) << d.metadata;
    EXPECT_NE(d.metadata.find("w-1"), std::string::npos) << d.metadata;
    EXPECT_NE(d.metadata.find("boom"), std::string::npos) << d.metadata;
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.dead_lettered, 1u);
    EXPECT_EQ(s.failed, 1u);
}

TEST(DeadLetter, NackedFetchGoesToTheDeadLetterTopic) {
    brokk::Broker broker;
    broker.publish("jobs", "\"poison\"");
    brokk::FetchOptions f;
    f.group = "workers";
    f.dead_letter_topic = "jobs.dead";
    std::optional<brokk::Delivery> d = broker.fetch("jobs", support::wait_bound(), f);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->message().group(), "workers");
    broker.nack(d->message(), false, 0ms, "cannot parse");
    std::optional<brokk::Delivery> dead = broker.fetch("jobs.dead", support::wait_bound());
    ASSERT_TRUE(dead.has_value());
    EXPECT_EQ(dead->message().payload(), "\"poison\"");
    EXPECT_NE(dead->message().metadata().find("cannot parse"), std::string_view::npos);
    broker.ack(dead->delivery_id());
}

TEST(Backpressure, FailPolicyThrowsFullError) {
    brokk::BrokerOptions options;
    options.queue_capacity = 1;
    options.backpressure = brokk::Backpressure::Fail;
    brokk::Broker broker(options);
    brokk::FetchOptions f;
    f.group = "g";
    EXPECT_FALSE(broker.fetch("bp", 0ms, f).has_value());  // creates group g, takes nothing
    broker.publish("bp", "1");
    expect_error<brokk::FullError>(BROKK_STATUS_FULL, [&] { broker.publish("bp", "2"); });
    try {
        broker.publish("bp", "3");
    } catch (const brokk::TransientError& e) {  // catchable by class
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TRANSIENT);
    }
    EXPECT_EQ(broker.count({"bp"}), 1u);
}

TEST(Backpressure, DropPolicyCountsFullDropped) {
    brokk::BrokerOptions options;
    options.queue_capacity = 1;
    options.backpressure = brokk::Backpressure::Drop;
    brokk::Broker broker(options);
    brokk::FetchOptions f;
    f.group = "g";
    EXPECT_FALSE(broker.fetch("bp", 0ms, f).has_value());
    broker.publish("bp", "1");
    EXPECT_NO_THROW(broker.publish("bp", "2"));
    EXPECT_EQ(broker.stats().full_dropped, 1u);
}

TEST(Retention, RejectPolicyThrowsFullError) {
    brokk::BrokerOptions options;
    options.retention_limit = 2;
    brokk::Broker broker(options);
    broker.publish("r", "1");
    broker.publish("r", "2");
    expect_error<brokk::FullError>(BROKK_STATUS_FULL, [&] { broker.publish("r", "3"); });
    EXPECT_EQ(broker.count({"r"}), 2u);
}

TEST_P(Backend, JoinCloseTimeoutsCarryWhatRemains) {
    Log<Seen> seen;
    brokk::Broker broker(url());
    broker.subscribe("held", later(seen), manual());  // never acked
    broker.publish("held", "1");
    broker.publish("held", "2");
    ASSERT_TRUE(seen.wait_for(2));
    try {
        broker.join(20ms);
        FAIL() << "join returned with two deliveries awaiting an ack";
    } catch (const brokk::TimeoutError& e) {
        EXPECT_EQ(e.status(), BROKK_STATUS_TIMEOUT);
        EXPECT_EQ(e.remaining(), 2u);
    }
    try {
        broker.close(20ms);
        FAIL() << "close returned OK with two deliveries awaiting an ack";
    } catch (const brokk::TimeoutError& e) {
        EXPECT_EQ(e.remaining(), 2u);
        ASSERT_TRUE(e.close_report().has_value());
        EXPECT_EQ(e.close_report()->remaining, 2u);
    }
    // closed all the same
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.publish("held", "3"); });
}

TEST(JoinClose, ForcedCloseReportsWhatItDropped) {
    Log<Seen> seen;
    brokk::Broker broker;
    broker.subscribe("held", later(seen), manual());
    for (int i = 0; i < 3; i++) broker.publish("held", "1");
    broker.publish("kept", "1");  // no group: retained
    broker.publish("kept", "2");
    ASSERT_TRUE(seen.wait_for(3));
    // The handler logs before it returns LATER: wait until the last one has returned, so that
    // all three await an ack (a handler still running at a forced close is not counted dropped).
    ASSERT_TRUE(support::eventually([&] { return broker.stats().workers_active == 0; }));
    const brokk::CloseReport r = broker.close(brokk::forever, true);
    EXPECT_EQ(r.remaining, 0u);
    EXPECT_EQ(r.dropped, 3u);
    EXPECT_EQ(r.retained_discarded, 2u);
}

TEST_P(Backend, JoinCloseGracefulCloseDrains) {
    std::atomic<int> handled{0};
    brokk::Broker broker(url());
    broker.subscribe("t", [&handled](const brokk::Message&) {
        handled++;
        return Verdict::Ack;
    });
    for (int i = 0; i < 20; i++) broker.publish("t", "1");
    const brokk::CloseReport r = broker.close(support::wait_bound());
    EXPECT_EQ(r.remaining, 0u);
    EXPECT_EQ(r.dropped, 0u);
    EXPECT_EQ(handled.load(), 20);
}
