// brokk.hpp: the C++17 binding of brokk, header-only, over the C API in brokk.h.
//
// A thin mirror: every member calls one brokk_* function and converts its inputs and outputs;
// the core decides everything else (validation, ordering, limits). Read brokk.h for what each
// call does; this file documents only what the C++ layer adds:
//
//   Ownership   brokk::Broker owns a brokk_broker (move-only, std::unique_ptr with a deleter
//               calling brokk_broker_free); brokk::Delivery owns a fetched brokk_delivery.
//               brokk::BrokerRef is a copyable, non-owning handle with every operation, valid
//               until its Broker is destroyed (the handle does not move when a Broker is moved),
//               so capture a BrokerRef, not a Broker&, in handlers and threads.
//               brokk::Message is a non-owning view: valid during the callback that received
//               it, or as long as its Delivery. Copy the std::string_views you need to keep.
//               brokk::Cancel owns a brokk_cancel (move-only): the token that fetch,
//               fetch_batch, take and join take as an extra argument, and that cancel() from
//               any thread wakes, making the call throw CancelledError having done nothing.
//   Closing     close(timeout, force = true) returns at once, whatever a handler is doing.
//               ~Broker (brokk_broker_free) waits for the handler and listener calls running
//               at that moment, even after a forced close: once it returns, nothing of the
//               broker runs again and every registered callable is destroyed, so handlers may
//               capture references to objects that outlive the Broker. Broker::detach()
//               (brokk_broker_release) is the way not to wait: it returns at once, and brokk
//               destroys the callables on its own thread once the running ones return.
//   Errors      A failing call throws brokk::Error (a std::runtime_error) whose status() is the
//               brokk_status and whose what() is brokk_last_error(), read at once on the calling
//               thread. The exception type follows brokk_status_classify(): CallerError
//               (IncompatibleStoreError, CannotOpenStoreError), TransientError (TimeoutError,
//               FullError, UnavailableError, StorageFailedError, OutcomeUnknownError,
//               CancelledError), ClosedError, BugError.
//   Timeouts    std::chrono::milliseconds; brokk::forever maps to BROKK_WAIT_FOREVER, a negative
//               duration counts as zero.
//   Callbacks   A handler (any callable taking const brokk::Message& and returning
//               brokk::Verdict) or a brokk::Listener is moved to the heap; brokk owns it until
//               its free_user_data runs, which deletes it exactly once. Exceptions never cross
//               into brokk: a throwing handler is a NACK with what() as its failure reason, and
//               is reported to BrokerOptions::on_handler_error (by default one line on
//               std::cerr); an exception from a listener or a destructor is swallowed.
//   Threads     Broker and BrokerRef members are const and may be called from any thread
//               concurrently, as the C functions on `const brokk_broker *`. Handlers run on
//               brokk's worker threads, listeners on its listener thread.
//
// Every definition is inline (or a template), so any number of translation units may include
// this header.
#ifndef BROKK_HPP
#define BROKK_HPP

// C++17 or later (std::string_view, std::optional, inline variables). MSVC leaves __cplusplus
// at 199711L unless /Zc:__cplusplus is given; _MSVC_LANG is the standard it compiles. The rest
// of the header is skipped otherwise, so that this message is the only error it gives.
#if defined(_MSVC_LANG)
#define BROKK_HPP_CPLUSPLUS _MSVC_LANG
#elif defined(__cplusplus)
#define BROKK_HPP_CPLUSPLUS __cplusplus
#else
#define BROKK_HPP_CPLUSPLUS 0L
#endif
#if BROKK_HPP_CPLUSPLUS < 201703L
#error "brokk.hpp needs C++17 or later: compile with -std=c++17 (GCC, Clang) or /std:c++17 (MSVC); C and older C++ can use brokk.h"
#else

#include "brokk.h"

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace brokk {

// ---- statuses and versions -------------------------------------------------------------------

/// The C status enum (a uint32_t-based enum in C++), e.g. BROKK_STATUS_CLOSED.
using Status = brokk_status;
/// The C status class enum, e.g. BROKK_STATUS_CLASS_CALLER.
using StatusClass = brokk_status_class;

/// A static description of `status` (brokk_status_str).
inline std::string_view status_str(Status status) noexcept { return brokk_status_str(status); }

/// What kind of failure `status` is (brokk_status_classify).
inline StatusClass status_class(Status status) noexcept { return brokk_status_classify(status); }

/// The version this header was built with (BROKK_VERSION_NUMBER, BROKK_ABI_VERSION).
inline constexpr std::uint32_t header_version_number = BROKK_VERSION_NUMBER;
inline constexpr std::uint32_t header_abi_version = BROKK_ABI_VERSION;

/// The library's version as "MAJOR.MINOR.PATCH" (brokk_version).
inline std::string_view version() noexcept { return brokk_version(); }
/// The library's BROKK_VERSION_NUMBER (brokk_version_number).
inline std::uint32_t version_number() noexcept { return brokk_version_number(); }
/// The library's BROKK_ABI_VERSION (brokk_abi_version); must equal header_abi_version.
inline std::uint32_t abi_version() noexcept { return brokk_abi_version(); }

/// A timeout without limit (BROKK_WAIT_FOREVER).
inline constexpr std::chrono::milliseconds forever = std::chrono::milliseconds::max();

// ---- plain data ------------------------------------------------------------------------------

/// What close did (brokk_close_report).
struct CloseReport {
    std::uint64_t remaining = 0;
    std::uint64_t dropped = 0;
    std::uint64_t retained_discarded = 0;
};

/// Broker-wide statistics (brokk_stats, field for field; see brokk.h for units and kinds).
struct Stats {
    std::uint64_t published = 0;
    std::uint64_t unrouted = 0;
    std::uint64_t dispatched = 0;
    std::uint64_t processed = 0;
    std::uint64_t failed = 0;
    std::uint64_t requeued = 0;
    std::uint64_t dropped = 0;
    std::uint64_t queued = 0;
    std::uint64_t in_flight = 0;
    std::uint64_t retained = 0;
    std::uint64_t retained_dropped = 0;
    std::uint64_t delayed = 0;
    std::uint64_t expired = 0;
    std::uint64_t dead_lettered = 0;
    std::uint64_t full_dropped = 0;
    std::uint64_t groups = 0;
    std::uint64_t topics = 0;
    std::uint64_t subscriptions = 0;
    std::uint64_t listeners = 0;
    std::uint64_t workers = 0;
    std::uint64_t workers_active = 0;
    std::uint64_t listener_events_dropped = 0;
    std::uint64_t uptime_ms = 0;
    /// Hand-outs that ended with no verdict taking effect (counter); after a successful join,
    /// dispatched = processed + failed + requeued + lapsed.
    std::uint64_t lapsed = 0;
};

// ---- errors ----------------------------------------------------------------------------------

/// A failing brokk call. status() is its brokk_status; what() is brokk_last_error() as read
/// right after the call (or the status description if that was empty).
class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    Status status() const noexcept { return status_; }
    StatusClass status_class() const noexcept { return brokk_status_classify(status_); }

private:
    Status status_;
};

/// BROKK_STATUS_CLASS_CALLER: the caller passed something wrong (bad topic, JSON, id, option;
/// unknown subscription, delivery or listener; already settled; WOULD_DEADLOCK; ...).
class CallerError : public Error {
public:
    using Error::Error;
};

/// BROKK_STATUS_INCOMPATIBLE_STORE: the store is not a brokk store, was written by a newer
/// brokk, or is corrupt; it was left unchanged.
class IncompatibleStoreError : public CallerError {
public:
    using CallerError::CallerError;
};

/// BROKK_STATUS_CANNOT_OPEN_STORE: the store cannot be opened as given (a directory, a missing
/// parent folder, no permission, a read-only file, a bad server address); nothing was changed.
class CannotOpenStoreError : public CallerError {
public:
    using CallerError::CallerError;
};

/// BROKK_STATUS_CLASS_TRANSIENT: retrying later may succeed.
class TransientError : public Error {
public:
    using Error::Error;
};

