// What STYLE.md §12 asks of every binding: bad input, use after close, close from a handler, a
// throwing handler, re-entrant calls from handlers, and that a callable is destroyed exactly
// once. Plus concurrent use from several threads.
#include "support.hpp"

using namespace std::chrono_literals;
using brokk::Verdict;
using support::expect_error;
using support::Log;
using support::Seen;

TEST(BadInput, EachMistakeThrowsCallerErrorWithItsStatus) {
    brokk::BrokerOptions options;
    options.max_payload_bytes = 64;
    brokk::Broker broker(options);
    const auto publish = [&](std::string topic, std::string payload, brokk::PublishOptions o = {}) {
        return [&broker, topic, payload, o] { broker.publish(topic, payload, o); };
    };
    using E = brokk::CallerError;
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, publish("no spaces", "{}"));
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, publish("", "{}"));
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, publish(std::string(BROKK_TOPIC_MAX_LEN + 1, 'a'), "{}"));
    expect_error<E>(BROKK_STATUS_INVALID_UTF8, publish("\xff\xfe", "{}"));
    expect_error<E>(BROKK_STATUS_INVALID_JSON, publish("t", "{\"unterminated\": "));
    expect_error<E>(BROKK_STATUS_INVALID_JSON, publish("t", ""));
    expect_error<E>(BROKK_STATUS_INVALID_JSON, publish("t", "{}", brokk::PublishOptions{std::nullopt, std::string("[1]"), 0}));
    expect_error<E>(BROKK_STATUS_INVALID_ID, publish("t", "{}", brokk::PublishOptions{std::string(""), std::nullopt, 0}));
    expect_error<E>(BROKK_STATUS_INVALID_ID,
                    publish("t", "{}", brokk::PublishOptions{std::string(BROKK_ID_MAX_LEN + 1, 'x'), std::nullopt, 0}));
    expect_error<E>(BROKK_STATUS_INVALID_ID, publish("t", "{}", brokk::PublishOptions{std::string("a\x01"), std::nullopt, 0}));
    expect_error<E>(BROKK_STATUS_PAYLOAD_TOO_LARGE, publish("t", "\"" + std::string(100, 'x') + "\""));
    EXPECT_NO_THROW(broker.publish("t", "\"" + std::string(60, 'x') + "\""));  // 62 bytes fit

    expect_error<E>(BROKK_STATUS_UNKNOWN_SUBSCRIPTION, [&] { broker.unsubscribe(987654); });
    expect_error<E>(BROKK_STATUS_UNKNOWN_LISTENER, [&] { broker.remove_listener(987654); });
    expect_error<E>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { broker.ack(987654); });
    expect_error<E>(BROKK_STATUS_UNKNOWN_DELIVERY, [&] { broker.nack(987654, true, 0ms, "x"); });

    brokk::SubscriptionOptions empty_group;
    empty_group.group = "";
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.subscribe("t", support::ack, empty_group); });
    brokk::FetchOptions bad_group;
    bad_group.group = "a group";
    expect_error<E>(BROKK_STATUS_INVALID_GROUP, [&] { broker.fetch("t", 0ms, bad_group); });
    brokk::SubscriptionOptions too_concurrent;
    too_concurrent.concurrency = BROKK_MAX_CONCURRENCY + 1;
    expect_error<E>(BROKK_STATUS_INVALID_ARGUMENT, [&] { broker.subscribe("t", support::ack, too_concurrent); });
    brokk::SubscriptionOptions bad_dlq;
    bad_dlq.dead_letter_topic = "dead letters";
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.subscribe("t", support::ack, bad_dlq); });
    expect_error<E>(BROKK_STATUS_INVALID_TOPIC, [&] { broker.subscribe("bad topic", support::ack); });

    EXPECT_EQ(broker.stats().published, 1u);  // only the one that fit
    EXPECT_EQ(broker.stats().subscriptions, 0u);
}

TEST(BadInput, FailedSubscribeDestroysTheCallableOnceAndAtOnce) {
    auto destroyed = support::counter();
    brokk::Broker broker;
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_TOPIC, [&] {
        broker.subscribe("bad topic", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Ack; });
    });
    EXPECT_EQ(destroyed->load(), 1);
}

