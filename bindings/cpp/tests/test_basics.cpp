// Versions, the status-to-exception mapping, construction, move semantics, and the two
// translation units that include brokk.hpp (odr_a.cpp, odr_b.cpp).
#include "support.hpp"

#include <type_traits>

using namespace std::chrono_literals;
using brokk::Verdict;
using support::expect_error;

// Each defined in its own translation unit, both including brokk.hpp.
std::string odr_round_trip_a();
std::string odr_round_trip_b();

static_assert(std::is_base_of_v<std::runtime_error, brokk::Error>, "brokk::Error is a std::runtime_error");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::TimeoutError>, "a timeout is transient");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::FullError>, "full is transient");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::UnavailableError>, "an unavailable store is transient");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::StorageFailedError>, "a failed store I/O is transient");
static_assert(std::is_base_of_v<brokk::TransientError, brokk::OutcomeUnknownError>, "an unknown outcome is transient");
static_assert(std::is_base_of_v<brokk::CallerError, brokk::IncompatibleStoreError>, "an incompatible store is the caller's");
static_assert(std::is_base_of_v<brokk::CallerError, brokk::CannotOpenStoreError>, "a store that cannot open is the caller's");
static_assert(!std::is_copy_constructible_v<brokk::Broker> && std::is_nothrow_move_constructible_v<brokk::Broker>,
              "Broker is move-only");
static_assert(!std::is_copy_constructible_v<brokk::Delivery> && std::is_nothrow_move_constructible_v<brokk::Delivery>,
              "Delivery is move-only");
static_assert(std::is_nothrow_copy_constructible_v<brokk::BrokerRef> && std::is_nothrow_copy_assignable_v<brokk::BrokerRef>,
              "BrokerRef is a handle that copies without throwing");
static_assert(sizeof(brokk::Stats) == sizeof(brokk_stats), "brokk::Stats mirrors every field of brokk_stats");

TEST(Version, LibraryMatchesHeader) {
    EXPECT_EQ(brokk::abi_version(), brokk::header_abi_version);
    EXPECT_EQ(brokk::version_number(), brokk::header_version_number);
    const std::string expected = std::to_string(BROKK_VERSION_MAJOR) + "." + std::to_string(BROKK_VERSION_MINOR) +
                                 "." + std::to_string(BROKK_VERSION_PATCH);
    EXPECT_EQ(brokk::version(), expected);
}

TEST(Version, TwoTranslationUnitsIncludeTheHeader) {
    EXPECT_EQ(odr_round_trip_a(), "a:{\"from\":\"a\"}");
    EXPECT_EQ(odr_round_trip_b(), "b:{\"from\":\"b\"}");
}

// The vectors of src/names.rs, checked in every language.
TEST(Names, TopicNameVectors) {
    const struct {
        const char* in;
        std::size_t max;
        const char* want;
    } vectors[] = {
        {"default", 255, "default"},       {"orders.eu-west1", 255, "orders.eu-west1"},
        {"my app", 255, "my_20app"},       {"billing(v2)", 255, "billing_28v2_29"},
        {"team/app", 255, "team_2fapp"},   {"a_b", 255, "a_5fb"},
        {"\xc3\xbc", 255, "_c3_bc"},        {"", 255, ""},
        {"abcdefghijklmnopqrstuvwxyz", 20, "ab_x8450deb1cdc382a2"},
    };
    for (const auto& v : vectors) EXPECT_EQ(brokk::topic_name(v.in, v.max), v.want);
    EXPECT_EQ(brokk::topic_name(std::string(300, 'x')).size(), 255u);
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_UTF8, [] { brokk::topic_name("\xff"); });
}