/// BROKK_STATUS_TIMEOUT. remaining() is the work the call reports as left (join: deliveries
/// outstanding; close: CloseReport::remaining). close_report() is set when close timed out:
/// the broker is closed all the same.
class TimeoutError : public TransientError {
public:
    TimeoutError(Status status, const std::string& message, std::uint64_t remaining,
                 std::optional<CloseReport> report = std::nullopt)
        : TransientError(status, message), remaining_(remaining), report_(report) {}
    std::uint64_t remaining() const noexcept { return remaining_; }
    const std::optional<CloseReport>& close_report() const noexcept { return report_; }

private:
    std::uint64_t remaining_;
    std::optional<CloseReport> report_;
};

/// BROKK_STATUS_FULL: a retention limit or a group's queue is full; nothing was published.
class FullError : public TransientError {
public:
    using TransientError::TransientError;
};

/// BROKK_STATUS_UNAVAILABLE: the store is out of reach for now (a file locked by another process,
/// a server that does not answer); nothing was done.
class UnavailableError : public TransientError {
public:
    using TransientError::TransientError;
};

/// BROKK_STATUS_STORAGE_FAILED: the store failed to read or write (an I/O error, a full disk);
/// the call had no effect.
class StorageFailedError : public TransientError {
public:
    using TransientError::TransientError;
};

/// BROKK_STATUS_OUTCOME_UNKNOWN: the connection to a server broke after the request may have
/// reached it, so the call may or may not have taken effect (a publish may be published, an ack
/// applied). Retrying a publish may publish it twice; a retried ack or nack may throw
/// CallerError (UNKNOWN_DELIVERY or ALREADY_SETTLED). Unlike UnavailableError, which always
/// means nothing was done. Not derived from UnavailableError, so that a `catch` meant for
/// "nothing was done, retry" does not catch it.
class OutcomeUnknownError : public TransientError {
public:
    using TransientError::TransientError;
};

/// BROKK_STATUS_CANCELLED: the brokk::Cancel given to the call was cancelled before it started
/// or while it waited; the call did nothing (fetch and take took nothing). Not a TimeoutError:
/// time did not run out, someone asked the call to stop.
class CancelledError : public TransientError {
public:
    using TransientError::TransientError;
};

/// BROKK_STATUS_CLASS_TERMINAL (BROKK_STATUS_CLOSED): nothing on this broker succeeds again.
class ClosedError : public Error {
public:
    using Error::Error;
};

/// BROKK_STATUS_FORKED: the broker was made by the parent of this process before a fork; a
/// child must make a broker of its own (destroying the parent's there is safe and releases
/// nothing).
class ForkedError : public ClosedError {
public:
    using ClosedError::ClosedError;
};

/// BROKK_STATUS_CLASS_BUG: brokk panicked inside the call, or returned a status this header
/// does not know. Please report.
class BugError : public Error {
public:
    using Error::Error;
};

namespace detail {

/// Throws the exception that `status` (not OK) maps to; reads brokk_last_error() first thing.
/// `remaining` and `report` travel with a TimeoutError.
[[noreturn]] inline void throw_status(Status status, std::uint64_t remaining = 0,
                                      std::optional<CloseReport> report = std::nullopt) {
    std::string message = brokk_last_error();
    if (message.empty()) message = brokk_status_str(status);
    switch (brokk_status_classify(status)) {
    case BROKK_STATUS_CLASS_CALLER:
        if (status == BROKK_STATUS_INCOMPATIBLE_STORE) throw IncompatibleStoreError(status, message);
        if (status == BROKK_STATUS_CANNOT_OPEN_STORE) throw CannotOpenStoreError(status, message);
        throw CallerError(status, message);
    case BROKK_STATUS_CLASS_TRANSIENT:
        if (status == BROKK_STATUS_TIMEOUT) throw TimeoutError(status, message, remaining, report);
        if (status == BROKK_STATUS_FULL) throw FullError(status, message);
        if (status == BROKK_STATUS_UNAVAILABLE) throw UnavailableError(status, message);
        if (status == BROKK_STATUS_STORAGE_FAILED) throw StorageFailedError(status, message);
        if (status == BROKK_STATUS_OUTCOME_UNKNOWN) throw OutcomeUnknownError(status, message);
        if (status == BROKK_STATUS_CANCELLED) throw CancelledError(status, message);
        throw TransientError(status, message);
    case BROKK_STATUS_CLASS_TERMINAL:
        if (status == BROKK_STATUS_FORKED) throw ForkedError(status, message);
        throw ClosedError(status, message);
    case BROKK_STATUS_CLASS_OK:
        // OK never reaches here; were it classified OK by a newer library, it is still a bug.
    case BROKK_STATUS_CLASS_BUG:
    default:
        throw BugError(status, message);
    }
}

inline void check(Status status) {
    if (status != BROKK_STATUS_OK) throw_status(status);
}

/// A pointer for a (pointer, length) pair: never NULL, so an empty view is judged by the core
/// as empty text ("" is an INVALID_TOPIC, not a NULL_ARGUMENT).
inline const char* data(std::string_view s) noexcept { return s.data() != nullptr ? s.data() : ""; }

inline std::string_view view(brokk_str s) noexcept { return std::string_view(s.ptr, s.len); }

/// Milliseconds for a timeout_ms/delay_ms parameter: forever is BROKK_WAIT_FOREVER, negative 0.
inline std::uint64_t millis(std::chrono::milliseconds d) noexcept {
    if (d == forever) return BROKK_WAIT_FOREVER;
    return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
}

/// Optional text as a C (pointer, length) pair: nullopt is NULL.
inline const char* optional_data(const std::optional<std::string>& s) noexcept {
    return s ? s->c_str() : nullptr;
}
inline std::size_t optional_size(const std::optional<std::string>& s) noexcept { return s ? s->size() : 0; }

}  // namespace detail

/// Maps any UTF-8 text onto a topic name fragment of at most `max_len` bytes
/// (brokk_topic_name_part), the same in every language: bytes of [A-Za-z0-9.-] are kept, every
/// other byte (`_` included) becomes `_` and two lowercase hex digits ("my app" -> "my_20app");
/// longer than `max_len`, it is cut and followed by `_x` and the input's 64-bit FNV-1a hash in 16
/// hex digits. Throws CallerError on invalid UTF-8, or if it must be cut and `max_len` < 18.
inline std::string topic_name(std::string_view s, std::size_t max_len = BROKK_TOPIC_MAX_LEN) {
    std::string out(max_len + 1, '\0');
    std::size_t len = 0;
    detail::check(brokk_topic_name_part(detail::data(s), s.size(), max_len, &out[0], out.size(), &len));
    out.resize(len);
    return out;
}

// ---- verdicts and message views --------------------------------------------------------------

/// A handler's answer (the BROKK_VERDICT_* values).
enum class Verdict : std::uint32_t {
    Ack = BROKK_VERDICT_ACK,
    Nack = BROKK_VERDICT_NACK,
    Requeue = BROKK_VERDICT_REQUEUE,
    Later = BROKK_VERDICT_LATER,
};

/// Every field of a message view, read in one call (brokk_message_fields, from
/// Message::fields()). The string_views have the lifetime of the Message they were read from.
struct MessageFields {
    std::string_view topic;
    std::string_view id;
    std::string_view parent_id;
    std::string_view payload;
    std::string_view metadata;
    std::string_view group;
    std::uint64_t delivery_id = 0;
    std::uint64_t subscription_id = 0;
    std::uint64_t timestamp_ms = 0;
    std::int32_t priority = 0;
    std::uint32_t attempt = 0;
};

/// A non-owning view of one delivery (brokk_message): valid only during the handler or listener
/// call that received it, or, from Delivery::message(), as long as that Delivery. Every
/// string_view it returns has the same lifetime. A view of NULL (a moved-from Delivery) gives
/// empty strings and zeros, as the C accessors do.
class Message {
public:
    explicit Message(const brokk_message* raw) noexcept : raw_(raw) {}