TEST(BadInput, MessageSettersRejectBadInputInsideAHandler) {
    Log<brokk::Status> statuses;
    brokk::Broker broker;
    broker.subscribe("t", [&statuses](const brokk::Message& m) {
        try {
            m.set_failure_reason("\xff not UTF-8");
        } catch (const brokk::CallerError& e) {
            statuses.add(e.status());
        }
        return Verdict::Ack;
    });
    broker.publish("t", "1");
    broker.join(support::wait_bound());
    EXPECT_EQ(statuses.items(), std::vector<brokk::Status>{BROKK_STATUS_INVALID_UTF8});
}

TEST(UseAfterClose, EveryCallThrowsClosedError) {
    auto destroyed = support::counter();
    auto listener_token = std::make_shared<int>(0);
    std::weak_ptr<int> listener_alive = listener_token;
    brokk::Broker broker;
    const std::uint64_t sub = broker.subscribe("t", support::ack);
    const std::uint64_t listener = broker.add_listener(brokk::Listener{});
    const brokk::CloseReport r = broker.close(support::wait_bound());
    EXPECT_EQ(r.remaining, 0u);

    using E = brokk::ClosedError;
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.publish("t", "1"); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.publish_batch("t", {brokk::BatchMessage{"1", {}}}); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] {
        broker.subscribe("t", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Ack; });
    });
    EXPECT_EQ(destroyed->load(), 1);  // refused: never registered, destroyed by the binding
    expect_error<E>(BROKK_STATUS_CLOSED, [&] {
        brokk::Listener l;
        l.on_publish = [token = std::move(listener_token)](const brokk::Message&) {};
        broker.add_listener(std::move(l));
    });
    EXPECT_TRUE(listener_alive.expired());
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.unsubscribe(sub); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.remove_listener(listener); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.fetch("t"); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.ack(1); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.nack(1, false); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.count(); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.purge({"t"}); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.stats(); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.stats_json(); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.join(support::wait_bound()); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.close(support::wait_bound()); });
    expect_error<E>(BROKK_STATUS_CLOSED, [&] { broker.close(0ms, true); });
    try {
        broker.publish("t", "1");
    } catch (const brokk::Error& e) {
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TERMINAL);
    }
}

TEST(UseAfterClose, BlockedFetchReturnsClosedError) {
    Log<std::string> outcome;
    brokk::Broker broker;
    std::thread fetcher([&outcome, ref = broker.ref()] {
        try {
            ref.fetch("empty", brokk::forever);
            outcome.add("returned");
        } catch (const brokk::ClosedError&) {
            outcome.add("closed");
        } catch (const std::exception& e) {
            outcome.add(e.what());
        }
    });
    // Wait for the fetch to be under way: its group exists once it has started.
    EXPECT_TRUE(support::eventually([&] { return broker.stats().groups == 1; }));
    broker.close(support::wait_bound());
    fetcher.join();
    EXPECT_EQ(outcome.items(), std::vector<std::string>{"closed"});
}

TEST(CloseFromHandler, NonForcedThrowsWouldDeadlockAndBecomesANack) {
    support::Observed observed;
    Log<std::pair<brokk::Status, std::string>> caught;
    brokk::Broker broker;
    broker.add_listener(observed.listener());
    broker.subscribe("t", [&caught, ref = broker.ref()](const brokk::Message&) -> Verdict {
        try {
            ref.join(1s);
        } catch (const brokk::CallerError& e) {
            caught.add({e.status(), e.what()});
        }
        try {
            ref.close(1s);
        } catch (const brokk::CallerError& e) {
            caught.add({e.status(), e.what()});
            throw;  // out of the handler: the trampoline makes it a nack
        }
        return Verdict::Ack;
    });
    broker.publish("t", "1");
    broker.join(support::wait_bound());

    const auto items = caught.items();
    ASSERT_EQ(items.size(), 2u);
    EXPECT_EQ(items[0].first, BROKK_STATUS_WOULD_DEADLOCK);
    EXPECT_EQ(items[1].first, BROKK_STATUS_WOULD_DEADLOCK);
    ASSERT_EQ(observed.failures.size(), 1u);
    EXPECT_EQ(observed.failures.items()[0].reason, items[1].second);  // what() became the reason
    EXPECT_FALSE(observed.failures.items()[0].requeued);
    EXPECT_EQ(broker.stats().failed, 1u);
    EXPECT_NO_THROW(broker.publish("t", "2"));  // nothing changed: still open
}

