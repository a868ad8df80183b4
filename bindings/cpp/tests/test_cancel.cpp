// brokk::Cancel (brokk_cancel) and the fetch, fetch_batch, take and join overloads that take
// one: a blocked call is woken from another thread and throws CancelledError having done
// nothing; a token already cancelled makes a call throw at once.
#include "support.hpp"

#include <type_traits>

using namespace std::chrono_literals;
using support::Backend;
using support::expect_error;
using support::expect_woken_by_cancel;
using support::interrupted_wait;

static_assert(!std::is_copy_constructible_v<brokk::Cancel>, "Cancel owns its token: move-only");
static_assert(!std::is_copy_assignable_v<brokk::Cancel>, "Cancel owns its token: move-only");
static_assert(std::is_nothrow_move_constructible_v<brokk::Cancel>, "moving a Cancel cannot fail");
static_assert(std::is_nothrow_move_assignable_v<brokk::Cancel>, "moving a Cancel cannot fail");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::CancelledError>, "CANCELLED is transient");

namespace {

// The call is waiting once its group exists: fetch and take create it as they start.
std::function<bool()> group_exists(const brokk::BrokerRef& broker) {
    return [broker] { return broker.stats().groups >= 1; };
}

}  // namespace

// CANCELLED (205) is its own transient exception: not a TimeoutError, since no time ran out.
TEST(Errors, CancelledIsTransientAndItsOwnException) {
    EXPECT_EQ(static_cast<std::uint32_t>(BROKK_STATUS_CANCELLED), 205u);
    EXPECT_EQ(brokk::status_class(BROKK_STATUS_CANCELLED), BROKK_STATUS_CLASS_TRANSIENT);
    EXPECT_NE(brokk::status_str(BROKK_STATUS_CANCELLED), "unknown status");
    expect_error<brokk::CancelledError>(BROKK_STATUS_CANCELLED,
                                        [] { brokk::detail::throw_status(BROKK_STATUS_CANCELLED); });
}

TEST(Cancel, CancelResetAndTriggerSetWhatCancelledSays) {
    const brokk::Cancel cancel;
    EXPECT_NE(cancel.get(), nullptr);
    EXPECT_FALSE(cancel.cancelled());
    cancel.cancel();
    EXPECT_TRUE(cancel.cancelled());
    cancel.cancel();  // idempotent
    EXPECT_TRUE(cancel.cancelled());
    cancel.reset();
    EXPECT_FALSE(cancel.cancelled());
    cancel.trigger();
    EXPECT_TRUE(cancel.cancelled());
}

TEST(Cancel, IsMoveOnlyAndAMovedFromCancelIsSafe) {
    brokk::Cancel a;
    brokk_cancel* const raw = a.get();
    brokk::Cancel b = std::move(a);
    EXPECT_EQ(b.get(), raw);
    EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move)
    // A moved-from Cancel is C's NULL token: its members do nothing, and a call given it waits
    // as one given no token.
    a.cancel();
    a.reset();
    EXPECT_FALSE(a.cancelled());
    brokk::Broker broker;
    EXPECT_EQ(broker.take("t", 0ms, a), std::nullopt);
    broker.join(support::wait_bound(), a);
    b.cancel();
    EXPECT_TRUE(b.cancelled());
    EXPECT_FALSE(a.cancelled());

    // Assigning frees the token the target held (ASan and valgrind would see a leak).
    brokk::Cancel c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
    EXPECT_TRUE(c.cancelled());
    brokk::Cancel d;
    d = std::move(a);  // a moved-from source empties the target
    EXPECT_EQ(d.get(), nullptr);

    // release() and the adopting constructor hand the token over without freeing it.
    brokk::Cancel adopted(c.release());
    EXPECT_EQ(c.get(), nullptr);
    EXPECT_EQ(adopted.get(), raw);
    EXPECT_TRUE(adopted.cancelled());
}  // a, b, c and d are destroyed empty: no-ops

TEST_P(Backend, BlockedTakeIsWokenByCancelAndTakesNothing) {
    brokk::Broker broker(url());
    const brokk::Cancel cancel;
    expect_woken_by_cancel(cancel, [&] { broker.take("jobs", interrupted_wait(), cancel); }, group_exists(broker));
    broker.publish("jobs", "\"after\"");
    EXPECT_EQ(broker.count({"jobs"}), 1u);
    EXPECT_EQ(broker.take("jobs"), "\"after\"");
    EXPECT_EQ(broker.stats().processed, 1u);
}

