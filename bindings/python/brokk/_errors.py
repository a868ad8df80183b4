"""Statuses and the exceptions they map to.

The class of a status (brokk_status_classify) picks the base exception: a caller mistake is a
``CallerError`` (also a ``ValueError``), any other retryable failure a ``TransientError`` (a
timeout a ``TimeoutError``, also the builtin one; a full queue a ``FullError``; a store out of
reach an ``UnavailableError``, nothing done; a failed read or write a ``StorageFailedError``; a
connection broken after the request may have reached the server an ``OutcomeUnknownError``, done
or not; a wait cancelled through its ``brokk.Cancel`` a ``CancelledError``, nothing done), a
closed broker a ``ClosedError`` (also a ``RuntimeError``; a parent's broker used in a forked
child a ``ForkedError``), a bug a ``BrokkPanic``.
Each known status has its own subclass, so callers can catch as precisely as they like. One
exception has no status of its own: ``NotJSONError``, the binding's refusal of a payload JSON
cannot carry unchanged, is an ``InvalidJSONError``.
"""

from __future__ import annotations

import builtins
import enum

from . import _ffi


class Status(enum.IntEnum):
    """enum brokk_status."""

    OK = _ffi.BROKK_STATUS_OK
    NULL_ARGUMENT = _ffi.BROKK_STATUS_NULL_ARGUMENT
    INVALID_UTF8 = _ffi.BROKK_STATUS_INVALID_UTF8
    INVALID_JSON = _ffi.BROKK_STATUS_INVALID_JSON
    INVALID_TOPIC = _ffi.BROKK_STATUS_INVALID_TOPIC
    INVALID_ID = _ffi.BROKK_STATUS_INVALID_ID
    PAYLOAD_TOO_LARGE = _ffi.BROKK_STATUS_PAYLOAD_TOO_LARGE
    INVALID_ARGUMENT = _ffi.BROKK_STATUS_INVALID_ARGUMENT
    INVALID_URL = _ffi.BROKK_STATUS_INVALID_URL
    BUFFER_TOO_SMALL = _ffi.BROKK_STATUS_BUFFER_TOO_SMALL
    WOULD_DEADLOCK = _ffi.BROKK_STATUS_WOULD_DEADLOCK
    UNSUPPORTED_BACKEND = _ffi.BROKK_STATUS_UNSUPPORTED_BACKEND
    INVALID_GROUP = _ffi.BROKK_STATUS_INVALID_GROUP
    INCOMPATIBLE_STORE = _ffi.BROKK_STATUS_INCOMPATIBLE_STORE
    CANNOT_OPEN_STORE = _ffi.BROKK_STATUS_CANNOT_OPEN_STORE
    UNKNOWN_SUBSCRIPTION = _ffi.BROKK_STATUS_UNKNOWN_SUBSCRIPTION
    UNKNOWN_DELIVERY = _ffi.BROKK_STATUS_UNKNOWN_DELIVERY
    ALREADY_SETTLED = _ffi.BROKK_STATUS_ALREADY_SETTLED
    UNKNOWN_LISTENER = _ffi.BROKK_STATUS_UNKNOWN_LISTENER
    TIMEOUT = _ffi.BROKK_STATUS_TIMEOUT
    FULL = _ffi.BROKK_STATUS_FULL
    UNAVAILABLE = _ffi.BROKK_STATUS_UNAVAILABLE
    STORAGE_FAILED = _ffi.BROKK_STATUS_STORAGE_FAILED
    OUTCOME_UNKNOWN = _ffi.BROKK_STATUS_OUTCOME_UNKNOWN
    CANCELLED = _ffi.BROKK_STATUS_CANCELLED
    CLOSED = _ffi.BROKK_STATUS_CLOSED
    FORKED = _ffi.BROKK_STATUS_FORKED
    PANIC = _ffi.BROKK_STATUS_PANIC

    @property
    def description(self) -> str:
        """brokk_status_str(): a static description."""
        return _ffi.lib.brokk_status_str(self.value).decode("utf-8", "replace")