    std::string_view topic() const noexcept { return detail::view(brokk_message_topic(raw_)); }
    std::string_view payload() const noexcept { return detail::view(brokk_message_payload(raw_)); }
    std::string_view metadata() const noexcept { return detail::view(brokk_message_metadata(raw_)); }
    /// This delivery's id as decimal text (the published id in on_publish).
    std::string_view id() const noexcept { return detail::view(brokk_message_id(raw_)); }
    /// The published message's id (empty in on_publish).
    std::string_view parent_id() const noexcept { return detail::view(brokk_message_parent_id(raw_)); }
    /// The consumer group; empty for an ungrouped subscription.
    std::string_view group() const noexcept { return detail::view(brokk_message_group(raw_)); }
    /// What ack and nack take.
    std::uint64_t delivery_id() const noexcept { return brokk_message_delivery_id(raw_); }
    std::uint64_t subscription_id() const noexcept { return brokk_message_subscription_id(raw_); }
    std::int32_t priority() const noexcept { return brokk_message_priority(raw_); }
    std::uint32_t attempt() const noexcept { return brokk_message_attempt(raw_); }
    /// Publish time, in milliseconds since the Unix epoch.
    std::uint64_t timestamp_ms() const noexcept { return brokk_message_timestamp_ms(raw_); }
    std::chrono::system_clock::time_point timestamp() const noexcept {
        return std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(timestamp_ms()))));
    }

    /// Every field at once (brokk_message_read), one call instead of eleven: for copying a
    /// whole message. The views live as long as this Message's. Unlike the single accessors it
    /// throws for a view of NULL (a moved-from Delivery's): CallerError, NULL_ARGUMENT.
    MessageFields fields() const {
        brokk_message_fields f{};
        detail::check(brokk_message_read(raw_, &f));
        MessageFields out;
        out.topic = detail::view(f.topic);
        out.id = detail::view(f.id);
        out.parent_id = detail::view(f.parent_id);
        out.payload = detail::view(f.payload);
        out.metadata = detail::view(f.metadata);
        out.group = detail::view(f.group);
        out.delivery_id = f.delivery_id;
        out.subscription_id = f.subscription_id;
        out.timestamp_ms = f.timestamp_ms;
        out.priority = f.priority;
        out.attempt = f.attempt;
        return out;
    }

    /// Why the handler fails this delivery, for listeners (brokk_message_set_failure_reason).
    /// Only from the handler that received this message.
    void set_failure_reason(std::string_view reason) const {
        detail::check(brokk_message_set_failure_reason(raw_, detail::data(reason), reason.size()));
    }
    /// Delay of the REQUEUE the handler is about to return (brokk_message_set_requeue_delay).
    void set_requeue_delay(std::chrono::milliseconds delay) const {
        detail::check(brokk_message_set_requeue_delay(raw_, detail::millis(delay)));
    }

    const brokk_message* raw() const noexcept { return raw_; }

private:
    const brokk_message* raw_;
};

/// A fetched delivery (brokk_delivery), owned and move-only. Destroying it does not settle it:
/// ack or nack it by delivery_id() first.
class Delivery {
public:
    /// Takes ownership of `owned` (may be NULL).
    explicit Delivery(brokk_delivery* owned) noexcept : ptr_(owned) {}

    /// The message view, valid as long as this Delivery (and not after it is moved from).
    Message message() const noexcept { return Message(brokk_delivery_message(ptr_.get())); }
    /// message().delivery_id(): what ack and nack take.
    std::uint64_t delivery_id() const noexcept { return message().delivery_id(); }

    brokk_delivery* get() const noexcept { return ptr_.get(); }
    /// Gives up ownership: the caller must brokk_delivery_free the result.
    brokk_delivery* release() noexcept { return ptr_.release(); }

private:
    struct Free {
        void operator()(brokk_delivery* d) const noexcept { brokk_delivery_free(d); }
    };
    std::unique_ptr<brokk_delivery, Free> ptr_;
};

/// A delivery that a fetch of its group would get, as BrokerRef::peek shows it (one
/// brokk_peeked_fields), copied: a value that owns its strings. It has no delivery id (nothing
/// was handed out); attempt is the attempt a fetch of it now would be.
struct Peeked {
    std::string topic;
    /// The message id (the id publish returned).
    std::string id;
    /// The JSON payload, byte for byte as published.
    std::string payload;
    /// The metadata JSON object as published, or "{}".
    std::string metadata;
    std::int32_t priority = 0;
    std::uint32_t attempt = 0;
    /// Publish time, in milliseconds since the Unix epoch.
    std::uint64_t timestamp_ms = 0;
    std::chrono::system_clock::time_point timestamp() const noexcept {
        return std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(timestamp_ms))));
    }
};

/// The most deliveries one BrokerRef::peek shows (BROKK_MAX_PEEK).
inline constexpr std::size_t max_peek = BROKK_MAX_PEEK;

/// A cancellation token (brokk_cancel), owned and move-only: give it to fetch, fetch_batch,
/// take or join, and cancel() from any thread makes each of those calls that waits on it throw
/// CancelledError at once, having done nothing; a call given a token already cancelled throws
/// at once too, until reset(). One token serves any number of calls, one after another or at
/// once. Its members are const, as brokk_cancel_trigger and brokk_cancel_reset take a
/// `const brokk_cancel *`, so threads may share one Cancel by reference.
///
/// Destroying (or assigning to) a Cancel frees the token (brokk_cancel_free): no call may still
/// be using it, so it must outlive the calls it was given to. A moved-from Cancel holds nothing
/// (C's NULL): destroying it is a no-op, cancel() and reset() do nothing, cancelled() is false,
/// and a call given it waits as one given no token.
class Cancel {
public:
    /// A new token, not cancelled (brokk_cancel_new).
    Cancel() {
        brokk_cancel* out = nullptr;
        detail::check(brokk_cancel_new(&out));
        ptr_.reset(out);
    }
    /// Takes ownership of `owned` (may be NULL), e.g. a token made with
    /// brokk_cancel_new_checked.
    explicit Cancel(brokk_cancel* owned) noexcept : ptr_(owned) {}

    Cancel(Cancel&&) noexcept = default;
    Cancel& operator=(Cancel&&) noexcept = default;
    Cancel(const Cancel&) = delete;
    Cancel& operator=(const Cancel&) = delete;
    ~Cancel() = default;

    // noexcept: brokk_cancel_trigger and brokk_cancel_reset fail only for NULL (a moved-from
    // Cancel), where doing nothing is what C's NULL token means.

    /// Cancels the token (brokk_cancel_trigger): every call waiting on it throws CancelledError
    /// now, and every call given it later does so at once, until reset(). Idempotent; from any
    /// thread (not from a signal handler itself: it takes a lock).
    void cancel() const noexcept { brokk_cancel_trigger(ptr_.get()); }
    /// cancel(), under the C name.
    void trigger() const noexcept { cancel(); }
    /// Makes a cancelled token usable again (brokk_cancel_reset). A call that cancel() already
    /// woke still throws CancelledError.
    void reset() const noexcept { brokk_cancel_reset(ptr_.get()); }
    /// Whether the token is cancelled (brokk_cancel_is_cancelled).
    bool cancelled() const noexcept { return brokk_cancel_is_cancelled(ptr_.get()); }

    brokk_cancel* get() const noexcept { return ptr_.get(); }
    /// Gives up ownership: the caller must brokk_cancel_free the result.
    brokk_cancel* release() noexcept { return ptr_.release(); }

private:
    struct Free {
        void operator()(brokk_cancel* c) const noexcept { brokk_cancel_free(c); }
    };
    std::unique_ptr<brokk_cancel, Free> ptr_;
};

namespace detail {

/// The overloads that take a Cancel are templates on `C` = Cancel, not functions of a
/// `const Cancel&`, only so that a call spelling an older overload's defaulted argument as `{}`
/// (fetch(topic, timeout, {})) stays unambiguous: `{}` cannot deduce `C`, whereas it would
/// convert to a `const Cancel&` as well as to the options.
template <class C>
using IfCancel = std::enable_if_t<std::is_same_v<C, Cancel>, int>;

}  // namespace detail

// ---- options ---------------------------------------------------------------------------------

/// BROKK_RETENTION_* values. Another number is passed through; the core rejects it.
enum class RetentionPolicy : std::uint32_t {
    Reject = BROKK_RETENTION_REJECT,
    DropOldest = BROKK_RETENTION_DROP_OLDEST,
    DropNewest = BROKK_RETENTION_DROP_NEWEST,
    Off = BROKK_RETENTION_OFF,
};

