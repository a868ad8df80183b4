// What STYLE.md §12 asks of every binding: bad input, use after close, close from a handler, a
// throwing handler, re-entrant calls from handlers, and that a callable is destroyed exactly
// once. Plus concurrent use from several threads.
#include "support.hpp"

#include <algorithm>
#include <iostream>
#include <sstream>

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

namespace {

// What BrokerOptions::on_handler_error received, copied out (the Message is a view).
struct Reported {
    std::string what;  // what() of the exception, or "" for one not from std::exception
    bool is_logic_error = false;
    std::string topic;
    std::uint64_t delivery_id = 0, subscription_id = 0;
    std::uint32_t attempt = 0;
};

// Swaps std::cerr's buffer for a string while it lives.
class CaptureCerr {
public:
    CaptureCerr() : old_(std::cerr.rdbuf(buffer_.rdbuf())) {}
    ~CaptureCerr() { std::cerr.rdbuf(old_); }
    CaptureCerr(const CaptureCerr&) = delete;
    CaptureCerr& operator=(const CaptureCerr&) = delete;
    std::string text() const { return buffer_.str(); }

private:
    std::ostringstream buffer_;
    std::streambuf* old_;
};

}  // namespace

// A throwing handler is not silent: the broker's on_handler_error gets the exception itself (an
// exception_ptr: its type survives) and the message it was handling, on the worker thread, after
// the delivery was nacked with what() as the failure reason. It applies to handlers subscribed
// through any BrokerRef of the broker, also after the Broker was moved.
TEST(ThrowingHandler, OnHandlerErrorGetsTheExceptionAndTheMessage) {
    Log<Reported> reported;
    support::Observed observed;
    brokk::BrokerOptions options;
    options.on_handler_error = [&reported](const std::exception_ptr& error, const brokk::Message& m) {
        Reported r;
        r.topic = std::string(m.topic());
        r.delivery_id = m.delivery_id();
        r.subscription_id = m.subscription_id();
        r.attempt = m.attempt();
        try {
            std::rethrow_exception(error);
        } catch (const std::logic_error& e) {
            r.is_logic_error = true;
            r.what = e.what();
        } catch (const std::exception& e) {
            r.what = e.what();
        } catch (...) {
        }
        reported.add(r);
    };
    brokk::Broker first(options);
    brokk::Broker broker(std::move(first));
    broker.add_listener(observed.listener());
    const std::uint64_t logic = broker.subscribe("logic", [](const brokk::Message&) -> Verdict {
        throw std::invalid_argument("bad order 7");
    });
    const std::uint64_t other = broker.ref().subscribe("other", [](const brokk::Message&) -> Verdict { throw 42; });
    broker.publish("logic", "1");
    broker.join(support::wait_bound());
    broker.publish("other", "2");
    broker.join(support::wait_bound());

    const auto r = reported.items();
    const auto f = observed.failures.items();
    ASSERT_EQ(r.size(), 2u);
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(r[0].topic, "logic");
    EXPECT_TRUE(r[0].is_logic_error);
    EXPECT_EQ(r[0].what, "bad order 7");
    EXPECT_EQ(r[0].delivery_id, f[0].delivery_id);
    EXPECT_EQ(r[0].subscription_id, logic);
    EXPECT_EQ(r[0].attempt, 1u);
    EXPECT_EQ(f[0].reason, "bad order 7");  // still the failure reason listeners see
    EXPECT_EQ(r[1].topic, "other");
    EXPECT_FALSE(r[1].is_logic_error);
    EXPECT_EQ(r[1].what, "");
    EXPECT_EQ(r[1].delivery_id, f[1].delivery_id);
    EXPECT_EQ(r[1].subscription_id, other);
    EXPECT_EQ(broker.stats().failed, 2u);
}