class StatusClass(enum.IntEnum):
    """enum brokk_status_class."""

    OK = _ffi.BROKK_STATUS_CLASS_OK
    CALLER = _ffi.BROKK_STATUS_CLASS_CALLER
    TRANSIENT = _ffi.BROKK_STATUS_CLASS_TRANSIENT
    TERMINAL = _ffi.BROKK_STATUS_CLASS_TERMINAL
    BUG = _ffi.BROKK_STATUS_CLASS_BUG


def classify(status: int) -> StatusClass:
    """brokk_status_classify(): what kind of failure `status` is."""
    return StatusClass(_ffi.lib.brokk_status_classify(status))


class BrokkError(Exception):
    """Any failing brokk call. ``status`` is the brokk_status (a ``Status`` when known, else the
    raw number); ``message`` the detail brokk_last_error() gave."""

    def __init__(self, status: int, message: str):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.message = message
        name = status.name if isinstance(status, Status) else f"status {status}"
        super().__init__(f"{name}: {message}" if message else name)


class CallerError(BrokkError, ValueError):
    """The caller passed something wrong; the same call will fail again."""


class TransientError(BrokkError):
    """Retrying later may succeed."""


class TerminalError(BrokkError, RuntimeError):
    """The broker cannot do this any more."""


class ClosedError(TerminalError):
    """The broker is closed."""


class ForkedError(TerminalError):
    """The broker was made by the parent of this process before a fork: a child process cannot
    use its parent's broker (the call did nothing). Make a new broker in the child."""


class BrokkPanic(BrokkError):
    """A bug in brokk (it panicked inside the call), or a status this binding does not know."""


class TimeoutError(TransientError, builtins.TimeoutError):
    """A wait ran out. ``remaining``: deliveries still outstanding when it did (None if unknown);
    ``report``: for ``Broker.close``, the ``CloseReport`` (the broker is closed all the same)."""

    remaining: int | None = None
    report: object = None


class FullError(TransientError):
    """A bounded store or queue is full; nothing was published."""


class UnavailableError(TransientError):
    """The store is out of reach for now (a file locked by another process, a server that does
    not answer); nothing was done."""


class StorageFailedError(TransientError):
    """The store failed to read or write (an I/O error, a full disk); the call had no effect."""


class OutcomeUnknownError(TransientError):
    """The connection to a server broke after the request may have reached it: the call may or
    may not have taken effect (a publish may be published, an ack applied). Retrying a publish
    may publish it twice; a retried ack or nack may raise ``UnknownDeliveryError`` or
    ``AlreadySettledError``. Unlike ``UnavailableError``, which means nothing was done."""


class CancelledError(TransientError):
    """The wait was cancelled (``Cancel.cancel()`` on the token it was given, before or while it
    waited): the call did nothing (nothing was taken). Not raised for Ctrl-C, which raises
    ``KeyboardInterrupt`` as usual."""


class NullArgumentError(CallerError):
    pass


class InvalidUTF8Error(CallerError):
    pass


class InvalidJSONError(CallerError):
    """The payload or metadata is not JSON (brokk checked it), or, as its subclass
    ``NotJSONError``, not JSON that arrives unchanged (the binding checked it)."""


class NotJSONError(InvalidJSONError, TypeError):
    """A payload or metadata JSON cannot carry unchanged, refused by the binding before anything
    is published: a dict key that is not a str (JSON would make 1 into "1"), NaN or an
    infinity, a tuple (it would arrive as a list), a set, bytes or any other object that is not
    a str, int, float, bool, None, dict or list, a circular reference. The message says where
    (``payload['items'][2]: ...``). An ``InvalidJSONError`` (status INVALID_JSON) and a
    ``TypeError``, as json.dumps's own refusals were."""


class InvalidTopicError(CallerError):
    pass