// Every status maps onto exactly the exception class its brokk_status_classify() class says.
TEST(Errors, EachStatusMapsToItsClass) {
    const brokk::Status caller[] = {
        BROKK_STATUS_NULL_ARGUMENT,        BROKK_STATUS_INVALID_UTF8,         BROKK_STATUS_INVALID_JSON,
        BROKK_STATUS_INVALID_TOPIC,        BROKK_STATUS_INVALID_ID,           BROKK_STATUS_PAYLOAD_TOO_LARGE,
        BROKK_STATUS_INVALID_ARGUMENT,     BROKK_STATUS_INVALID_URL,          BROKK_STATUS_BUFFER_TOO_SMALL,
        BROKK_STATUS_WOULD_DEADLOCK,       BROKK_STATUS_UNSUPPORTED_BACKEND,  BROKK_STATUS_INVALID_GROUP,
        BROKK_STATUS_UNKNOWN_SUBSCRIPTION, BROKK_STATUS_UNKNOWN_DELIVERY,     BROKK_STATUS_ALREADY_SETTLED,
        BROKK_STATUS_UNKNOWN_LISTENER,
    };
    for (brokk::Status s : caller) {
        EXPECT_EQ(brokk::status_class(s), BROKK_STATUS_CLASS_CALLER);
        expect_error<brokk::CallerError>(s, [s] { brokk::detail::throw_status(s); });
    }
    expect_error<brokk::TimeoutError>(BROKK_STATUS_TIMEOUT, [] { brokk::detail::throw_status(BROKK_STATUS_TIMEOUT, 7); });
    expect_error<brokk::FullError>(BROKK_STATUS_FULL, [] { brokk::detail::throw_status(BROKK_STATUS_FULL); });
    expect_error<brokk::IncompatibleStoreError>(BROKK_STATUS_INCOMPATIBLE_STORE,
                                                [] { brokk::detail::throw_status(BROKK_STATUS_INCOMPATIBLE_STORE); });
    expect_error<brokk::CannotOpenStoreError>(BROKK_STATUS_CANNOT_OPEN_STORE,
                                              [] { brokk::detail::throw_status(BROKK_STATUS_CANNOT_OPEN_STORE); });
    expect_error<brokk::UnavailableError>(BROKK_STATUS_UNAVAILABLE,
                                          [] { brokk::detail::throw_status(BROKK_STATUS_UNAVAILABLE); });
    expect_error<brokk::StorageFailedError>(BROKK_STATUS_STORAGE_FAILED,
                                            [] { brokk::detail::throw_status(BROKK_STATUS_STORAGE_FAILED); });
    expect_error<brokk::OutcomeUnknownError>(BROKK_STATUS_OUTCOME_UNKNOWN,
                                             [] { brokk::detail::throw_status(BROKK_STATUS_OUTCOME_UNKNOWN); });
    expect_error<brokk::ClosedError>(BROKK_STATUS_CLOSED, [] { brokk::detail::throw_status(BROKK_STATUS_CLOSED); });
    expect_error<brokk::ForkedError>(BROKK_STATUS_FORKED, [] { brokk::detail::throw_status(BROKK_STATUS_FORKED); });
    expect_error<brokk::BugError>(BROKK_STATUS_PANIC, [] { brokk::detail::throw_status(BROKK_STATUS_PANIC); });
    const auto unknown = static_cast<brokk::Status>(4321);
    expect_error<brokk::BugError>(unknown, [unknown] { brokk::detail::throw_status(unknown); });

    try {
        brokk::detail::throw_status(BROKK_STATUS_TIMEOUT, 7);
    } catch (const brokk::TimeoutError& e) {
        EXPECT_EQ(e.remaining(), 7u);
        EXPECT_FALSE(e.close_report().has_value());
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TRANSIENT);
    }
    EXPECT_EQ(brokk::status_str(BROKK_STATUS_OK), std::string_view(brokk_status_str(BROKK_STATUS_OK)));
}

