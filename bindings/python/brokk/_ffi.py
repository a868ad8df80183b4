"""The C ABI of libbrokk as ctypes declarations: every struct, callback type, constant,
argtypes and restype lives here and nowhere else (STYLE.md §11).

Names are spelled exactly as in include/brokk.h so that both read alike, and
tests/test_ffi_header.py parses the header and checks every function, struct field, callback
typedef and constant against this module.

The library is found, in order:

1. the path in the environment variable ``BROKK_LIBRARY``;
2. a copy packaged inside this package (``pip install ./bindings/python`` copies
   ``target/release/libbrokk.so`` into ``brokk/``: see setup.py);
3. ``../../target/release`` relative to ``bindings/python``, for a source checkout.

``ctypes.CDLL`` (never ``PyDLL``) releases the GIL during every call, and ctypes takes it back
inside callbacks.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char,
    c_char_p,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

# ---- constants (#define in brokk.h) ------------------------------------------------------------

BROKK_ID_MAX_LEN = 128
BROKK_ID_BUFFER_SIZE = 129
BROKK_TOPIC_MAX_LEN = 255
BROKK_MAX_CONCURRENCY = 1024
BROKK_DEFAULT_MAX_PAYLOAD = 1048576
BROKK_DEFAULT_RETENTION_LIMIT = 100000
BROKK_MAX_LISTENER_QUEUE = 1048576
BROKK_DEFAULT_QUEUE_CAPACITY = 100000
BROKK_WAIT_FOREVER = 2**64 - 1  # UINT64_MAX
BROKK_MAX_OPTION_MS = 2147483647  # the largest time option in a backend URL
BROKK_MAX_PEEK = 10000  # the most deliveries one peek shows
BROKK_VERSION_MAJOR = 0
BROKK_VERSION_MINOR = 1
BROKK_VERSION_PATCH = 0
BROKK_VERSION_NUMBER = 1000
BROKK_ABI_VERSION = 1

BROKK_BACKPRESSURE_BLOCK = 0
BROKK_BACKPRESSURE_FAIL = 1
BROKK_BACKPRESSURE_DROP = 2
BROKK_RETENTION_REJECT = 0
BROKK_RETENTION_DROP_OLDEST = 1
BROKK_RETENTION_DROP_NEWEST = 2
BROKK_RETENTION_OFF = 3
BROKK_VERDICT_ACK = 0
BROKK_VERDICT_NACK = 1
BROKK_VERDICT_REQUEUE = 2
BROKK_VERDICT_LATER = 3
BROKK_READINESS_PENDING = 0
BROKK_READINESS_READY = 1
BROKK_READINESS_CLOSED = 2
BROKK_LOG_ERROR = 1
BROKK_LOG_WARN = 2
BROKK_LOG_INFO = 3
BROKK_LOG_DEBUG = 4
BROKK_LOG_TRACE = 5

# enum brokk_status
BROKK_STATUS_OK = 0
BROKK_STATUS_NULL_ARGUMENT = 1
BROKK_STATUS_INVALID_UTF8 = 2
BROKK_STATUS_INVALID_JSON = 3
BROKK_STATUS_INVALID_TOPIC = 4
BROKK_STATUS_INVALID_ID = 5
BROKK_STATUS_PAYLOAD_TOO_LARGE = 6
BROKK_STATUS_INVALID_ARGUMENT = 7
BROKK_STATUS_INVALID_URL = 8
BROKK_STATUS_BUFFER_TOO_SMALL = 9
BROKK_STATUS_WOULD_DEADLOCK = 10
BROKK_STATUS_UNSUPPORTED_BACKEND = 11
BROKK_STATUS_INVALID_GROUP = 12
BROKK_STATUS_INCOMPATIBLE_STORE = 13
BROKK_STATUS_CANNOT_OPEN_STORE = 14
BROKK_STATUS_UNKNOWN_SUBSCRIPTION = 100
BROKK_STATUS_UNKNOWN_DELIVERY = 101
BROKK_STATUS_ALREADY_SETTLED = 102
BROKK_STATUS_UNKNOWN_LISTENER = 103
BROKK_STATUS_TIMEOUT = 200
BROKK_STATUS_FULL = 201
BROKK_STATUS_UNAVAILABLE = 202
BROKK_STATUS_STORAGE_FAILED = 203
BROKK_STATUS_OUTCOME_UNKNOWN = 204
BROKK_STATUS_CANCELLED = 205
BROKK_STATUS_CLOSED = 300
BROKK_STATUS_FORKED = 301
BROKK_STATUS_PANIC = 900

# enum brokk_status_class
BROKK_STATUS_CLASS_OK = 0
BROKK_STATUS_CLASS_CALLER = 1
BROKK_STATUS_CLASS_TRANSIENT = 2
BROKK_STATUS_CLASS_TERMINAL = 3
BROKK_STATUS_CLASS_BUG = 4

# ---- typedefs of integers ------------------------------------------------------------------------

brokk_status = c_uint32
brokk_status_class = c_uint32
brokk_retention_policy = c_uint32
brokk_backpressure = c_uint32
brokk_verdict = c_uint32
brokk_readiness = c_uint32
brokk_log_level = c_uint32

# ---- opaque handles ------------------------------------------------------------------------------


class brokk_broker(Structure):
    """Opaque: only ever used through a pointer."""


class brokk_delivery(Structure):
    """Opaque: only ever used through a pointer."""


class brokk_message(Structure):
    """Opaque: only ever used through a pointer."""


class brokk_cancel(Structure):
    """Opaque: only ever used through a pointer."""


class brokk_peek_result(Structure):
    """Opaque: only ever used through a pointer."""


# ---- callback typedefs ---------------------------------------------------------------------------
# Text handed to a callback is (pointer, length) and not NUL-terminated: POINTER(c_char), never
# c_char_p, which ctypes would read up to a NUL.

brokk_message_event_cb = CFUNCTYPE(None, c_void_p, POINTER(brokk_message))
brokk_failed_event_cb = CFUNCTYPE(None, c_void_p, POINTER(brokk_message), POINTER(c_char), c_size_t, c_bool)
brokk_subscription_event_cb = CFUNCTYPE(None, c_void_p, POINTER(c_char), c_size_t, c_uint64)
brokk_topic_event_cb = CFUNCTYPE(None, c_void_p, POINTER(c_char), c_size_t)
brokk_free_cb = CFUNCTYPE(None, c_void_p)
brokk_handler_cb = CFUNCTYPE(brokk_verdict, c_void_p, POINTER(brokk_message))
brokk_cancel_check_cb = CFUNCTYPE(c_bool, c_void_p)
brokk_ready_cb = CFUNCTYPE(None, c_void_p, brokk_readiness)
# Its strings are NUL-terminated, but bound like the others: the trampoline reads addresses.
brokk_log_cb = CFUNCTYPE(None, c_void_p, brokk_log_level, POINTER(c_char), POINTER(c_char))

# ---- structs -------------------------------------------------------------------------------------


class brokk_broker_options(Structure):
    _fields_ = [
        ("worker_threads", c_uint32),
        ("max_payload_bytes", c_uint64),
        ("listener_queue_capacity", c_uint32),
        ("retention_limit", c_uint64),
        ("retention_policy", brokk_retention_policy),
        ("queue_capacity", c_uint64),
        ("backpressure", brokk_backpressure),
        ("publish_timeout_ms", c_uint64),
    ]


class brokk_close_report(Structure):
    _fields_ = [
        ("remaining", c_uint64),
        ("dropped", c_uint64),
        ("retained_discarded", c_uint64),
    ]


class brokk_fetch_options(Structure):
    _fields_ = [
        ("group", c_char_p),
        ("group_len", c_size_t),
        ("ack_deadline_ms", c_uint64),
        ("max_attempts", c_uint32),
        ("dead_letter_topic", c_char_p),
        ("dead_letter_topic_len", c_size_t),
    ]


class brokk_str(Structure):
    # POINTER(c_char), not c_char_p: the view is not NUL-terminated.
    _fields_ = [
        ("ptr", POINTER(c_char)),
        ("len", c_size_t),
    ]


class brokk_listener(Structure):
    _fields_ = [
        ("on_publish", brokk_message_event_cb),
        ("on_dispatched", brokk_message_event_cb),
        ("on_processed", brokk_message_event_cb),
        ("on_failed", brokk_failed_event_cb),
        ("on_subscribe", brokk_subscription_event_cb),
        ("on_unsubscribe", brokk_subscription_event_cb),
        ("on_topic_created", brokk_topic_event_cb),
        ("user_data", c_void_p),
        ("free_user_data", brokk_free_cb),
    ]


class brokk_message_fields(Structure):
    # Every field of a message view at once (brokk_message_read); the views live as long as the
    # message view they were read from.
    _fields_ = [
        ("topic", brokk_str),
        ("id", brokk_str),
        ("parent_id", brokk_str),
        ("payload", brokk_str),
        ("metadata", brokk_str),
        ("group", brokk_str),
        ("delivery_id", c_uint64),
        ("subscription_id", c_uint64),
        ("timestamp_ms", c_uint64),
        ("priority", c_int32),
        ("attempt", c_uint32),
    ]


class brokk_peeked_fields(Structure):
    # One delivery of a peek result (brokk_peek_result_read); the views live as long as the
    # result.
    _fields_ = [
        ("topic", brokk_str),
        ("id", brokk_str),
        ("payload", brokk_str),
        ("metadata", brokk_str),
        ("timestamp_ms", c_uint64),
        ("priority", c_int32),
        ("attempt", c_uint32),
    ]


class brokk_publish_options(Structure):
    _fields_ = [
        ("id", c_char_p),
        ("id_len", c_size_t),
        ("metadata", c_char_p),
        ("metadata_len", c_size_t),
        ("priority", c_int32),
    ]


class brokk_publish_request(Structure):
    _fields_ = [
        ("topic", c_char_p),
        ("topic_len", c_size_t),
        ("options", POINTER(brokk_publish_options)),
        ("id_out", POINTER(c_char)),
        ("id_out_cap", c_size_t),
    ]


class brokk_take_request(Structure):
    _fields_ = [
        ("topic", c_char_p),
        ("topic_len", c_size_t),
        ("group", c_char_p),
        ("group_len", c_size_t),
        ("timeout_ms", c_uint64),
        ("payload_out", POINTER(c_char)),
        ("payload_cap", c_size_t),
        ("payload_len", c_size_t),
    ]


class brokk_batch_message(Structure):
    _fields_ = [
        ("payload", c_char_p),
        ("payload_len", c_size_t),
        ("options", brokk_publish_options),
    ]


class brokk_stats(Structure):
    _fields_ = [
        ("published", c_uint64),
        ("unrouted", c_uint64),
        ("dispatched", c_uint64),
        ("processed", c_uint64),
        ("failed", c_uint64),
        ("requeued", c_uint64),
        ("dropped", c_uint64),
        ("queued", c_uint64),
        ("in_flight", c_uint64),
        ("retained", c_uint64),
        ("retained_dropped", c_uint64),
        ("delayed", c_uint64),
        ("expired", c_uint64),
        ("dead_lettered", c_uint64),
        ("full_dropped", c_uint64),
        ("groups", c_uint64),
        ("topics", c_uint64),
        ("subscriptions", c_uint64),
        ("listeners", c_uint64),
        ("workers", c_uint64),
        ("workers_active", c_uint64),
        ("listener_events_dropped", c_uint64),
        ("uptime_ms", c_uint64),
        ("lapsed", c_uint64),
    ]


class brokk_subscription_options(Structure):
    _fields_ = [
        ("manual_ack", c_bool),
        ("concurrency", c_uint32),
        ("group", c_char_p),
        ("group_len", c_size_t),
        ("ack_deadline_ms", c_uint64),
        ("max_attempts", c_uint32),
        ("dead_letter_topic", c_char_p),
        ("dead_letter_topic_len", c_size_t),
    ]


# ---- functions: name -> (restype, argtypes), in header order -------------------------------------

_P = POINTER
FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "brokk_broker_new": (brokk_status, [c_char_p, _P(brokk_broker_options), _P(_P(brokk_broker))]),
    "brokk_broker_free": (None, [_P(brokk_broker)]),
    "brokk_broker_release": (None, [_P(brokk_broker)]),
    "brokk_broker_ack": (brokk_status, [_P(brokk_broker), c_uint64]),
    "brokk_broker_ack_batch": (brokk_status, [_P(brokk_broker), _P(c_uint64), c_size_t, _P(c_size_t)]),
    "brokk_broker_nack": (brokk_status, [_P(brokk_broker), c_uint64, c_bool, c_uint64, c_char_p, c_size_t]),
    "brokk_broker_join": (brokk_status, [_P(brokk_broker), c_uint64, _P(c_uint64)]),
    "brokk_broker_join_until": (brokk_status, [_P(brokk_broker), c_uint64, _P(brokk_cancel), _P(c_uint64)]),
    "brokk_broker_close": (brokk_status, [_P(brokk_broker), c_uint64, c_bool, _P(brokk_close_report)]),
    "brokk_cancel_new": (brokk_status, [_P(_P(brokk_cancel))]),
    "brokk_cancel_new_checked": (
        brokk_status,
        [brokk_cancel_check_cb, c_void_p, c_uint64, _P(_P(brokk_cancel))],
    ),
    "brokk_cancel_trigger": (brokk_status, [_P(brokk_cancel)]),
    "brokk_cancel_reset": (brokk_status, [_P(brokk_cancel)]),
    "brokk_cancel_is_cancelled": (c_bool, [_P(brokk_cancel)]),
    "brokk_cancel_free": (None, [_P(brokk_cancel)]),
    "brokk_broker_notify_ready": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            c_char_p,
            c_size_t,
            brokk_ready_cb,
            c_void_p,
            _P(c_uint64),
            _P(brokk_readiness),
        ],
    ),
    "brokk_broker_forget_ready": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, c_char_p, c_size_t, c_uint64, _P(c_bool)],
    ),
    "brokk_broker_fetch": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, _P(brokk_fetch_options), c_uint64, _P(_P(brokk_delivery))],
    ),
    "brokk_broker_fetch_batch": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            _P(brokk_fetch_options),
            c_size_t,
            c_uint64,
            _P(_P(brokk_delivery)),
            _P(c_size_t),
        ],
    ),
    "brokk_broker_fetch_batch_until": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            _P(brokk_fetch_options),
            c_size_t,
            c_uint64,
            _P(brokk_cancel),
            _P(_P(brokk_delivery)),
            _P(c_size_t),
        ],
    ),
    "brokk_broker_take_until": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            c_char_p,
            c_size_t,
            c_uint64,
            _P(brokk_cancel),
            _P(_P(c_char)),
            _P(c_size_t),
        ],
    ),
    "brokk_broker_take": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            c_char_p,
            c_size_t,
            c_uint64,
            _P(c_char),
            c_size_t,
            _P(c_size_t),
        ],
    ),
    "brokk_broker_take_with": (brokk_status, [_P(brokk_broker), _P(brokk_take_request)]),
    "brokk_delivery_message": (_P(brokk_message), [_P(brokk_delivery)]),
    "brokk_delivery_free": (None, [_P(brokk_delivery)]),
    "brokk_broker_peek": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, c_char_p, c_size_t, c_size_t, _P(_P(brokk_peek_result))],
    ),
    "brokk_peek_result_count": (c_size_t, [_P(brokk_peek_result)]),
    "brokk_peek_result_read": (brokk_status, [_P(brokk_peek_result), c_size_t, _P(brokk_peeked_fields)]),
    "brokk_peek_result_free": (None, [_P(brokk_peek_result)]),
    "brokk_broker_count": (brokk_status, [_P(brokk_broker), _P(brokk_str), c_size_t, _P(c_uint64)]),
    "brokk_broker_purge": (brokk_status, [_P(brokk_broker), _P(brokk_str), c_size_t, _P(c_uint64)]),
    "brokk_broker_count_group": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, c_char_p, c_size_t, _P(c_uint64)],
    ),
    "brokk_broker_purge_group": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, c_char_p, c_size_t, _P(c_uint64)],
    ),
    "brokk_last_error": (c_char_p, []),
    "brokk_broker_add_listener": (brokk_status, [_P(brokk_broker), _P(brokk_listener), _P(c_uint64)]),
    "brokk_broker_remove_listener": (brokk_status, [_P(brokk_broker), c_uint64]),
    "brokk_log_set_callback": (brokk_status, [brokk_log_level, brokk_log_cb, c_void_p, brokk_free_cb]),
    "brokk_broker_set_log_callback": (
        brokk_status,
        [_P(brokk_broker), brokk_log_level, brokk_log_cb, c_void_p, brokk_free_cb],
    ),
    "brokk_message_topic": (brokk_str, [_P(brokk_message)]),
    "brokk_message_payload": (brokk_str, [_P(brokk_message)]),
    "brokk_message_metadata": (brokk_str, [_P(brokk_message)]),
    "brokk_message_id": (brokk_str, [_P(brokk_message)]),
    "brokk_message_parent_id": (brokk_str, [_P(brokk_message)]),
    "brokk_message_delivery_id": (c_uint64, [_P(brokk_message)]),
    "brokk_message_subscription_id": (c_uint64, [_P(brokk_message)]),
    "brokk_message_priority": (c_int32, [_P(brokk_message)]),
    "brokk_message_group": (brokk_str, [_P(brokk_message)]),
    "brokk_message_attempt": (c_uint32, [_P(brokk_message)]),
    "brokk_message_timestamp_ms": (c_uint64, [_P(brokk_message)]),
    "brokk_message_set_failure_reason": (brokk_status, [_P(brokk_message), c_char_p, c_size_t]),
    "brokk_message_set_requeue_delay": (brokk_status, [_P(brokk_message), c_uint64]),
    "brokk_message_read": (brokk_status, [_P(brokk_message), _P(brokk_message_fields)]),
    "brokk_broker_publish": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            c_char_p,
            c_size_t,
            _P(brokk_publish_options),
            _P(c_char),
            c_size_t,
        ],
    ),
    "brokk_broker_publish_with": (
        brokk_status,
        [_P(brokk_broker), _P(brokk_publish_request), c_char_p, c_size_t],
    ),
    "brokk_broker_publish_batch": (
        brokk_status,
        [_P(brokk_broker), c_char_p, c_size_t, _P(brokk_batch_message), c_size_t, _P(c_char), c_size_t],
    ),
    "brokk_broker_stats": (brokk_status, [_P(brokk_broker), _P(brokk_stats)]),
    "brokk_broker_stats_json": (brokk_status, [_P(brokk_broker), _P(_P(c_char)), _P(c_size_t)]),
    "brokk_broker_stats_prometheus": (brokk_status, [_P(brokk_broker), _P(_P(c_char)), _P(c_size_t)]),
    "brokk_broker_store_view_json": (brokk_status, [_P(brokk_broker), _P(_P(c_char)), _P(c_size_t)]),
    "brokk_broker_store_view_prometheus": (brokk_status, [_P(brokk_broker), _P(_P(c_char)), _P(c_size_t)]),
    "brokk_string_free": (None, [_P(c_char)]),
    "brokk_status_str": (c_char_p, [c_uint32]),
    "brokk_status_classify": (brokk_status_class, [c_uint32]),
    "brokk_broker_subscribe": (
        brokk_status,
        [
            _P(brokk_broker),
            c_char_p,
            c_size_t,
            brokk_handler_cb,
            c_void_p,
            brokk_free_cb,
            _P(brokk_subscription_options),
            _P(c_uint64),
        ],
    ),
    "brokk_broker_unsubscribe": (brokk_status, [_P(brokk_broker), c_uint64]),
    "brokk_version": (c_char_p, []),
    "brokk_version_number": (c_uint32, []),
    "brokk_abi_version": (c_uint32, []),
    "brokk_topic_name_part": (brokk_status, [c_char_p, c_size_t, c_size_t, _P(c_char), c_size_t, _P(c_size_t)]),
}
del _P

# ---- loading -------------------------------------------------------------------------------------

if sys.platform == "darwin":
    LIBRARY_FILE = "libbrokk.dylib"
elif sys.platform == "win32":
    LIBRARY_FILE = "brokk.dll"
else:
    LIBRARY_FILE = "libbrokk.so"

_PACKAGE_DIR = Path(__file__).resolve().parent


def library_candidates() -> list[tuple[str, Path]]:
    """Where the library is looked for, in order, with the reason for each place."""
    env = os.environ.get("BROKK_LIBRARY")
    if env:
        # An explicit choice is never second-guessed: no fallback if it is wrong.
        return [("BROKK_LIBRARY", Path(env))]
    return [
        ("packaged", _PACKAGE_DIR / LIBRARY_FILE),
        ("source tree", _PACKAGE_DIR.parent.parent.parent / "target" / "release" / LIBRARY_FILE),
    ]


def _load() -> tuple[ctypes.CDLL, Path]:
    tried = []
    for origin, path in library_candidates():
        if path.is_file():
            return ctypes.CDLL(str(path)), path
        tried.append(f"{path} ({origin})")
    raise ImportError(
        "brokk: cannot find the brokk library; looked at: "
        + ", ".join(tried)
        + ". Build it with `make lib` or set BROKK_LIBRARY to its path."
    )


lib, LIBRARY_PATH = _load()

for _name, (_restype, _argtypes) in FUNCTIONS.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn

# ---- the per-message calls, bound a second time for the hot path --------------------------------
# brokk_message_read, brokk_message_delivery_id, brokk_delivery_message and brokk_delivery_free
# run once per message a handler, listener or fetch copies. They only read or free memory: they
# never wait, take no lock another thread could hold while it needs the GIL, and never call back.
# So they are bound again through a PyDLL handle on the same library, which keeps the GIL during
# the call: releasing and retaking it costs more than the call, and hands the GIL to a waiting
# thread (a publisher) in the middle of copying a message. Their pointer arguments are plain
# addresses (c_void_p), so the callers pass integers instead of building ctypes pointer objects.
# Every other function stays on `lib` (a CDLL): anything that may wait must release the GIL.
# tests/test_ffi_header.py checks these against FUNCTIONS.
GIL_HELD_FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "brokk_message_delivery_id": (c_uint64, [c_void_p]),
    "brokk_message_read": (brokk_status, [c_void_p, c_void_p]),
    "brokk_delivery_message": (c_void_p, [c_void_p]),
    "brokk_delivery_free": (None, [c_void_p]),
}

# brokk_broker_publish, once per message a producer sends, is bound a second time too, on a CDLL
# (it may wait: it releases the GIL), with its pointers as plain addresses: ctypes converts an int
# for a c_void_p faster than it checks a ctypes pointer object against a POINTER type. So are
# brokk_broker_ack_batch, whose ids come from an array.array (its buffer address), and the
# request forms of publish and take below.
# Where pointers are 64-bit, publish declares its bytes and sizes as c_void_p too: ctypes
# converts an argument for c_void_p (int, bytes or None) in about half the time it takes for
# c_char_p, c_size_t or c_uint64, and those are all 64-bit integer arguments of one register
# class in the C calling conventions of such platforms (x86-64 and AArch64; System V and
# Windows alike). (Measured: a nine-argument take, 1.34 µs a call with the declared types,
# 0.86 µs with c_void_p.) Elsewhere they keep the declared types.
_W = c_void_p if ctypes.sizeof(c_void_p) == 8 else None
ADDRESS_FUNCTIONS: dict[str, tuple[object, list[object]]] = {
    "brokk_broker_ack_batch": (brokk_status, [POINTER(brokk_broker), c_void_p, c_size_t, POINTER(c_size_t)]),
    "brokk_broker_publish": (
        brokk_status,
        [
            c_void_p,
            _W or c_char_p,
            _W or c_size_t,
            _W or c_char_p,
            _W or c_size_t,
            c_void_p,
            c_void_p,
            _W or c_size_t,
        ],
    ),
    # The request forms of take and publish: ctypes spends about 1 100 instructions converting
    # each argument, as many as the rest of a call, so the per-thread request structs the binding
    # keeps per topic (see _broker.py) make a take cost 2 arguments instead of 9, a publish 4
    # instead of 8.
    "brokk_broker_take_with": (brokk_status, [c_void_p, c_void_p]),
    "brokk_broker_publish_with": (brokk_status, [c_void_p, c_void_p, _W or c_char_p, _W or c_size_t]),
}

lib_address = ctypes.CDLL(str(LIBRARY_PATH))
for _name, (_restype, _argtypes) in ADDRESS_FUNCTIONS.items():
    _fn = getattr(lib_address, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

lib_gil = ctypes.PyDLL(str(LIBRARY_PATH))
for _name, (_restype, _argtypes) in GIL_HELD_FUNCTIONS.items():
    _fn = getattr(lib_gil, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn

if lib.brokk_abi_version() != BROKK_ABI_VERSION:
    raise ImportError(
        f"brokk: {LIBRARY_PATH} has ABI version {lib.brokk_abi_version()}, "
        f"this binding was written for ABI version {BROKK_ABI_VERSION}"
    )


def last_error() -> str:
    """brokk_last_error() of this thread, copied: call it right after the failing call."""
    raw = lib.brokk_last_error()
    return raw.decode("utf-8", "replace") if raw else ""


def view_bytes(view: brokk_str) -> bytes:
    """Copies the bytes of a brokk_str view (valid only as long as its message)."""
    if not view.len:
        return b""
    return ctypes.string_at(view.ptr, view.len)


def view_text(view: brokk_str) -> str:
    return view_bytes(view).decode("utf-8")