TEST_P(Backend, BlockedFetchIsWokenByCancelAndTakesNothing) {
    brokk::Broker broker(url());
    const brokk::Cancel cancel;
    expect_woken_by_cancel(cancel, [&] { broker.fetch("jobs", interrupted_wait(), cancel); }, group_exists(broker));
    broker.publish("jobs", "\"after\"");
    std::optional<brokk::Delivery> d = broker.fetch("jobs");
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->message().payload(), "\"after\"");
    EXPECT_EQ(d->message().attempt(), 1u);  // the cancelled fetch never handed it out
    broker.ack(d->delivery_id());
}

TEST_P(Backend, BlockedFetchBatchIsWokenByCancelAndTakesNothing) {
    brokk::Broker broker(url());
    const brokk::Cancel cancel;
    expect_woken_by_cancel(cancel, [&] { broker.fetch_batch("jobs", 4, interrupted_wait(), cancel); },
                           group_exists(broker));
    broker.publish("jobs", "1");
    broker.publish("jobs", "2");
    cancel.reset();  // the same token serves again once reset
    std::vector<brokk::Delivery> batch = broker.fetch_batch("jobs", 4, 0ms, cancel);
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].message().payload(), "1");
    EXPECT_EQ(batch[1].message().payload(), "2");
    broker.ack_batch({batch[0].delivery_id(), batch[1].delivery_id()});
}

TEST_P(Backend, BlockedJoinIsWokenByCancelAndLeavesTheWorkOutstanding) {
    brokk::Broker broker(url());
    EXPECT_EQ(broker.take("jobs"), std::nullopt);  // the group, before publishing
    broker.publish("jobs", "1");
    std::optional<brokk::Delivery> held = broker.fetch("jobs", support::wait_bound());
    ASSERT_TRUE(held.has_value());
    const brokk::Cancel cancel;
    // join has nothing to show that it waits: a short pause makes a wait likely, and the
    // outcome is the same if the cancel comes first.
    expect_woken_by_cancel(cancel, [&] { broker.join(interrupted_wait(), cancel); }, [] {
        std::this_thread::sleep_for(50ms);
        return true;
    });
    EXPECT_EQ(broker.stats().in_flight, 1u);  // still held: join settles nothing
    broker.ack(held->delivery_id());
    cancel.reset();
    broker.join(support::wait_bound(), cancel);
}

TEST_P(Backend, AnAlreadyCancelledTokenThrowsAtOnceAndTakesNothing) {
    brokk::Broker broker(url());
    EXPECT_EQ(broker.take("jobs"), std::nullopt);  // the group, before publishing
    broker.publish("jobs", "\"waiting\"");
    const brokk::Cancel cancel;
    cancel.cancel();
    using E = brokk::CancelledError;
    // A message is there and the timeouts are unbounded: only the token makes these throw.
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.take("jobs", brokk::forever, cancel); });
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.fetch("jobs", brokk::forever, cancel); });
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.fetch_batch("jobs", 8, brokk::forever, cancel); });
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.join(brokk::forever, cancel); });
    // With options and group after the token.
    brokk::FetchOptions in_default;
    in_default.group = "default";
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.fetch("jobs", 0ms, cancel, in_default); });
    expect_error<E>(BROKK_STATUS_CANCELLED, [&] { broker.take("jobs", 0ms, cancel, "default"); });
    try {
        broker.take("jobs", 0ms, cancel);
        ADD_FAILURE() << "no exception";
    } catch (const brokk::TransientError& e) {  // catchable as its class
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TRANSIENT);
    }
    EXPECT_EQ(broker.count({"jobs"}), 1u);
    EXPECT_EQ(broker.stats().dispatched, 0u);

    cancel.reset();
    EXPECT_EQ(broker.take("jobs", brokk::forever, cancel, "default"), "\"waiting\"");
    broker.join(support::wait_bound(), cancel);
}

// The overloads that take a Cancel leave the older calls as they were: `{}` for the options or
// the group still picks the overload without a token (it cannot deduce one).
TEST(Cancel, OlderCallsSpellingDefaultsAsBracesStillCompile) {
    brokk::Broker broker;
    EXPECT_EQ(broker.fetch("t", 0ms, {}), std::nullopt);
    EXPECT_TRUE(broker.fetch_batch("t", 2, 0ms, {}).empty());
    EXPECT_EQ(broker.take("t", 0ms, {}), std::nullopt);
    const brokk::Cancel cancel;
    EXPECT_EQ(broker.fetch("t", 0ms, cancel, {}), std::nullopt);
    EXPECT_TRUE(broker.fetch_batch("t", 2, 0ms, cancel, {}).empty());
    EXPECT_EQ(broker.take("t", 0ms, cancel, {}), std::nullopt);
}