TEST(CloseFromHandler, ForcedCloseWorks) {
    Log<brokk::CloseReport> reports;
    brokk::Broker broker;
    broker.subscribe("t", [&reports, ref = broker.ref()](const brokk::Message&) {
        reports.add(ref.close(0ms, true));
        return Verdict::Ack;
    });
    broker.publish("t", "1");
    ASSERT_TRUE(reports.wait_for(1));
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.publish("t", "2"); });
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { broker.join(support::wait_bound()); });
}

TEST(CloseFromHandler, ListenersGetWouldDeadlockToo) {
    Log<brokk::Status> statuses;
    brokk::Broker broker;
    brokk::Listener l;
    l.on_publish = [&statuses, ref = broker.ref()](const brokk::Message&) {
        for (const auto& call : {std::function<void()>([ref] { ref.join(1s); }),
                                 std::function<void()>([ref] { ref.close(1s); })}) {
            try {
                call();
            } catch (const brokk::Error& e) {
                statuses.add(e.status());
            }
        }
        ref.stats();  // other calls work
    };
    broker.add_listener(std::move(l));
    broker.publish("t", "1");
    broker.join(support::wait_bound());
    EXPECT_EQ(statuses.items(), (std::vector<brokk::Status>{BROKK_STATUS_WOULD_DEADLOCK, BROKK_STATUS_WOULD_DEADLOCK}));
    EXPECT_NO_THROW(broker.publish("t", "2"));
}

TEST(Fetch, BlockingFetchWakesOnPublish) {
    Log<std::string> got;
    brokk::Broker broker;
    std::thread fetcher([&got, ref = broker.ref()] {
        try {
            std::optional<brokk::Delivery> d = ref.fetch("wake", support::wait_bound());
            got.add(d ? std::string(d->message().payload()) : "nothing");
            if (d) ref.ack(d->delivery_id());
        } catch (const std::exception& e) {
            got.add(e.what());
        }
    });
    EXPECT_TRUE(support::eventually([&] { return broker.stats().groups == 1; }));  // the fetch is waiting
    broker.publish("wake", "\"up\"");
    fetcher.join();
    EXPECT_EQ(got.items(), std::vector<std::string>{"\"up\""});
}

TEST(ThrowingHandler, ExceptionBecomesANackWithWhatAsReason) {
    support::Observed observed;
    brokk::Broker broker;
    broker.add_listener(observed.listener());
    broker.subscribe("std", [](const brokk::Message&) -> Verdict { throw std::runtime_error("kaboom: gr\xc3\xbc\xc3\x9f" "e"); });
    broker.subscribe("int", [](const brokk::Message&) -> Verdict { throw 42; });
    broker.subscribe("utf8", [](const brokk::Message&) -> Verdict { throw std::runtime_error("bad \xff bytes"); });
    broker.subscribe("bad_alloc", [](const brokk::Message&) -> Verdict { throw std::bad_alloc(); });
    broker.publish("std", "1", brokk::PublishOptions{std::string("m-std"), std::nullopt, 0});
    broker.join(support::wait_bound());
    broker.publish("int", "1", brokk::PublishOptions{std::string("m-int"), std::nullopt, 0});
    broker.join(support::wait_bound());
    broker.publish("utf8", "1", brokk::PublishOptions{std::string("m-utf8"), std::nullopt, 0});
    broker.join(support::wait_bound());
    broker.publish("bad_alloc", "1", brokk::PublishOptions{std::string("m-alloc"), std::nullopt, 0});
    broker.join(support::wait_bound());

    const auto f = observed.failures.items();
    ASSERT_EQ(f.size(), 4u);
    EXPECT_EQ(f[0].parent_id, "m-std");
    EXPECT_EQ(f[0].reason, "kaboom: gr\xc3\xbc\xc3\x9f" "e");
    EXPECT_FALSE(f[0].requeued);
    EXPECT_EQ(f[1].parent_id, "m-int");
    EXPECT_EQ(f[1].reason, "the handler threw an exception not derived from std::exception");
    EXPECT_EQ(f[2].parent_id, "m-utf8");
    EXPECT_EQ(f[2].reason, "the handler threw an exception whose what() is not UTF-8");
    EXPECT_EQ(f[3].reason, std::bad_alloc().what());
    EXPECT_EQ(broker.stats().failed, 4u);
}