// The store statuses: their classes in the library, and catchable by class in C++.
TEST(Errors, StoreStatusesAreCaughtByTheirClass) {
    const std::pair<brokk::Status, brokk::StatusClass> store[] = {
        {BROKK_STATUS_INCOMPATIBLE_STORE, BROKK_STATUS_CLASS_CALLER},
        {BROKK_STATUS_CANNOT_OPEN_STORE, BROKK_STATUS_CLASS_CALLER},
        {BROKK_STATUS_UNAVAILABLE, BROKK_STATUS_CLASS_TRANSIENT},
        {BROKK_STATUS_STORAGE_FAILED, BROKK_STATUS_CLASS_TRANSIENT},
        {BROKK_STATUS_OUTCOME_UNKNOWN, BROKK_STATUS_CLASS_TRANSIENT},
    };
    for (const auto& [status, cls] : store) {
        EXPECT_EQ(brokk::status_class(status), cls) << status;
        EXPECT_NE(brokk::status_str(status), "unknown status") << status;
        try {
            brokk::detail::throw_status(status);
        } catch (const brokk::CallerError& e) {
            EXPECT_EQ(cls, BROKK_STATUS_CLASS_CALLER) << status;
            EXPECT_EQ(e.status(), status);
            EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_CALLER);
        } catch (const brokk::TransientError& e) {
            EXPECT_EQ(cls, BROKK_STATUS_CLASS_TRANSIENT) << status;
            EXPECT_EQ(e.status(), status);
            EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TRANSIENT);
        }
    }
    // The statuses next to them that brokk does not define stay bugs (205 is CANCELLED now,
    // test_cancel.cpp).
    expect_error<brokk::BugError>(static_cast<brokk::Status>(15), [] { brokk::detail::throw_status(static_cast<brokk::Status>(15)); });
    expect_error<brokk::BugError>(static_cast<brokk::Status>(206), [] { brokk::detail::throw_status(static_cast<brokk::Status>(206)); });
}

// OUTCOME_UNKNOWN (204) is its own transient exception, apart from UNAVAILABLE: a caller that
// retries after UnavailableError must not treat "may have taken effect" as "nothing was done".
TEST(Errors, OutcomeUnknownIsTransientAndNotUnavailable) {
    EXPECT_EQ(static_cast<std::uint32_t>(BROKK_STATUS_OUTCOME_UNKNOWN), 204u);
    EXPECT_EQ(brokk::status_class(BROKK_STATUS_OUTCOME_UNKNOWN), BROKK_STATUS_CLASS_TRANSIENT);
    EXPECT_NE(brokk::status_str(BROKK_STATUS_OUTCOME_UNKNOWN), "unknown status");
    try {
        brokk::detail::throw_status(BROKK_STATUS_OUTCOME_UNKNOWN);
    } catch (const brokk::UnavailableError& e) {
        ADD_FAILURE() << "OUTCOME_UNKNOWN caught as UnavailableError: " << e.what();
    } catch (const brokk::TransientError& e) {
        EXPECT_EQ(typeid(e), typeid(brokk::OutcomeUnknownError));
        EXPECT_EQ(e.status(), BROKK_STATUS_OUTCOME_UNKNOWN);
        EXPECT_EQ(e.status_class(), BROKK_STATUS_CLASS_TRANSIENT);
    }
}

// what() is brokk_last_error() of the failing call, read on the calling thread.
TEST(Errors, WhatIsTheLastErrorOfTheCall) {
    brokk::Broker broker;
    try {
        broker.publish("no spaces allowed", "{}");
        FAIL() << "publish accepted an invalid topic";
    } catch (const brokk::CallerError& e) {
        EXPECT_EQ(e.status(), BROKK_STATUS_INVALID_TOPIC);
        EXPECT_EQ(std::string(e.what()), std::string(brokk_last_error()));
    }
}

TEST(Construct, DefaultIsMemoryAndOptionsApply) {
    brokk::BrokerOptions options;
    options.worker_threads = 3;
    brokk::Broker broker(options);
    EXPECT_TRUE(static_cast<bool>(broker));
    EXPECT_EQ(broker.stats().workers, 3u);
    brokk::Broker memory("memory://");
    EXPECT_EQ(memory.stats().topics, 0u);
}

