//! Status codes: one per way a call can fail, grouped by class with gaps for growth. A retired
//! number stays here as a comment and is never reused.

use std::ffi::c_char;

use brokk_core::ErrorKind;

/// The result of every fallible brokk function. 0 is success; the hundreds give the class
/// (see brokk_status_classify). Numbers are stable: new codes get new numbers.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum brokk_status {
    /// Success.
    Ok = 0,
    // ---- caller mistakes: 1..=99 ----
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// A payload was not a JSON document, or metadata not a JSON object.
    InvalidJson = 3,
    /// A topic was empty, longer than BROKK_TOPIC_MAX_LEN, or used a character outside
    /// [A-Za-z0-9_.-].
    InvalidTopic = 4,
    /// A message id was empty, longer than BROKK_ID_MAX_LEN, or not printable ASCII.
    InvalidId = 5,
    /// A payload was larger than the broker's max_payload_bytes.
    PayloadTooLarge = 6,
    /// An option or argument was out of its documented range.
    InvalidArgument = 7,
    /// The backend URL could not be parsed.
    InvalidUrl = 8,
    /// An output buffer was too small; nothing was done.
    BufferTooSmall = 9,
    /// The call was made from a handler or listener of this broker and would wait for itself.
    WouldDeadlock = 10,
    /// The backend URL names a backend this build does not include.
    UnsupportedBackend = 11,
    /// A consumer group name was empty, longer than BROKK_TOPIC_MAX_LEN, or used a character
    /// outside [A-Za-z0-9_.-].
    InvalidGroup = 12,
    /// The store is not a brokk store, was written by a newer brokk, or is corrupt; it was
    /// left unchanged.
    IncompatibleStore = 13,
    /// The store cannot be opened as given (a directory, a missing parent folder, no
    /// permission, a read-only file, a bad server address); nothing was changed.
    CannotOpenStore = 14,
    // ---- unknown or stale ids: 100..=199 (also caller mistakes) ----
    /// No subscription has this id.
    UnknownSubscription = 100,
    /// No delivery with this id was ever issued by this broker.
    UnknownDelivery = 101,
    /// The delivery is not awaiting an ack: it was already acked or nacked, or auto-acked.
    AlreadySettled = 102,
    /// No listener has this id.
    UnknownListener = 103,
    // ---- transient: 200..=299 (retrying later may succeed) ----
    /// A wait ran out of time; the call reports how much work was left.
    Timeout = 200,
    /// Full: a consumer group's queue holds queue_capacity deliveries (backpressure BLOCK timed
    /// out, or FAIL), or a topic with no group retains retention_limit messages (retention
    /// REJECT). Nothing was published; retrying later may succeed.
    Full = 201,
    /// The store is out of reach for now: a file locked by another process beyond the busy
    /// timeout, or a server that does not answer. Nothing was done; retrying may succeed.
    Unavailable = 202,
    /// The store failed to read or write (an I/O error, a full disk); the call had no effect.
    StorageFailed = 203,
    /// The connection to a server broke after the request may have reached it: the call may
    /// or may not have taken effect (a publish may be published, an ack applied). Retrying a
    /// publish may publish it twice; a retried ack or nack may say UNKNOWN_DELIVERY or
    /// ALREADY_SETTLED. Unlike UNAVAILABLE, which always means nothing was done.
    OutcomeUnknown = 204,
    /// The call's cancellation token (brokk_cancel) was cancelled while it waited, or before
    /// it started: the call did nothing.
    Cancelled = 205,
    // ---- terminal: 300..=399 (this broker will not recover) ----
    /// The broker is closed.
    Closed = 300,
    /// The broker was made by the parent of this process before a fork: a child process
    /// cannot use its parent's broker (the call did nothing). Make a new broker in the child;
    /// brokk_broker_free of the parent's is safe there and releases nothing.
    Forked = 301,
    // ---- bugs: 900..=999 ----
    /// brokk panicked inside the call; brokk_last_error() has the panic message. Please report.
    Panic = 900,
}

/// What kind of failure a status is, for mapping onto exceptions or error classes.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum brokk_status_class {
    /// BROKK_STATUS_OK.
    Ok = 0,
    /// The caller passed something wrong; the same call will fail again.
    Caller = 1,
    /// Retrying later may succeed (a timeout).
    Transient = 2,
    /// The broker is closed; nothing on this handle will succeed again.
    Terminal = 3,
    /// A bug in brokk, or a status number this version does not know.
    Bug = 4,
}