/// BROKK_BACKPRESSURE_* values. Another number is passed through; the core rejects it.
enum class Backpressure : std::uint32_t {
    Block = BROKK_BACKPRESSURE_BLOCK,
    Fail = BROKK_BACKPRESSURE_FAIL,
    Drop = BROKK_BACKPRESSURE_DROP,
};

/// What BrokerOptions::on_handler_error is called with: the exception a handler threw (rethrow
/// it with std::rethrow_exception to inspect its type) and the message it was handling, a view
/// valid during the call only (topic(), delivery_id(), subscription_id(), attempt(), ...).
using HandlerErrorCallback = std::function<void(const std::exception_ptr& error, const Message& message)>;

/// brokk_broker_options; zero means the default, as in C.
struct BrokerOptions {
    std::uint32_t worker_threads = 0;
    std::uint64_t max_payload_bytes = 0;
    std::uint32_t listener_queue_capacity = 0;
    std::uint64_t retention_limit = 0;
    RetentionPolicy retention_policy = RetentionPolicy::Reject;
    std::uint64_t queue_capacity = 0;
    Backpressure backpressure = Backpressure::Block;
    std::chrono::milliseconds publish_timeout{0};

    /// The binding's own (not a brokk_broker_options field): called when a handler of this
    /// broker throws, on the worker thread that ran it, after the exception was turned into a
    /// NACK with what() as the failure reason (the delivery is nacked whatever this does). It
    /// applies to every handler subscribed to the broker, through the Broker or any of its
    /// BrokerRefs (not through a BrokerRef made from a raw pointer, whose handlers get the
    /// default), and may be called from several threads at once. An exception it throws is
    /// swallowed. Empty (the default): one line on std::cerr naming the topic, the delivery,
    /// the subscription, the attempt and what(); set a callable that does nothing to stay
    /// silent.
    HandlerErrorCallback on_handler_error;
};

/// brokk_publish_options. nullopt is NULL: a generated id, "{}" metadata.
struct PublishOptions {
    std::optional<std::string> id;
    std::optional<std::string> metadata;
    std::int32_t priority = 0;
};

/// One message of publish_batch (brokk_batch_message).
struct BatchMessage {
    std::string payload;
    PublishOptions options;
};

/// brokk_subscription_options; the defaults are C's zeros: auto-ack, concurrency 1, no group.
struct SubscriptionOptions {
    bool manual_ack = false;
    std::uint32_t concurrency = 0;
    std::optional<std::string> group;
    std::chrono::milliseconds ack_deadline{0};
    std::uint32_t max_attempts = 0;
    std::optional<std::string> dead_letter_topic;
};

/// brokk_fetch_options; nullopt group is the group named "default".
struct FetchOptions {
    std::optional<std::string> group;
    std::chrono::milliseconds ack_deadline{0};
    std::uint32_t max_attempts = 0;
    std::optional<std::string> dead_letter_topic;
};

// ---- listeners -------------------------------------------------------------------------------

/// An observer of broker events (brokk_listener): set the callbacks you want.
///
/// A struct of std::function rather than a class with virtual methods, because it mirrors
/// brokk_listener exactly: an empty std::function becomes a NULL callback, which brokk skips,
/// whereas the binding cannot tell which virtual methods a subclass overrides and would have to
/// register all seven. It is also a plain value: it is moved to the heap by add_listener and
/// destroyed (with whatever its lambdas captured) by the listener's free_user_data, so there is
/// no base class, no slicing and no question of who deletes a polymorphic object.
///
/// Every callback runs on the broker's listener thread, one event at a time; views are valid
/// during the call only. An exception thrown by a callback is swallowed (and that call lost).
struct Listener {
    std::function<void(const Message&)> on_publish;
    std::function<void(const Message&)> on_dispatched;
    std::function<void(const Message&)> on_processed;
    std::function<void(const Message&, std::string_view reason, bool requeued)> on_failed;
    std::function<void(std::string_view topic, std::uint64_t subscription_id)> on_subscribe;
    std::function<void(std::string_view topic, std::uint64_t subscription_id)> on_unsubscribe;
    std::function<void(std::string_view topic)> on_topic_created;
};

namespace detail {

// Trampolines: the C side calls these with the heap object as user_data. Function templates
// cannot have C language linkage; like every C++ wrapper of a C callback API we rely on GCC,
// Clang and MSVC giving C and C++ functions the same calling convention. Each is noexcept and
// catches everything: an exception unwinding into brokk's Rust frames is undefined behaviour.

/// Records `reason` as the failure reason; falls back to a fixed text if brokk refuses it (a
/// what() that is not UTF-8).
inline void set_reason_quietly(const brokk_message* msg, const char* reason) noexcept {
    std::string_view text = reason != nullptr ? reason : "";
    if (brokk_message_set_failure_reason(msg, text.data(), text.size()) != BROKK_STATUS_OK) {
        static constexpr std::string_view fallback = "the handler threw an exception whose what() is not UTF-8";
        brokk_message_set_failure_reason(msg, fallback.data(), fallback.size());
    }
}

/// A broker's BrokerOptions::on_handler_error, shared by the Broker, its BrokerRefs and every
/// subscription made through them, so that it lives as long as any of them: a handler still
/// running after detach() can still report, and a BrokerRef taken before release() can still
/// subscribe.
struct HandlerErrorHook {
    explicit HandlerErrorHook(HandlerErrorCallback cb) : callback(std::move(cb)) {}
    HandlerErrorCallback callback;
};

/// What subscribe moves to the heap: the callable and its broker's hook (null: the default).
template <class F>
struct Subscribed {
    template <class G>
    Subscribed(G&& g, std::shared_ptr<const HandlerErrorHook> hook) : fn(std::forward<G>(g)), on_error(std::move(hook)) {}
    F fn;
    std::shared_ptr<const HandlerErrorHook> on_error;
};

/// The default report of a throwing handler: one line on std::cerr, written with one insertion
/// so that lines from concurrent handlers do not interleave.
inline void report_to_cerr(const Message& message, const char* what) {
    std::string line = "brokk: a handler threw on topic \"";
    line.append(message.topic());
    line += "\" (delivery " + std::to_string(message.delivery_id()) + ", subscription " +
            std::to_string(message.subscription_id()) + ", attempt " + std::to_string(message.attempt()) +
            "); the delivery is nacked: ";
    line += what;
    line += '\n';
    std::cerr << line << std::flush;
}

/// Reports a handler's exception to `hook`, or by default to std::cerr; swallows anything the
/// report throws.
inline void report_handler_error(const HandlerErrorHook* hook, const std::exception_ptr& error, const Message& message,
                                 const char* what) noexcept {
    try {
        if (hook != nullptr && hook->callback) {
            hook->callback(error, message);
        } else {
            report_to_cerr(message, what);
        }
    } catch (...) {
    }
}

template <class F>
brokk_verdict handler_trampoline(void* user_data, const brokk_message* msg) noexcept {
    auto* subscribed = static_cast<Subscribed<F>*>(user_data);
    const Message message(msg);
    try {
        Verdict verdict = std::invoke(subscribed->fn, message);
        return static_cast<brokk_verdict>(verdict);
    } catch (const std::exception& e) {
        set_reason_quietly(msg, e.what());
        report_handler_error(subscribed->on_error.get(), std::current_exception(), message, e.what());
    } catch (...) {
        static constexpr const char* what = "the handler threw an exception not derived from std::exception";
        set_reason_quietly(msg, what);
        report_handler_error(subscribed->on_error.get(), std::current_exception(), message, what);
    }
    return BROKK_VERDICT_NACK;
}

/// free_user_data of a heap object: deletes it, swallowing a throwing destructor.
template <class T>
void delete_user_data(void* user_data) noexcept {
    try {
        delete static_cast<T*>(user_data);
    } catch (...) {
    }
}

// Listener trampolines: each calls one member of the Listener at user_data; exceptions are
// swallowed, as a Rust listener's panic loses only its own call.

template <class Fn, class... Args>
void call_quietly(const Fn& fn, Args&&... args) noexcept {
    try {
        fn(std::forward<Args>(args)...);
    } catch (...) {
    }
}

inline void on_publish_trampoline(void* ud, const brokk_message* m) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_publish, Message(m));
}
inline void on_dispatched_trampoline(void* ud, const brokk_message* m) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_dispatched, Message(m));
}
inline void on_processed_trampoline(void* ud, const brokk_message* m) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_processed, Message(m));
}
inline void on_failed_trampoline(void* ud, const brokk_message* m, const char* reason, std::size_t reason_len,
                                 bool requeued) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_failed, Message(m),
                 std::string_view(reason != nullptr ? reason : "", reason != nullptr ? reason_len : 0), requeued);
}
inline void on_subscribe_trampoline(void* ud, const char* topic, std::size_t topic_len, std::uint64_t id) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_subscribe, std::string_view(topic, topic_len), id);
}
inline void on_unsubscribe_trampoline(void* ud, const char* topic, std::size_t topic_len, std::uint64_t id) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_unsubscribe, std::string_view(topic, topic_len), id);
}
inline void on_topic_created_trampoline(void* ud, const char* topic, std::size_t topic_len) noexcept {
    call_quietly(static_cast<Listener*>(ud)->on_topic_created, std::string_view(topic, topic_len));
}

