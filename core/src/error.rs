//! The core's error type. Every fallible core call returns `Result<_, Error>`; the FFI layer maps
//! `ErrorKind` one-to-one onto `brokk_status` and the message onto `brokk_last_error()`.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, in categories a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A topic name is empty, too long, or uses a character outside `[A-Za-z0-9_.-]`.
    InvalidTopic,
    /// A consumer group name breaks the topic naming rules.
    InvalidGroup,
    /// A message id is empty, too long, or not printable ASCII.
    InvalidId,
    /// A payload is not a JSON document, or metadata is not a JSON object.
    InvalidJson,
    /// A payload is larger than the broker's configured maximum.
    PayloadTooLarge,
    /// An option or argument is out of its documented range.
    InvalidArgument,
    /// The backend URL cannot be parsed.
    InvalidUrl,
    /// The backend URL names a backend this build does not provide.
    UnsupportedBackend,
    /// No subscription has this id (never existed, or already unsubscribed).
    UnknownSubscription,
    /// No delivery with this id was ever issued by this broker.
    UnknownDelivery,
    /// The delivery exists but is not awaiting an ack (already settled, or auto-acked).
    AlreadySettled,
    /// No listener has this id.
    UnknownListener,
    /// The call would wait for the very callback it is made from.
    WouldDeadlock,
    /// A wait ran out of time; `Error::remaining` says how much work was left.
    Timeout,
    /// A bounded store is full and its policy is to refuse (retention limit reached).
    Full,
    /// The broker is closed.
    Closed,
    /// The store is not a brokk store, was written by a newer brokk (schema version), or is
    /// corrupt; nothing in it was changed.
    IncompatibleStore,
    /// The store cannot be opened as given: a directory, a missing parent folder, no
    /// permission, a read-only file, a bad server address; nothing was changed.
    CannotOpenStore,
    /// The store is out of reach for now: a file locked by another process beyond the busy
    /// timeout, a server that does not answer or went away. Retrying later may succeed.
    Unavailable,
    /// The store failed to read or write (an I/O error, a full disk); nothing was half done.
    StorageFailed,
    /// The connection to a server broke after the request may have reached it: the call may or
    /// may not have taken effect (a publish may have been published, an ack applied). Unlike
    /// `Unavailable`, which always means nothing was done.
    OutcomeUnknown,
    /// The broker was made by the parent of this process before a fork: a child cannot use it
    /// (see `Broker`'s documentation on fork).
    Forked,
    /// A blocking call's cancellation token was cancelled while it waited (or before it
    /// started): the call did nothing.
    Cancelled,
}

/// A core error: a kind, a human-readable message, and for timeouts the work left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: Cow<'static, str>,
    remaining: u64,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error { kind, message: message.into(), remaining: 0 }
    }

    pub(crate) fn timeout(what: &str, remaining: u64) -> Self {
        Error {
            kind: ErrorKind::Timeout,
            message: format!("timed out waiting for {what}: {remaining} deliveries left").into(),
            remaining,
        }
    }

    pub(crate) fn cancelled(what: &str) -> Self {
        Error::new(ErrorKind::Cancelled, format!("{what} was cancelled"))
    }

    pub(crate) fn closed() -> Self {
        Error::new(ErrorKind::Closed, "the broker is closed")
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// For `ErrorKind::Timeout`: deliveries still queued, running or awaiting an ack.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