TEST(Reentrancy, HandlersPublishAckSubscribeAndUnsubscribe) {
    Log<Seen> downstream;
    Log<std::string> problems;
    Log<std::uint64_t> created;
    brokk::Broker broker;
    const brokk::BrokerRef ref = broker.ref();
    broker.subscribe("out", [&downstream](const brokk::Message& m) {
        downstream.add(Seen::of(m));
        return Verdict::Ack;
    });
    brokk::SubscriptionOptions manual;
    manual.manual_ack = true;
    broker.subscribe("in", [ref, &problems](const brokk::Message& m) {
        const std::string metadata = "{\"source\": \"" + std::string(m.parent_id()) + "\"}";
        ref.publish("out", m.payload(), brokk::PublishOptions{std::nullopt, metadata, 0});
        ref.ack(m);  // its own delivery, before returning
        try {
            ref.ack(m);
            problems.add("second ack accepted");
        } catch (const brokk::CallerError& e) {
            if (e.status() != BROKK_STATUS_ALREADY_SETTLED) problems.add(e.what());
        }
        ref.stats();
        ref.stats_json();
        return Verdict::Later;
    }, manual);
    broker.subscribe("once", [ref, &created](const brokk::Message& m) {
        created.add(ref.subscribe("late", support::ack));
        ref.unsubscribe(m.subscription_id());  // its own subscription
        return Verdict::Ack;
    });

    for (int i = 0; i < 3; i++) broker.publish("in", std::to_string(i), brokk::PublishOptions{"in-" + std::to_string(i), std::nullopt, 0});
    broker.publish("once", "1");
    broker.join(support::wait_bound());
    broker.publish("once", "2");  // no subscription left: retained, not delivered
    broker.join(support::wait_bound());

    EXPECT_EQ(problems.items(), std::vector<std::string>{});
    ASSERT_EQ(downstream.size(), 3u);
    for (std::size_t i = 0; i < 3; i++) {
        EXPECT_EQ(downstream.items()[i].payload, std::to_string(i));
        EXPECT_EQ(downstream.items()[i].metadata, "{\"source\": \"in-" + std::to_string(i) + "\"}");
    }
    EXPECT_EQ(created.size(), 1u);
    const brokk::Stats s = broker.stats();
    EXPECT_EQ(s.subscriptions, 3u);  // out, in, late
    EXPECT_EQ(s.processed, 3u + 3u + 1u);
}

TEST(Lifetime, HandlerDestroyedOnceAfterUnsubscribe) {
    auto destroyed = support::counter();
    brokk::Broker broker;
    const std::uint64_t sub =
        broker.subscribe("t", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Ack; });
    broker.publish("t", "1");
    broker.join(support::wait_bound());
    EXPECT_EQ(destroyed->load(), 0);
    broker.unsubscribe(sub);
    EXPECT_TRUE(support::eventually([&] { return destroyed->load() == 1; }));
    broker.publish("t", "2");
    broker.join(support::wait_bound());
    EXPECT_EQ(destroyed->load(), 1);
}

TEST(Lifetime, HandlersDestroyedOnceWhenTheBrokerIsDestroyed) {
    auto destroyed = support::counter();
    {
        brokk::Broker broker;
        for (int i = 0; i < 3; i++)
            broker.subscribe("t", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Ack; });
        broker.publish("t", "1");
        EXPECT_EQ(destroyed->load(), 0);
    }  // brokk_broker_free runs every remaining finaliser before it returns
    EXPECT_EQ(destroyed->load(), 3);
}

namespace {

// A handler whose destructor throws (allowed by noexcept(false)): the finaliser must swallow it.
struct ThrowsWhenDestroyed {
    explicit ThrowsWhenDestroyed(std::shared_ptr<std::atomic<int>> d) : destroyed(std::move(d)) {}
    ThrowsWhenDestroyed(ThrowsWhenDestroyed&& o) noexcept : destroyed(o.destroyed), live(o.live) { o.live = false; }
    ThrowsWhenDestroyed(const ThrowsWhenDestroyed&) = delete;
    ThrowsWhenDestroyed& operator=(const ThrowsWhenDestroyed&) = delete;
    ThrowsWhenDestroyed& operator=(ThrowsWhenDestroyed&&) = delete;
    ~ThrowsWhenDestroyed() noexcept(false) {
        if (live) {
            destroyed->fetch_add(1);
            throw std::runtime_error("a destructor that throws");
        }
    }
    Verdict operator()(const brokk::Message&) { return Verdict::Ack; }