inline brokk_publish_options to_c(const PublishOptions& o) noexcept {
    brokk_publish_options c{};
    c.id = optional_data(o.id);
    c.id_len = optional_size(o.id);
    c.metadata = optional_data(o.metadata);
    c.metadata_len = optional_size(o.metadata);
    c.priority = o.priority;
    return c;
}

inline brokk_subscription_options to_c(const SubscriptionOptions& o) noexcept {
    brokk_subscription_options c{};
    c.manual_ack = o.manual_ack;
    c.concurrency = o.concurrency;
    c.group = optional_data(o.group);
    c.group_len = optional_size(o.group);
    c.ack_deadline_ms = millis(o.ack_deadline);
    c.max_attempts = o.max_attempts;
    c.dead_letter_topic = optional_data(o.dead_letter_topic);
    c.dead_letter_topic_len = optional_size(o.dead_letter_topic);
    return c;
}

inline brokk_fetch_options to_c(const FetchOptions& o) noexcept {
    brokk_fetch_options c{};
    c.group = optional_data(o.group);
    c.group_len = optional_size(o.group);
    c.ack_deadline_ms = millis(o.ack_deadline);
    c.max_attempts = o.max_attempts;
    c.dead_letter_topic = optional_data(o.dead_letter_topic);
    c.dead_letter_topic_len = optional_size(o.dead_letter_topic);
    return c;
}

inline brokk_broker_options to_c(const BrokerOptions& o) noexcept {
    brokk_broker_options c{};
    c.worker_threads = o.worker_threads;
    c.max_payload_bytes = o.max_payload_bytes;
    c.listener_queue_capacity = o.listener_queue_capacity;
    c.retention_limit = o.retention_limit;
    c.retention_policy = static_cast<brokk_retention_policy>(o.retention_policy);
    c.queue_capacity = o.queue_capacity;
    c.backpressure = static_cast<brokk_backpressure>(o.backpressure);
    c.publish_timeout_ms = millis(o.publish_timeout);
    return c;
}

inline CloseReport from_c(const brokk_close_report& r) noexcept {
    return CloseReport{r.remaining, r.dropped, r.retained_discarded};
}

inline Stats from_c(const brokk_stats& s) noexcept {
    Stats out;
    out.published = s.published;
    out.unrouted = s.unrouted;
    out.dispatched = s.dispatched;
    out.processed = s.processed;
    out.failed = s.failed;
    out.requeued = s.requeued;
    out.dropped = s.dropped;
    out.queued = s.queued;
    out.in_flight = s.in_flight;
    out.retained = s.retained;
    out.retained_dropped = s.retained_dropped;
    out.delayed = s.delayed;
    out.expired = s.expired;
    out.dead_lettered = s.dead_lettered;
    out.full_dropped = s.full_dropped;
    out.groups = s.groups;
    out.topics = s.topics;
    out.subscriptions = s.subscriptions;
    out.listeners = s.listeners;
    out.workers = s.workers;
    out.workers_active = s.workers_active;
    out.listener_events_dropped = s.listener_events_dropped;
    out.uptime_ms = s.uptime_ms;
    out.lapsed = s.lapsed;
    return out;
}

/// Name views for count/purge. An empty list is passed as a non-NULL pointer with count 0 (no
/// topic), never as NULL, which would mean every topic.
template <class Range>
std::vector<brokk_str> topic_views(const Range& topics) {
    std::vector<brokk_str> views;
    for (const auto& t : topics) {
        std::string_view s(t);
        views.push_back(brokk_str{data(s), s.size()});
    }
    return views;
}

inline const brokk_str* views_data(const std::vector<brokk_str>& views) noexcept {
    static const brokk_str none{"", 0};
    return views.empty() ? &none : views.data();
}

}  // namespace detail

// ---- the operator log -------------------------------------------------------------------------

/// How much a log record matters (brokk_log_level), most severe first.
enum class LogLevel : std::uint32_t {
    Error = BROKK_LOG_ERROR,
    Warn = BROKK_LOG_WARN,
    Info = BROKK_LOG_INFO,
    Debug = BROKK_LOG_DEBUG,
    Trace = BROKK_LOG_TRACE,
};

/// Receives brokk's log records (brokk_log_cb): what an operator needs to hear (a store outage
/// and reconnection, a lease that ran out, a dead process's groups collected, listener events
/// dropped, a long wait for SQLite's write lock, what a close left behind). `target` names the
/// part of brokk that speaks ("brokk::redis", "brokk::close", ...); both views are valid only
/// during the call. It runs on the brokk thread that saw the event, or on the thread inside a
/// brokk call, possibly on several at once, with no brokk lock held; an exception it throws is
/// swallowed (the record is lost).
using LogHandler = std::function<void(LogLevel level, std::string_view target, std::string_view message)>;

namespace detail {

inline void log_trampoline(void* user_data, brokk_log_level level, const char* target, const char* message) noexcept {
    call_quietly(*static_cast<LogHandler*>(user_data), static_cast<LogLevel>(level), std::string_view(target),
                 std::string_view(message));
}

/// Registers `handler` through `set` (one of the two C setters, bound to its other arguments):
/// an empty handler removes the callback.
template <class Set>
void set_log_handler(LogHandler handler, Set&& set) {
    if (!handler) {
        check(set(nullptr, nullptr, nullptr));
        return;
    }
    auto owned = std::make_unique<LogHandler>(std::move(handler));
    check(set(&log_trampoline, owned.get(), &delete_user_data<LogHandler>));
    owned.release();  // brokk owns it now: deleted once its last call has returned
}

}  // namespace detail

/// Sets the process-wide log handler (brokk_log_set_callback): it receives, up to `max_level`,
/// the records of every broker without a handler of its own (BrokerRef::set_log_handler) and
/// those of opening a store. An empty handler silences them again, which is the default. The
/// previous handler is destroyed once no call of it is running.
inline void set_log_handler(LogHandler handler, LogLevel max_level = LogLevel::Info) {
    detail::set_log_handler(std::move(handler), [max_level](brokk_log_cb cb, void* ud, brokk_free_cb free) {
        return brokk_log_set_callback(static_cast<brokk_log_level>(max_level), cb, ud, free);
    });
}

// ---- the broker ------------------------------------------------------------------------------

/// A non-owning handle on a broker, with every operation. Copyable; valid until the owning
/// Broker is destroyed (moving the Broker does not invalidate it). A default-constructed one is
/// NULL: its calls throw CallerError (BROKK_STATUS_NULL_ARGUMENT).
class BrokerRef {
public:
    BrokerRef() noexcept = default;
    /// A handle on `raw`. Handlers subscribed through it report exceptions the default way
    /// (std::cerr): it does not know the BrokerOptions of a Broker that owns `raw`.
    explicit BrokerRef(const brokk_broker* raw) noexcept : raw_(raw) {}

    const brokk_broker* raw() const noexcept { return raw_; }
    explicit operator bool() const noexcept { return raw_ != nullptr; }

