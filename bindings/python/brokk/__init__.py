"""brokk: an embeddable message broker (Rust core, C ABI) for Python, through ctypes.

    import brokk

    with brokk.Broker() as broker:
        broker.subscribe("orders", lambda msg: print(msg.payload))
        broker.publish("orders", {"item": "anvil", "qty": 2})
        broker.join(timeout=5)

Semantics (topics, groups, priorities, retention, verdicts, acks, deadlines, dead letters,
backpressure, close) are the library's: see docs/semantics.md in the repository and
include/brokk.h. This package adds no logic of its own.
"""

from ._broker import (
    Backpressure,
    BatchMessage,
    Broker,
    CloseReport,
    RetentionPolicy,
    Stats,
    abi_version,
    version,
    version_number,
)
from ._cancel import Cancel
from .aio import AsyncBroker
from ._errors import (
    AlreadySettledError,
    BrokkError,
    BrokkPanic,
    BufferTooSmallError,
    CallerError,
    CancelledError,
    CannotOpenStoreError,
    ClosedError,
    ForkedError,
    FullError,
    IncompatibleStoreError,
    InvalidArgumentError,
    InvalidGroupError,
    InvalidIdError,
    InvalidJSONError,
    InvalidTopicError,
    InvalidURLError,
    InvalidUTF8Error,
    NotJSONError,
    NullArgumentError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    Status,
    StatusClass,
    StorageFailedError,
    TerminalError,
    TimeoutError,
    TransientError,
    UnavailableError,
    UnknownDeliveryError,
    UnknownListenerError,
    UnknownSubscriptionError,
    UnsupportedBackendError,
    WouldDeadlockError,
    classify,
)
from ._ffi import (
    BROKK_ID_MAX_LEN as ID_MAX_LEN,
)
from ._ffi import (
    BROKK_MAX_CONCURRENCY as MAX_CONCURRENCY,
)
from ._ffi import (
    BROKK_TOPIC_MAX_LEN as TOPIC_MAX_LEN,
)
from ._ffi import (
    LIBRARY_PATH,
)
from ._log import TRACE as LOG_TRACE
from ._log import route_to_logging
from ._message import Message, Requeue, Verdict, requeue
from ._names import topic_name
from ._peek import Peeked

__version__ = "0.1.0"

__all__ = [
    "AlreadySettledError",
    "AsyncBroker",
    "Backpressure",
    "BatchMessage",
    "Broker",
    "BrokkError",
    "BrokkPanic",
    "BufferTooSmallError",
    "CallerError",
    "Cancel",
    "CancelledError",
    "CannotOpenStoreError",
    "CloseReport",
    "ClosedError",
    "ForkedError",
    "FullError",
    "IncompatibleStoreError",
    "ID_MAX_LEN",
    "InvalidArgumentError",
    "InvalidGroupError",
    "InvalidIdError",
    "InvalidJSONError",
    "InvalidTopicError",
    "InvalidURLError",
    "InvalidUTF8Error",
    "LIBRARY_PATH",
    "LOG_TRACE",
    "MAX_CONCURRENCY",
    "Message",
    "NotJSONError",
    "NullArgumentError",
    "OutcomeUnknownError",
    "PayloadTooLargeError",
    "Peeked",
    "Requeue",
    "RetentionPolicy",
    "Stats",
    "Status",
    "StatusClass",
    "StorageFailedError",
    "TOPIC_MAX_LEN",
    "TerminalError",
    "TimeoutError",
    "TransientError",
    "UnavailableError",
    "UnknownDeliveryError",
    "UnknownListenerError",
    "UnknownSubscriptionError",
    "UnsupportedBackendError",
    "Verdict",
    "WouldDeadlockError",
    "abi_version",
    "classify",
    "requeue",
    "route_to_logging",
    "topic_name",
    "version",
    "version_number",
]