    std::shared_ptr<std::atomic<int>> destroyed;
    bool live = true;
};

}  // namespace

TEST(Lifetime, ThrowingDestructorIsSwallowedByTheFinaliser) {
    auto destroyed = support::counter();
    brokk::Broker broker;
    const std::uint64_t sub = broker.subscribe("t", ThrowsWhenDestroyed(destroyed));
    broker.publish("t", "1");
    broker.join(support::wait_bound());
    broker.unsubscribe(sub);
    EXPECT_TRUE(support::eventually([&] { return destroyed->load() == 1; }));
    broker.subscribe("t", ThrowsWhenDestroyed(destroyed));
    broker.close(support::wait_bound());
}  // ~Broker runs the second finaliser on this thread; its exception must not escape

TEST(Lifetime, ListenerDestroyedOnceAfterRemoveAndAtBrokerDestruction) {
    auto removed_token = std::make_shared<int>(0);
    auto kept_token = std::make_shared<int>(0);
    std::weak_ptr<int> removed_alive = removed_token, kept_alive = kept_token;
    {
        brokk::Broker broker;
        brokk::Listener removed, kept;
        removed.on_publish = [token = std::move(removed_token)](const brokk::Message&) {};
        kept.on_failed = [token = std::move(kept_token)](const brokk::Message&, std::string_view, bool) {};
        const std::uint64_t id = broker.add_listener(std::move(removed));
        broker.add_listener(std::move(kept));
        broker.publish("t", "1");
        EXPECT_FALSE(removed_alive.expired());
        broker.remove_listener(id);
        EXPECT_TRUE(support::eventually([&] { return removed_alive.expired(); }));
        EXPECT_FALSE(kept_alive.expired());
    }
    EXPECT_TRUE(kept_alive.expired());
}

TEST(Lifetime, DestroyingTheBrokerInsideItsOwnHandler) {
    auto destroyed = support::counter();
    support::Gate freed;
    std::mutex m;
    auto owner = std::make_unique<brokk::Broker>();
    const brokk::BrokerRef ref = owner->ref();
    ref.subscribe("t", [&m, &owner, &freed, t = support::Tracker(destroyed)](const brokk::Message&) {
        {
            std::lock_guard<std::mutex> lock(m);
            owner.reset();  // brokk_broker_free from inside: returns at once
        }
        freed.open();
        return Verdict::Ack;
    });
    ref.publish("t", "1");
    ASSERT_TRUE(freed.wait());
    // The teardown finishes on a brokk thread once the handler has returned; it deletes the
    // handler (and its Tracker) exactly once. The broker must not be touched any more.
    EXPECT_TRUE(support::eventually([&] { return destroyed->load() == 1; }));
    std::lock_guard<std::mutex> lock(m);
    EXPECT_EQ(owner, nullptr);
}

TEST(Threads, ConcurrentPublishersAndAConcurrentHandler) {
    std::atomic<int> handled{0};
    brokk::Broker broker;
    brokk::SubscriptionOptions o;
    o.concurrency = 4;
    broker.subscribe("busy", [&handled](const brokk::Message&) {
        handled++;
        return Verdict::Ack;
    }, o);
    std::vector<std::thread> publishers;
    Log<std::string> errors;
    for (int t = 0; t < 4; t++) {
        publishers.emplace_back([ref = broker.ref(), &errors] {
            try {
                for (int i = 0; i < 100; i++) ref.publish("busy", std::to_string(i));
            } catch (const std::exception& e) {
                errors.add(e.what());
            }
        });
    }
    for (std::thread& t : publishers) t.join();
    broker.join(support::wait_bound());
    EXPECT_EQ(errors.items(), std::vector<std::string>{});
    EXPECT_EQ(handled.load(), 400);
    EXPECT_EQ(broker.stats().processed, 400u);
}