    /// Publishes `payload` (JSON) on `topic`; returns the message id (brokk_broker_publish).
    std::string publish(std::string_view topic, std::string_view payload, const PublishOptions& options = {}) const {
        const brokk_publish_options c = detail::to_c(options);
        char id[BROKK_ID_BUFFER_SIZE];
        detail::check(brokk_broker_publish(raw_, detail::data(topic), topic.size(), detail::data(payload),
                                           payload.size(), &c, id, sizeof id));
        return std::string(id);
    }

    /// Publishes all of `messages` on `topic` or none; returns their ids in order
    /// (brokk_broker_publish_batch).
    std::vector<std::string> publish_batch(std::string_view topic, const std::vector<BatchMessage>& messages) const {
        std::vector<brokk_batch_message> batch(messages.size());
        for (std::size_t i = 0; i < messages.size(); i++) {
            batch[i].payload = detail::data(messages[i].payload);
            batch[i].payload_len = messages[i].payload.size();
            batch[i].options = detail::to_c(messages[i].options);
        }
        std::vector<char> ids(messages.size() * BROKK_ID_BUFFER_SIZE);
        detail::check(brokk_broker_publish_batch(raw_, detail::data(topic), topic.size(), batch.data(), batch.size(),
                                                 ids.empty() ? nullptr : ids.data(), ids.size()));
        std::vector<std::string> out;
        out.reserve(messages.size());
        for (std::size_t i = 0; i < messages.size(); i++) out.emplace_back(ids.data() + i * BROKK_ID_BUFFER_SIZE);
        return out;
    }