class InvalidIdError(CallerError):
    pass


class PayloadTooLargeError(CallerError):
    pass


class InvalidArgumentError(CallerError):
    pass


class InvalidURLError(CallerError):
    pass


class BufferTooSmallError(CallerError):
    pass


class WouldDeadlockError(CallerError):
    """join or a non-forced close from inside a handler or listener of the same broker."""


class UnsupportedBackendError(CallerError):
    pass


class InvalidGroupError(CallerError):
    pass


class IncompatibleStoreError(CallerError):
    """The store is not a brokk store, was written by a newer brokk, or is corrupt; it was left
    unchanged."""


class CannotOpenStoreError(CallerError):
    """The store cannot be opened as given (a directory, a missing parent folder, no permission,
    a read-only file, a bad server address); nothing was changed."""


class UnknownSubscriptionError(CallerError, LookupError):
    pass


class UnknownDeliveryError(CallerError, LookupError):
    pass


class AlreadySettledError(CallerError):
    pass


class UnknownListenerError(CallerError, LookupError):
    pass


_BY_STATUS: dict[int, type[BrokkError]] = {
    Status.NULL_ARGUMENT: NullArgumentError,
    Status.INVALID_UTF8: InvalidUTF8Error,
    Status.INVALID_JSON: InvalidJSONError,
    Status.INVALID_TOPIC: InvalidTopicError,
    Status.INVALID_ID: InvalidIdError,
    Status.PAYLOAD_TOO_LARGE: PayloadTooLargeError,
    Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.INVALID_URL: InvalidURLError,
    Status.BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.WOULD_DEADLOCK: WouldDeadlockError,
    Status.UNSUPPORTED_BACKEND: UnsupportedBackendError,
    Status.INVALID_GROUP: InvalidGroupError,
    Status.INCOMPATIBLE_STORE: IncompatibleStoreError,
    Status.CANNOT_OPEN_STORE: CannotOpenStoreError,
    Status.UNKNOWN_SUBSCRIPTION: UnknownSubscriptionError,
    Status.UNKNOWN_DELIVERY: UnknownDeliveryError,
    Status.ALREADY_SETTLED: AlreadySettledError,
    Status.UNKNOWN_LISTENER: UnknownListenerError,
    Status.TIMEOUT: TimeoutError,
    Status.FULL: FullError,
    Status.UNAVAILABLE: UnavailableError,
    Status.STORAGE_FAILED: StorageFailedError,
    Status.OUTCOME_UNKNOWN: OutcomeUnknownError,
    Status.CANCELLED: CancelledError,
    Status.CLOSED: ClosedError,
    Status.FORKED: ForkedError,
    Status.PANIC: BrokkPanic,
}

_BY_CLASS: dict[int, type[BrokkError]] = {
    StatusClass.CALLER: CallerError,
    StatusClass.TRANSIENT: TransientError,
    StatusClass.TERMINAL: TerminalError,
    StatusClass.BUG: BrokkPanic,
}


def error_for(status: int, message: str) -> BrokkError:
    """The exception for a failing status: by status when known, else by its class."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = _BY_CLASS.get(_ffi.lib.brokk_status_classify(status), BrokkPanic)
    return cls(status, message)


def check(status: int) -> None:
    """Raises the exception for `status` unless it is OK. Call it right after the brokk call,
    on the same thread, so that brokk_last_error() still describes that call."""
    if status != _ffi.BROKK_STATUS_OK:
        raise error_for(status, _ffi.last_error())


def closed_error() -> ClosedError:
    """What a call on a released handle raises: the library can no longer be asked."""
    return ClosedError(Status.CLOSED, "the broker is closed and its handle released")


def invalid_argument(message: str) -> InvalidArgumentError:
    """An argument this binding cannot even hand to the library (wrong type, out of the C
    integer range): the same exception the library would give for an out-of-range option."""
    return InvalidArgumentError(Status.INVALID_ARGUMENT, message)