TEST(Construct, BadUrlsAndOptionsThrowCallerErrors) {
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_URL, [] { brokk::Broker b("not a url"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_URL, [] { brokk::Broker b("memory://extra"); });
    // A Redis Cluster over TLS is not in this build (docs/redis.md); rediss:// to one server is.
    expect_error<brokk::CallerError>(BROKK_STATUS_UNSUPPORTED_BACKEND,
                                     [] { brokk::Broker b("rediss+cluster://localhost"); });
    expect_error<brokk::CannotOpenStoreError>(BROKK_STATUS_CANNOT_OPEN_STORE,
                                              [] { brokk::Broker b("sqlite:///nonexistent-brokk-dir/x.db"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_UTF8, [] { brokk::Broker b("memory\xff://"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_ARGUMENT, [] {
        brokk::BrokerOptions o;
        o.worker_threads = BROKK_MAX_CONCURRENCY + 1;
        brokk::Broker b(o);
    });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_ARGUMENT, [] {
        brokk::BrokerOptions o;
        o.retention_policy = static_cast<brokk::RetentionPolicy>(99);
        brokk::Broker b(o);
    });
    expect_error<brokk::CallerError>(BROKK_STATUS_INVALID_ARGUMENT, [] {
        brokk::BrokerOptions o;
        o.backpressure = static_cast<brokk::Backpressure>(99);
        brokk::Broker b(o);
    });
}

TEST(Move, MovedFromBrokerIsEmptyAndSafe) {
    brokk::Broker a;
    const brokk::BrokerRef ref = a.ref();
    brokk::Broker b(std::move(a));
    EXPECT_FALSE(static_cast<bool>(a));  // NOLINT(bugprone-use-after-move): that is the test
    EXPECT_EQ(a.get(), nullptr);
    EXPECT_EQ(b.raw(), ref.raw());
    EXPECT_NO_THROW(ref.publish("still-alive", "1"));  // the handle did not move
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [&] { a.publish("t", "1"); });
    expect_error<brokk::CallerError>(BROKK_STATUS_NULL_ARGUMENT, [&] { brokk::BrokerRef().stats(); });

    // Move assignment frees the broker it replaces, finalisers included, before returning.
    auto destroyed = support::counter();
    brokk::Broker c;
    c.subscribe("t", [t = support::Tracker(destroyed)](const brokk::Message&) { return Verdict::Ack; });
    c = std::move(b);
    EXPECT_EQ(destroyed->load(), 1);
    EXPECT_EQ(c.raw(), ref.raw());
    EXPECT_EQ(c.count({"still-alive"}), 1u);
    brokk::Broker d(std::move(c));
    c = std::move(d);  // back again: d is now the empty one
    EXPECT_EQ(c.raw(), ref.raw());
}  // a and d are moved-from: destroying them is a no-op

TEST(Move, ReleaseHandsOverOwnership) {
    brokk::Broker a;
    brokk_broker* raw = a.release();
    EXPECT_FALSE(static_cast<bool>(a));
    ASSERT_NE(raw, nullptr);
    brokk::BrokerRef(raw).publish("t", "1");
    brokk_broker_free(raw);
}

// A BrokerRef taken before release() keeps the broker's on_handler_error: subscribing through it
// afterwards is safe and its handlers still report there.
TEST(Move, RefsTakenBeforeReleaseKeepTheHandlerErrorCallback) {
    auto reports = std::make_shared<std::atomic<int>>(0);
    brokk::BrokerOptions options;
    options.on_handler_error = [reports](const std::exception_ptr&, const brokk::Message&) { (*reports)++; };
    brokk::BrokerRef ref;
    brokk_broker* raw = nullptr;
    {
        brokk::Broker owner(options);
        ref = owner.ref();
        raw = owner.release();
    }  // the Broker object is gone; the broker and the callback are not
    ref.subscribe("t", [](const brokk::Message&) -> Verdict { throw std::runtime_error("x"); });
    ref.publish("t", "1");
    ref.join(support::wait_bound());
    EXPECT_EQ(reports->load(), 1);
    ref = brokk::BrokerRef();
    brokk_broker_free(raw);
}

TEST(Move, MovedFromDeliveryIsSafe) {
    brokk::Broker broker;
    broker.publish("jobs", "\"j\"");
    std::optional<brokk::Delivery> fetched = broker.fetch("jobs", support::wait_bound());
    ASSERT_TRUE(fetched.has_value());
    brokk::Delivery first = std::move(*fetched);
    const std::uint64_t id = first.delivery_id();
    EXPECT_NE(id, 0u);
    EXPECT_EQ(first.message().payload(), "\"j\"");
    brokk::Delivery second = std::move(first);
    EXPECT_EQ(first.get(), nullptr);  // NOLINT(bugprone-use-after-move)
    EXPECT_EQ(first.message().payload(), "");  // a view of NULL: empty, as the C accessors say
    EXPECT_EQ(first.delivery_id(), 0u);
    EXPECT_EQ(second.delivery_id(), id);
    broker.ack(second.message());
    fetched.reset();
}