// Without on_handler_error, a throwing handler writes one line on std::cerr naming the topic,
// the delivery and what(). A throwing on_handler_error is swallowed (the delivery is nacked all
// the same) and the broker carries on.
TEST(ThrowingHandler, DefaultReportIsOneLineOnStdCerr) {
    std::string text;
    std::uint64_t delivery = 0;
    {
        CaptureCerr cerr;
        brokk::Broker broker;
        Log<std::uint64_t> ids;
        broker.subscribe("orders", [&ids](const brokk::Message& m) -> Verdict {
            ids.add(m.delivery_id());
            throw std::runtime_error("inventory offline");
        });
        broker.publish("orders", "1");
        broker.join(support::wait_bound());
        ASSERT_EQ(ids.size(), 1u);
        delivery = ids.items()[0];
        broker.close(support::wait_bound());
        text = cerr.text();
    }
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
    EXPECT_NE(text.find("brokk"), std::string::npos) << text;
    EXPECT_NE(text.find("\"orders\""), std::string::npos) << text;
    EXPECT_NE(text.find("delivery " + std::to_string(delivery)), std::string::npos) << text;
    EXPECT_NE(text.find("inventory offline"), std::string::npos) << text;

    brokk::BrokerOptions options;
    std::atomic<int> calls{0};
    options.on_handler_error = [&calls](const std::exception_ptr&, const brokk::Message&) {
        calls++;
        throw std::runtime_error("the reporter fails too");
    };
    CaptureCerr cerr;
    brokk::Broker broker(options);
    broker.subscribe("t", [](const brokk::Message&) -> Verdict { throw std::runtime_error("x"); });
    broker.publish("t", "1");
    broker.publish("t", "2");
    broker.join(support::wait_bound());
    EXPECT_EQ(calls.load(), 2);
    EXPECT_EQ(broker.stats().failed, 2u);
    EXPECT_EQ(cerr.text(), "");  // a hook replaces the default report
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

// A forced close returns at once while a handler is blocked, and so does detach(), which gives
// the broker back to brokk without waiting (brokk_broker_release). The handler's callable stays
// alive until it returns; then brokk destroys it, exactly once, on one of its threads.
TEST(Lifetime, ForcedCloseAndDetachDoNotWaitForABlockedHandler) {
    auto destroyed = support::counter();
    auto started = std::make_shared<support::Gate>();
    auto unblock = std::make_shared<support::Gate>();
    auto returned = std::make_shared<std::atomic<bool>>(false);
    brokk::Broker broker;
    const brokk::BrokerRef ref = broker.ref();
    broker.subscribe("stuck", [started, unblock, returned, t = support::Tracker(destroyed)](const brokk::Message&) {
        started->open();
        unblock->wait();  // bounded: opened by the test, or after wait_bound()
        returned->store(true);
        return Verdict::Ack;
    });
    broker.publish("stuck", "1");
    ASSERT_TRUE(started->wait());

    const auto bound = std::chrono::milliseconds(1000) * support::scale();
    auto begin = std::chrono::steady_clock::now();
    const brokk::CloseReport report = broker.close(0ms, true);
    EXPECT_LT(std::chrono::steady_clock::now() - begin, bound) << "the forced close waited for the handler";
    EXPECT_EQ(report.remaining, 0u);
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [&] { ref.publish("stuck", "2"); });

    begin = std::chrono::steady_clock::now();
    broker.detach();
    EXPECT_LT(std::chrono::steady_clock::now() - begin, bound) << "detach waited for the handler";
    EXPECT_FALSE(static_cast<bool>(broker));
    EXPECT_EQ(broker.get(), nullptr);
    EXPECT_FALSE(returned->load());
    EXPECT_EQ(destroyed->load(), 0);  // still running: its callable is alive

    unblock->open();
    EXPECT_TRUE(support::eventually([&] { return destroyed->load() == 1; }));
    EXPECT_TRUE(returned->load());
    broker.detach();  // on an empty Broker: a no-op
}  // ~Broker of a detached Broker: a no-op

// detach() without a close first closes with force itself, as brokk_broker_release does.
TEST(Lifetime, DetachClosesAnOpenBroker) {
    auto destroyed = support::counter();
    brokk::Broker broker;
    broker.subscribe("t", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Later; },
                     [] {
                         brokk::SubscriptionOptions o;
                         o.manual_ack = true;
                         return o;
                     }());
    broker.publish("t", "1");
    EXPECT_TRUE(support::eventually([&] { return broker.stats().in_flight == 1; }));
    broker.detach();
    EXPECT_TRUE(support::eventually([&] { return destroyed->load() == 1; }));
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