    /// Subscribes `handler` to `topic`; returns the subscription id (brokk_broker_subscribe).
    /// `handler` is any callable `Verdict(const Message&)`, moved (or copied) to the heap and
    /// deleted exactly once by brokk after its last call: at unsubscribe, or when the broker is
    /// freed. With concurrency above 1 it is called from several threads at once. If it throws,
    /// the delivery is nacked with what() as the failure reason and the exception goes to
    /// BrokerOptions::on_handler_error (by default, one line on std::cerr). If subscribe
    /// throws, the callable was never registered and is destroyed before the exception
    /// propagates.
    template <class F>
    std::uint64_t subscribe(std::string_view topic, F&& handler, const SubscriptionOptions& options = {}) const {
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_r_v<Verdict, Fn&, const Message&>,
                      "a brokk handler is callable as Verdict(const brokk::Message&)");
        using Owned = detail::Subscribed<Fn>;
        auto owned = std::make_unique<Owned>(std::forward<F>(handler), on_error_);
        const brokk_subscription_options c = detail::to_c(options);
        std::uint64_t id = 0;
        detail::check(brokk_broker_subscribe(raw_, detail::data(topic), topic.size(), &detail::handler_trampoline<Fn>,
                                             owned.get(), &detail::delete_user_data<Owned>, &c, &id));
        owned.release();  // brokk owns it now; delete_user_data<Owned> deletes it
        return id;
    }

    /// brokk_broker_unsubscribe.
    void unsubscribe(std::uint64_t subscription_id) const {
        detail::check(brokk_broker_unsubscribe(raw_, subscription_id));
    }

    /// Takes the next delivery of a group on `topic`, waiting up to `timeout` (0: not at all);
    /// nullopt if none came in time (brokk_broker_fetch). Ack or nack it by delivery_id().
    std::optional<Delivery> fetch(std::string_view topic, std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                  const FetchOptions& options = {}) const {
        const brokk_fetch_options c = detail::to_c(options);
        brokk_delivery* out = nullptr;
        detail::check(brokk_broker_fetch(raw_, detail::data(topic), topic.size(), &c, detail::millis(timeout), &out));
        if (out == nullptr) return std::nullopt;
        return std::optional<Delivery>(std::in_place, out);
    }
    /// fetch that `cancel` can interrupt: cancel.cancel() from any thread makes it throw
    /// CancelledError at once, having taken nothing (so does a token already cancelled).
    /// brokk_broker_fetch_batch_until of one delivery: brokk has no fetch_until, and a batch of
    /// one is a fetch.
    template <class C, detail::IfCancel<C> = 0>
    std::optional<Delivery> fetch(std::string_view topic, std::chrono::milliseconds timeout, const C& cancel,
                                  const FetchOptions& options = {}) const {
        const brokk_fetch_options c = detail::to_c(options);
        brokk_delivery* out = nullptr;
        std::size_t count = 0;
        detail::check(brokk_broker_fetch_batch_until(raw_, detail::data(topic), topic.size(), &c, 1,
                                                     detail::millis(timeout), cancel.get(), &out, &count));
        if (count == 0) return std::nullopt;
        return std::optional<Delivery>(std::in_place, out);
    }

    /// Takes up to `max` deliveries of a group on `topic` in one call: waits up to `timeout` for
    /// the first (0: not at all), then takes what is queued at that moment, highest priority
    /// first; empty if none came in time (brokk_broker_fetch_batch). Each Delivery owns its
    /// handle, as fetch's; ack them by delivery_id(), one by one or with ack_batch. Room for
    /// `max` handles is allocated for the call. max 0 throws CallerError (INVALID_ARGUMENT).
    std::vector<Delivery> fetch_batch(std::string_view topic, std::size_t max,
                                      std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                      const FetchOptions& options = {}) const {
        return fetch_batch_until(topic, max, timeout, nullptr, options);
    }
    /// fetch_batch that `cancel` can interrupt: cancel.cancel() from any thread makes it throw
    /// CancelledError at once, having taken nothing (so does a token already cancelled).
    template <class C, detail::IfCancel<C> = 0>
    std::vector<Delivery> fetch_batch(std::string_view topic, std::size_t max, std::chrono::milliseconds timeout,
                                      const C& cancel, const FetchOptions& options = {}) const {
        return fetch_batch_until(topic, max, timeout, cancel.get(), options);
    }

    /// Takes the next delivery of consumer group `group` (nullopt: "default") on `topic` and
    /// acks it in the same step, waiting up to `timeout` (0: not at all); returns its payload,
    /// or nullopt if none came in time. At most once: the message is gone from the group when
    /// this returns, whatever happens next. The timeout comes before the group, as fetch's
    /// comes before its options. brokk_broker_take_until: brokk hands back a payload of any
    /// size in a buffer of its own, copied into the std::string and freed.
    std::optional<std::string> take(std::string_view topic, std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                    std::optional<std::string_view> group = std::nullopt) const {
        return take_until(topic, timeout, nullptr, group);
    }
    /// take that `cancel` can interrupt: cancel.cancel() from any thread makes it throw
    /// CancelledError at once, having taken nothing (so does a token already cancelled).
    template <class C, detail::IfCancel<C> = 0>
    std::optional<std::string> take(std::string_view topic, std::chrono::milliseconds timeout, const C& cancel,
                                    std::optional<std::string_view> group = std::nullopt) const {
        return take_until(topic, timeout, cancel.get(), group);
    }

    /// The next `max` deliveries (1 to max_peek) that a fetch of consumer group `group`
    /// (nullopt: "default") on `topic` would get, in the order it would get them, without taking
    /// them (brokk_broker_peek): nothing is claimed, no attempt counted, no statistic or listener
    /// event. Deliveries in flight and requeues still waiting out their delay are left out.
    /// Nothing is created: a group that does not exist yet shows what the topic retains for its
    /// first named group (empty once it has one). `max` out of range: CallerError,
    /// INVALID_ARGUMENT.
    std::vector<Peeked> peek(std::string_view topic, std::optional<std::string_view> group = std::nullopt,
                             std::size_t max = 10) const {
        brokk_peek_result* result = nullptr;
        detail::check(brokk_broker_peek(raw_, detail::data(topic), topic.size(),
                                        group ? detail::data(*group) : nullptr, group ? group->size() : 0, max,
                                        &result));
        // Owned before anything that can throw (the copies may throw std::bad_alloc).
        std::unique_ptr<brokk_peek_result, void (*)(brokk_peek_result*)> owned(result, &brokk_peek_result_free);
        const std::size_t n = brokk_peek_result_count(owned.get());
        std::vector<Peeked> out;
        out.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            brokk_peeked_fields f{};
            detail::check(brokk_peek_result_read(owned.get(), i, &f));
            Peeked p;
            p.topic = std::string(detail::view(f.topic));
            p.id = std::string(detail::view(f.id));
            p.payload = std::string(detail::view(f.payload));
            p.metadata = std::string(detail::view(f.metadata));
            p.priority = f.priority;
            p.attempt = f.attempt;
            p.timestamp_ms = f.timestamp_ms;
            out.push_back(std::move(p));
        }
        return out;
    }

    /// brokk_broker_ack.
    void ack(std::uint64_t delivery_id) const { detail::check(brokk_broker_ack(raw_, delivery_id)); }
    void ack(const Message& message) const { ack(message.delivery_id()); }

    /// Acks the `count` deliveries at `ids` in order (brokk_broker_ack_batch). A failing id does
    /// not stop the others: the call acks every id it can, then throws the first failure's
    /// exception (CallerError UNKNOWN_DELIVERY or ALREADY_SETTLED, whose what() names the index
    /// and id); ClosedError stops the batch where it occurred. `acked_out`, if not null,
    /// receives how many were acked, as in C: also when the call throws. `ids` may be null
    /// when `count` is 0.
    void ack_batch(const std::uint64_t* ids, std::size_t count, std::size_t* acked_out = nullptr) const {
        detail::check(brokk_broker_ack_batch(raw_, ids, count, acked_out));
    }
    void ack_batch(const std::vector<std::uint64_t>& ids, std::size_t* acked_out = nullptr) const {
        ack_batch(ids.data(), ids.size(), acked_out);
    }
    void ack_batch(std::initializer_list<std::uint64_t> ids, std::size_t* acked_out = nullptr) const {
        ack_batch(ids.begin(), ids.size(), acked_out);
    }

    /// brokk_broker_nack: requeue after `delay`, or give up; `reason` reaches on_failed
    /// (nullopt: NULL).
    void nack(std::uint64_t delivery_id, bool requeue, std::chrono::milliseconds delay = std::chrono::milliseconds(0),
              std::optional<std::string_view> reason = std::nullopt) const {
        detail::check(brokk_broker_nack(raw_, delivery_id, requeue, detail::millis(delay),
                                        reason ? detail::data(*reason) : nullptr, reason ? reason->size() : 0));
    }
    void nack(const Message& message, bool requeue, std::chrono::milliseconds delay = std::chrono::milliseconds(0),
              std::optional<std::string_view> reason = std::nullopt) const {
        nack(message.delivery_id(), requeue, delay, reason);
    }

    /// Messages waiting on every topic (brokk_broker_count with NULL topics).
    std::uint64_t count() const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_count(raw_, nullptr, 0, &n));
        return n;
    }
    /// Messages waiting on the listed topics; an empty list counts nothing.
    std::uint64_t count(std::initializer_list<std::string_view> topics) const { return count_views(detail::topic_views(topics)); }
    std::uint64_t count(const std::vector<std::string>& topics) const { return count_views(detail::topic_views(topics)); }
    std::uint64_t count(const std::vector<std::string_view>& topics) const { return count_views(detail::topic_views(topics)); }

    /// Discards what count() counts on every topic; returns how many (brokk_broker_purge).
    std::uint64_t purge() const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_purge(raw_, nullptr, 0, &n));
        return n;
    }
    /// The same on the listed topics; an empty list purges nothing.
    std::uint64_t purge(std::initializer_list<std::string_view> topics) const { return purge_views(detail::topic_views(topics)); }
    std::uint64_t purge(const std::vector<std::string>& topics) const { return purge_views(detail::topic_views(topics)); }
    std::uint64_t purge(const std::vector<std::string_view>& topics) const { return purge_views(detail::topic_views(topics)); }

    /// Ready deliveries of consumer group `group` on `topic` (brokk_broker_count_group): what a
    /// fetch of that group could take now, its share of count({topic}). Deliveries in flight and
    /// requeues still waiting out their delay are left out. A group or topic that does not exist
    /// counts 0 and is not created.
    std::uint64_t count_group(std::string_view topic, std::string_view group) const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_count_group(raw_, detail::data(topic), topic.size(), detail::data(group),
                                               group.size(), &n));
        return n;
    }

    /// Discards what count_group() counts, atomically; returns how many
    /// (brokk_broker_purge_group). Deliveries in flight (settled as usual), delayed requeues,
    /// other groups, retained messages and the group itself stay. A group that does not exist
    /// purges 0 and is not created.
    std::uint64_t purge_group(std::string_view topic, std::string_view group) const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_purge_group(raw_, detail::data(topic), topic.size(), detail::data(group),
                                               group.size(), &n));
        return n;
    }

    /// Adds a listener (moved to the heap, deleted exactly once after its last callback);
    /// returns its id (brokk_broker_add_listener).
    std::uint64_t add_listener(Listener listener) const {
        auto owned = std::make_unique<Listener>(std::move(listener));
        brokk_listener c{};
        if (owned->on_publish) c.on_publish = &detail::on_publish_trampoline;
        if (owned->on_dispatched) c.on_dispatched = &detail::on_dispatched_trampoline;
        if (owned->on_processed) c.on_processed = &detail::on_processed_trampoline;
        if (owned->on_failed) c.on_failed = &detail::on_failed_trampoline;
        if (owned->on_subscribe) c.on_subscribe = &detail::on_subscribe_trampoline;
        if (owned->on_unsubscribe) c.on_unsubscribe = &detail::on_unsubscribe_trampoline;
        if (owned->on_topic_created) c.on_topic_created = &detail::on_topic_created_trampoline;
        c.user_data = owned.get();
        c.free_user_data = &detail::delete_user_data<Listener>;
        std::uint64_t id = 0;
        detail::check(brokk_broker_add_listener(raw_, &c, &id));
        owned.release();  // brokk owns it now
        return id;
    }

    /// brokk_broker_remove_listener.
    void remove_listener(std::uint64_t listener_id) const {
        detail::check(brokk_broker_remove_listener(raw_, listener_id));
    }

    /// Gives this broker a log handler of its own (brokk_broker_set_log_callback), taking its
    /// records up to `max_level` instead of the process-wide handler; an empty one removes it
    /// (back to the process-wide handler). The previous handler is destroyed once no call of it
    /// is running; the last one at the latest when the broker is freed.
    void set_log_handler(LogHandler handler, LogLevel max_level = LogLevel::Info) const {
        const brokk_broker* raw = raw_;
        detail::set_log_handler(std::move(handler), [raw, max_level](brokk_log_cb cb, void* ud, brokk_free_cb free) {
            return brokk_broker_set_log_callback(raw, static_cast<brokk_log_level>(max_level), cb, ud, free);
        });
    }

    /// brokk_broker_stats.
    Stats stats() const {
        brokk_stats s{};
        detail::check(brokk_broker_stats(raw_, &s));
        return detail::from_c(s);
    }

    /// brokk_broker_stats_json (schema in docs/c-api.md, "Statistics").
    std::string stats_json() const { return text(brokk_broker_stats_json); }

    /// brokk_broker_stats_prometheus: the Prometheus text exposition format 0.0.4 (metric
    /// names in docs/c-api.md, "Prometheus").
    std::string stats_prometheus() const { return text(brokk_broker_stats_prometheus); }

    /// brokk_broker_store_view_json: every topic the store holds, with its retained messages
    /// and each consumer group's ready, delayed and in-flight deliveries, read without changing
    /// anything (schema in docs/c-api.md, "Store view").
    std::string store_view_json() const { return text(brokk_broker_store_view_json); }

    /// brokk_broker_store_view_prometheus: the store view as Prometheus gauges (brokk_store_*).
    std::string store_view_prometheus() const { return text(brokk_broker_store_view_prometheus); }

    /// Waits until everything is settled and every listener event delivered
    /// (brokk_broker_join). Throws TimeoutError (remaining(): deliveries outstanding) when
    /// `timeout` runs out, CallerError WOULD_DEADLOCK from a handler or listener.
    void join(std::chrono::milliseconds timeout) const { join_until(timeout, nullptr); }
    /// join that `cancel` can interrupt: cancel.cancel() from any thread makes it throw
    /// CancelledError at once (so does a token already cancelled).
    template <class C, detail::IfCancel<C> = 0>
    void join(std::chrono::milliseconds timeout, const C& cancel) const {
        join_until(timeout, cancel.get());
    }

    /// Closes the broker (brokk_broker_close) and returns what it did. When `timeout` runs out
    /// it throws TimeoutError instead, whose remaining() and close_report() tell what was left:
    /// the broker is closed all the same. A timeout is an exception here, as in join, so that a
    /// caller who ignores the result cannot miss dropped work. A second close throws
    /// ClosedError; a non-forced close from a handler or listener throws CallerError
    /// (WOULD_DEADLOCK).
    CloseReport close(std::chrono::milliseconds timeout, bool force = false) const {
        brokk_close_report r{};
        const Status status = brokk_broker_close(raw_, detail::millis(timeout), force, &r);
        if (status == BROKK_STATUS_TIMEOUT) detail::throw_status(status, r.remaining, detail::from_c(r));
        detail::check(status);
        return detail::from_c(r);
    }