impl From<ErrorKind> for brokk_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::InvalidTopic => brokk_status::InvalidTopic,
            ErrorKind::InvalidId => brokk_status::InvalidId,
            ErrorKind::InvalidGroup => brokk_status::InvalidGroup,
            ErrorKind::Full => brokk_status::Full,
            ErrorKind::InvalidJson => brokk_status::InvalidJson,
            ErrorKind::PayloadTooLarge => brokk_status::PayloadTooLarge,
            ErrorKind::InvalidArgument => brokk_status::InvalidArgument,
            ErrorKind::InvalidUrl => brokk_status::InvalidUrl,
            ErrorKind::UnsupportedBackend => brokk_status::UnsupportedBackend,
            ErrorKind::UnknownSubscription => brokk_status::UnknownSubscription,
            ErrorKind::UnknownDelivery => brokk_status::UnknownDelivery,
            ErrorKind::AlreadySettled => brokk_status::AlreadySettled,
            ErrorKind::UnknownListener => brokk_status::UnknownListener,
            ErrorKind::WouldDeadlock => brokk_status::WouldDeadlock,
            ErrorKind::Timeout => brokk_status::Timeout,
            ErrorKind::Closed => brokk_status::Closed,
            ErrorKind::IncompatibleStore => brokk_status::IncompatibleStore,
            ErrorKind::CannotOpenStore => brokk_status::CannotOpenStore,
            ErrorKind::Unavailable => brokk_status::Unavailable,
            ErrorKind::StorageFailed => brokk_status::StorageFailed,
            ErrorKind::OutcomeUnknown => brokk_status::OutcomeUnknown,
            ErrorKind::Forked => brokk_status::Forked,
            ErrorKind::Cancelled => brokk_status::Cancelled,
            // A kind newer than this mapping (ErrorKind is non-exhaustive): a bug in brokk, which
            // the C side sees in the bug class, with the core's message in brokk_last_error().
            _ => brokk_status::Panic,
        }
    }
}

impl brokk_status {
    /// Checked conversion from an integer a C caller passed: unknown numbers give None.
    pub(crate) fn from_raw(raw: u32) -> Option<Self> {
        use brokk_status::*;
        Some(match raw {
            0 => Ok,
            1 => NullArgument,
            2 => InvalidUtf8,
            3 => InvalidJson,
            4 => InvalidTopic,
            5 => InvalidId,
            6 => PayloadTooLarge,
            7 => InvalidArgument,
            8 => InvalidUrl,
            9 => BufferTooSmall,
            10 => WouldDeadlock,
            11 => UnsupportedBackend,
            12 => InvalidGroup,
            13 => IncompatibleStore,
            14 => CannotOpenStore,
            100 => UnknownSubscription,
            101 => UnknownDelivery,
            102 => AlreadySettled,
            103 => UnknownListener,
            200 => Timeout,
            201 => Full,
            202 => Unavailable,
            203 => StorageFailed,
            204 => OutcomeUnknown,
            205 => Cancelled,
            300 => Closed,
            301 => Forked,
            900 => Panic,
            _ => return None,
        })
    }

    /// A static, NUL-terminated description.
    pub(crate) fn describe(self) -> &'static str {
        use brokk_status::*;
        match self {
            Ok => "ok\0",
            NullArgument => "a required pointer argument was NULL\0",
            InvalidUtf8 => "a string argument was not valid UTF-8\0",
            InvalidJson => "invalid JSON\0",
            InvalidTopic => "invalid topic name\0",
            InvalidId => "invalid message id\0",
            PayloadTooLarge => "payload too large\0",
            InvalidArgument => "invalid argument\0",
            InvalidUrl => "invalid backend URL\0",
            BufferTooSmall => "output buffer too small\0",
            WouldDeadlock => "the call would deadlock: made from inside a callback of this broker\0",
            UnsupportedBackend => "backend not supported by this build\0",
            InvalidGroup => "invalid consumer group name\0",
            Full => "full: a queue or a topic's retention is at its limit\0",
            IncompatibleStore => "not a brokk store, a newer schema, or a corrupt store\0",
            CannotOpenStore => "the store cannot be opened as given\0",
            Unavailable => "the store is unavailable for now\0",
            StorageFailed => "the store failed to read or write\0",
            OutcomeUnknown => "outcome unknown: the connection broke after the request may have reached the server\0",
            UnknownSubscription => "unknown subscription id\0",
            UnknownDelivery => "unknown delivery id\0",
            AlreadySettled => "delivery already acked or nacked\0",
            UnknownListener => "unknown listener id\0",
            Timeout => "timed out\0",
            Cancelled => "cancelled\0",
            Closed => "the broker is closed\0",
            Forked => "the broker was made by the parent process before a fork\0",
            Panic => "internal error (panic) in brokk\0",
        }
    }

    pub(crate) fn class(self) -> brokk_status_class {
        match self as u32 {
            0 => brokk_status_class::Ok,
            1..=199 => brokk_status_class::Caller,
            200..=299 => brokk_status_class::Transient,
            300..=399 => brokk_status_class::Terminal,
            _ => brokk_status_class::Bug,
        }
    }
}

/// A static description of `status`, for logs. Any number is accepted; unknown ones get
/// "unknown status".
/// Returns: a NUL-terminated string with static lifetime; never NULL; do not free.
/// Threads: any.
#[no_mangle]
// guard_value_or, not guard_value: a panic must give a string too (never NULL, as promised).
pub extern "C" fn brokk_status_str(status: u32) -> *const c_char {
    super::boundary::guard_value_or(c"unknown status".as_ptr(), || {
        brokk_status::from_raw(status).map_or("unknown status\0", brokk_status::describe).as_ptr().cast()
    })
}

/// The class of `status`: what a binding should make of it. Unknown numbers are
/// BROKK_STATUS_CLASS_BUG.
/// Threads: any.
#[no_mangle]
pub extern "C" fn brokk_status_classify(status: u32) -> brokk_status_class {
    super::boundary::guard_value(|| brokk_status::from_raw(status).map_or(brokk_status_class::Bug, brokk_status::class))
}