protected:
    const brokk_broker* raw_ = nullptr;
    /// The owning Broker's on_handler_error, or null (the default report). Shared rather than
    /// borrowed, so that a BrokerRef taken before Broker::release() never points to a freed
    /// one; copying a BrokerRef costs one atomic increment.
    std::shared_ptr<const detail::HandlerErrorHook> on_error_;

private:
    /// A string that `call` (broker, out, length) hands back for the caller to free, copied.
    std::string text(brokk_status (*call)(const brokk_broker*, char**, std::size_t*)) const {
        char* out = nullptr;
        std::size_t len = 0;
        detail::check(call(raw_, &out, &len));
        std::unique_ptr<char, void (*)(char*)> owned(out, &brokk_string_free);
        return std::string(owned.get(), len);
    }

    // The calls with and without a Cancel share one path: brokk's *_until functions given a
    // NULL token are the plain ones (brokk.h).

    std::vector<Delivery> fetch_batch_until(std::string_view topic, std::size_t max, std::chrono::milliseconds timeout,
                                            const brokk_cancel* cancel, const FetchOptions& options) const {
        const brokk_fetch_options c = detail::to_c(options);
        // Never a NULL array, even for max 0: brokk, not the binding, judges max.
        std::vector<brokk_delivery*> handles(max > 0 ? max : 1, nullptr);
        std::size_t count = 0;
        detail::check(brokk_broker_fetch_batch_until(raw_, detail::data(topic), topic.size(), &c, max,
                                                     detail::millis(timeout), cancel, handles.data(), &count));
        std::vector<Delivery> out;
        try {
            out.reserve(count);
        } catch (...) {
            for (std::size_t i = 0; i < count; i++) brokk_delivery_free(handles[i]);
            throw;
        }
        for (std::size_t i = 0; i < count; i++) out.emplace_back(handles[i]);  // noexcept from here
        return out;
    }

    std::optional<std::string> take_until(std::string_view topic, std::chrono::milliseconds timeout,
                                          const brokk_cancel* cancel, std::optional<std::string_view> group) const {
        char* payload = nullptr;
        std::size_t len = 0;
        detail::check(brokk_broker_take_until(raw_, detail::data(topic), topic.size(),
                                              group ? detail::data(*group) : nullptr, group ? group->size() : 0,
                                              detail::millis(timeout), cancel, &payload, &len));
        // Owned before anything that can throw (the copy may throw std::bad_alloc).
        std::unique_ptr<char, void (*)(char*)> owned(payload, &brokk_string_free);
        if (owned == nullptr) return std::nullopt;  // nothing came in time
        return std::string(owned.get(), len);
    }

    void join_until(std::chrono::milliseconds timeout, const brokk_cancel* cancel) const {
        std::uint64_t remaining = 0;
        const Status status = brokk_broker_join_until(raw_, detail::millis(timeout), cancel, &remaining);
        if (status != BROKK_STATUS_OK) detail::throw_status(status, remaining);
    }

    std::uint64_t count_views(const std::vector<brokk_str>& views) const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_count(raw_, detail::views_data(views), views.size(), &n));
        return n;
    }
    std::uint64_t purge_views(const std::vector<brokk_str>& views) const {
        std::uint64_t n = 0;
        detail::check(brokk_broker_purge(raw_, detail::views_data(views), views.size(), &n));
        return n;
    }
};

/// Owns a broker (brokk_broker_new / brokk_broker_free): move-only.
///
/// Destruction frees it (brokk_broker_free): it force-closes the broker if needed, waits for
/// the handler and listener calls running at that moment, and deletes every registered handler
/// and listener before it returns. That wait is the RAII guarantee: once ~Broker returns,
/// nothing of this broker runs again, so handlers may capture references to objects declared
/// before the Broker. It holds after a forced close too: close(timeout, true) returns at once,
/// but the destructor that follows still waits for a handler that is running. Close with a
/// timeout first to bound the work left; call detach() instead of destroying when a handler
/// that may be stuck must not hold up the caller. Destroying a Broker from inside one of its
/// own callbacks returns at once (brokk finishes the teardown when the callback returns).
///
/// A moved-from or detached Broker holds nothing: destroying it is a no-op, and its calls throw
/// CallerError (BROKK_STATUS_NULL_ARGUMENT). It derives from BrokerRef only to share its
/// operations; BrokerRef has no virtual destructor, so never own a Broker through a BrokerRef
/// pointer.
class Broker : public BrokerRef {
public:
    /// brokk_broker_new(url, options). Throws CallerError for a bad URL or options.
    explicit Broker(const std::string& url = "memory://", const BrokerOptions& options = {}) {
        const brokk_broker_options c = detail::to_c(options);
        std::shared_ptr<const detail::HandlerErrorHook> on_error;
        if (options.on_handler_error) on_error = std::make_shared<detail::HandlerErrorHook>(options.on_handler_error);
        brokk_broker* out = nullptr;
        detail::check(brokk_broker_new(url.c_str(), &c, &out));
        owner_.reset(out);
        raw_ = out;
        on_error_ = std::move(on_error);
    }
    /// A "memory://" broker with `options`.
    explicit Broker(const BrokerOptions& options) : Broker("memory://", options) {}

    Broker(Broker&& other) noexcept : BrokerRef(std::move(other)), owner_(std::move(other.owner_)) {
        other.raw_ = nullptr;
        other.on_error_.reset();
    }
    Broker& operator=(Broker&& other) noexcept {
        if (this != &other) {
            owner_ = std::move(other.owner_);  // frees the broker this one held, if any
            raw_ = other.raw_;
            on_error_ = std::move(other.on_error_);
            other.raw_ = nullptr;
            other.on_error_.reset();
        }
        return *this;
    }
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;
    ~Broker() = default;

    /// A non-owning handle to capture in handlers and threads.
    BrokerRef ref() const noexcept { return static_cast<const BrokerRef&>(*this); }

    brokk_broker* get() const noexcept { return owner_.get(); }
    /// Gives up ownership: the caller must brokk_broker_free (or brokk_broker_release) the
    /// result. BrokerRefs taken before keep this broker's on_handler_error; a BrokerRef made
    /// from the raw pointer afterwards gets the default report.
    brokk_broker* release() noexcept {
        raw_ = nullptr;
        on_error_.reset();
        return owner_.release();
    }

    /// Gives the broker back to brokk without waiting for its callbacks (brokk_broker_release)
    /// and leaves this Broker empty, like a moved-from one; a no-op on an empty Broker. It
    /// closes the broker with force if it is not closed yet, and returns at once even while a
    /// handler is blocked: handler and listener calls running at that moment finish on their
    /// own, and brokk then destroys every registered callable (once each) on one of its
    /// threads. What those callables refer to must therefore outlive them, not just this call
    /// (capture by value or std::shared_ptr). Allowed inside the broker's own callbacks.
    void detach() noexcept {
        brokk_broker_release(owner_.release());
        raw_ = nullptr;
        on_error_.reset();  // subscriptions hold their own share of it
    }

private:
    struct Free {
        void operator()(brokk_broker* b) const noexcept { brokk_broker_free(b); }
    };
    std::unique_ptr<brokk_broker, Free> owner_;
};

}  // namespace brokk

#endif  // BROKK_HPP_CPLUSPLUS >= 201703L
#undef BROKK_HPP_CPLUSPLUS

#endif  // BROKK_HPP
