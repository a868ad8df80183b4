"""What handlers, listeners and fetch hand to Python: Message objects that never refer to memory
brokk may free. A handler's or listener's message view dies with the callback, so it is copied
during the callback. A fetched delivery is owned by the caller until brokk_delivery_free, so a
fetched Message owns it, reads its fields on first use, and frees it then (or when collected)."""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import enum
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

from . import _ffi, _json
from ._errors import error_for


class Verdict(enum.IntEnum):
    """A handler's answer (BROKK_VERDICT_*). A handler returning None means ACK."""

    ACK = _ffi.BROKK_VERDICT_ACK
    NACK = _ffi.BROKK_VERDICT_NACK
    REQUEUE = _ffi.BROKK_VERDICT_REQUEUE
    LATER = _ffi.BROKK_VERDICT_LATER


class Requeue(Exception):
    """Raise it (or return it, see ``requeue``) from a handler to requeue the delivery, no
    earlier than ``delay`` seconds from now, with ``reason`` for listeners' on_failed. Not
    recorded as a handler error."""

    def __init__(self, delay: float = 0.0, reason: str | None = None):
        super().__init__(reason or "requeued by handler")
        self.delay = delay
        self.reason = reason


def requeue(delay: float = 0.0, reason: str | None = None) -> Requeue:
    """``return brokk.requeue(0.5)`` from a handler: the same as ``raise brokk.Requeue(0.5)``."""
    return Requeue(delay, reason)


class _Payload:
    """``Message.payload`` of a message copied out of brokk: decoded from ``raw_payload`` on first
    access, once, then kept in the instance dict, which from then on shadows this non-data
    descriptor. A Message built by its constructor has the value in its instance dict from the
    start, so this is never consulted for it. Class-level access raises AttributeError, as for
    any field without a default."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError("payload")
        raw = obj.raw_payload
        return obj.__dict__.setdefault("payload", _loads(raw) if raw else None)


class _Metadata:
    """``Message.metadata``, as ``_Payload`` for ``raw_metadata`` (empty: ``{}``)."""

    __slots__ = ()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError("metadata")
        raw = obj.raw_metadata
        return obj.__dict__.setdefault("metadata", _loads(raw) if raw else {})


_NO_DEFAULT: Any = object()


class _Copied:
    """A field of a fetched Message other than delivery_id (and payload/metadata, decoded from
    raw_payload/raw_metadata): a fetched message owns its brokk_delivery handle, reads where its
    fields are on the first access of any (``_located``), and copies each field out of the
    delivery on its own first access. Shadowed by the instance dict in every other Message.
    Class-level access gives the field's default, or AttributeError, as before."""

    __slots__ = ("name", "read", "default")

    def __init__(self, name: str, read: Callable[[tuple], Any], default: Any = _NO_DEFAULT):
        self.name = name
        self.read = read
        self.default = default

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if self.default is _NO_DEFAULT:
                raise AttributeError(self.name)
            return self.default
        state = obj.__dict__
        view = state.get("_view")
        if view is None:
            raise AttributeError(self.name)
        if type(view) is not tuple:
            view = _located(state, view)
        # setdefault: another thread may be doing the same; `view` keeps the delivery alive.
        return state.setdefault(self.name, self.read(view[1]))


@dataclasses.dataclass(frozen=True)
class Message:
    """One delivery (or, in a listener's on_publish, the published message), copied out of
    brokk. ``payload`` and ``metadata`` are decoded from the JSON; ``raw_payload`` and
    ``raw_metadata`` are its bytes exactly as published.

    A message that brokk hands over (handlers, listeners, fetch) decodes ``payload`` and
    ``metadata`` on first access, once, and keeps the result: a handler that never reads them
    does not pay for ``json.loads``. A fetched message also copies its text and bytes out of
    brokk on first access (it keeps the delivery's memory until then, or until it is collected).
    They compare, print, copy and pickle like the other fields."""

    topic: str
    payload: Any
    metadata: dict
    id: str
    parent_id: str
    delivery_id: int
    subscription_id: int
    attempt: int
    priority: int
    group: str | None
    timestamp_ms: int
    raw_payload: bytes = dataclasses.field(repr=False, default=b"")
    raw_metadata: bytes = dataclasses.field(repr=False, default=b"{}")

    @property
    def timestamp(self) -> datetime.datetime:
        """When the message was published (UTC)."""
        return datetime.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=datetime.timezone.utc)

    @classmethod
    def _from_view(cls, msg) -> Message:
        """Copies everything out of a ``const brokk_message *`` while it is valid."""
        return _read(ctypes.cast(msg, ctypes.c_void_p).value)

    def __getstate__(self) -> dict:
        # copy, deepcopy and pickle: every field copied out of brokk first, the handle left out.
        state = self.__dict__
        if "_view" not in state:
            return state
        for name in _LAZY_FIELDS:
            getattr(self, name)
        return {name: value for name, value in state.items() if name != "_view"}


# Set after the dataclass is made, so that its fields (and type checkers) see no default.
Message.payload = _Payload()  # type: ignore[assignment]
Message.metadata = _Metadata()  # type: ignore[assignment]
# Where each field is in a brokk_message_fields as unpacked by _FIELDS (see _read), as read for a
# fetched message.
_LAZY_READERS: dict[str, Callable[[tuple], Any]] = {
    "topic": lambda f: _copy(f[0], f[1]).decode() if f[1] else "",
    "id": lambda f: _copy(f[2], f[3]).decode() if f[3] else "",
    "parent_id": lambda f: _copy(f[4], f[5]).decode() if f[5] else "",
    "subscription_id": lambda f: f[13],
    "attempt": lambda f: f[16],
    "priority": lambda f: f[15],
    "group": lambda f: _copy(f[10], f[11]).decode() if f[11] else None,
    "timestamp_ms": lambda f: f[14],
    "raw_payload": lambda f: _copy(f[6], f[7]) if f[7] else b"",
    "raw_metadata": lambda f: _copy(f[8], f[9]) if f[9] else b"",
}
_LAZY_FIELDS = tuple(_LAZY_READERS)
_DEFAULTS = {"raw_payload": b"", "raw_metadata": b"{}"}  # the dataclass defaults, at class level
for _name, _reader in _LAZY_READERS.items():
    setattr(Message, _name, _Copied(_name, _reader, _DEFAULTS.get(_name, _NO_DEFAULT)))
del _name, _reader


# ---- copying a message view: the hot path of every handler and listener --------------------------
#
# One brokk_message_read fills a brokk_message_fields, read back with one struct.unpack (no
# ctypes object per field). The Message is made without its __init__ (a frozen dataclass sets each
# field through object.__setattr__) by filling its __dict__; payload and metadata are left out and
# decoded on first access (_Payload, _Metadata), with the results the eager code had.
#
# Each non-empty text is copied out of a memoryview that spans the whole address space: a slice
# of it is the (pointer, length) view, and tobytes() copies it, as ctypes.string_at(pointer,
# length) does, at a third of the cost (no foreign-function call). Only the views brokk hands
# over are ever sliced, while they are valid. On 64-bit platforms every user-space address is
# below sys.maxsize; elsewhere string_at does the copy.

_loads = _json.loads  # json.loads, without its per-call set-up
_new = object.__new__
# brokk_message_fields, natively: six (pointer, size_t) views, three uint64, an int32, a uint32.
_FIELDS = struct.Struct("@" + "PN" * 6 + "QQQiI")
assert _FIELDS.size == ctypes.sizeof(_ffi.brokk_message_fields), "brokk_message_fields layout"
assert _ffi.brokk_message_fields.delivery_id.offset == struct.calcsize("@" + "PN" * 6)
_unpack_from = _FIELDS.unpack_from
if sys.maxsize > 2**32:
    _MEMORY = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B")

    def _copy(pointer: int, length: int) -> bytes:
        return _MEMORY[pointer : pointer + length].tobytes()

else:  # pragma: no cover - 32-bit
    _MEMORY = None
    _copy = ctypes.string_at
_message_read = _ffi.lib_gil.brokk_message_read
_buffers = threading.local()


def _fields_buffer() -> tuple[Any, int]:
    """This thread's brokk_message_fields (reused: it is unpacked before anything else runs)."""
    try:
        return _buffers.fields
    except AttributeError:
        buf = _ffi.brokk_message_fields()
        _buffers.fields = pair = (buf, ctypes.addressof(buf))
        return pair


def _read(msg: int) -> Message:
    """A ``Message`` copied out of the message view at address `msg` (valid during the call)."""
    try:
        buf, address = _buffers.fields
    except AttributeError:
        buf, address = _fields_buffer()
    status = _message_read(msg, address)
    if status:
        raise error_for(status, _ffi.last_error())
    (
        topic_p, topic_n, id_p, id_n, parent_p, parent_n, payload_p, payload_n,
        meta_p, meta_n, group_p, group_n, delivery_id, subscription_id, timestamp_ms, priority, attempt,
    ) = _unpack_from(buf)  # fmt: skip
    m = _new(Message)
    if _MEMORY is not None:
        memory = _MEMORY
        m.__dict__.update(
            topic=memory[topic_p : topic_p + topic_n].tobytes().decode() if topic_n else "",
            id=memory[id_p : id_p + id_n].tobytes().decode() if id_n else "",
            parent_id=memory[parent_p : parent_p + parent_n].tobytes().decode() if parent_n else "",
            delivery_id=delivery_id,
            subscription_id=subscription_id,
            attempt=attempt,
            priority=priority,
            group=memory[group_p : group_p + group_n].tobytes().decode() if group_n else None,
            timestamp_ms=timestamp_ms,
            raw_payload=memory[payload_p : payload_p + payload_n].tobytes() if payload_n else b"",
            raw_metadata=memory[meta_p : meta_p + meta_n].tobytes() if meta_n else b"",
        )
        return m
    copy = _copy  # pragma: no cover - 32-bit
    m.__dict__.update(
        topic=copy(topic_p, topic_n).decode() if topic_n else "",
        id=copy(id_p, id_n).decode() if id_n else "",
        parent_id=copy(parent_p, parent_n).decode() if parent_n else "",
        delivery_id=delivery_id,
        subscription_id=subscription_id,
        attempt=attempt,
        priority=priority,
        group=copy(group_p, group_n).decode() if group_n else None,
        timestamp_ms=timestamp_ms,
        raw_payload=copy(payload_p, payload_n) if payload_n else b"",
        raw_metadata=copy(meta_p, meta_n) if meta_n else b"",
    )
    return m


# ---- fetched messages: they own their delivery handle --------------------------------------------
#
# A fetched delivery's view stays valid until brokk_delivery_free, so a fetched Message need not
# copy anything at once: it reads its delivery id (brokk_message_delivery_id: what an ack needs)
# and keeps the handle (a _Handle, freed when the Message is collected). On the first access of
# any other field it reads where they all are (one brokk_message_read, _located), and each field
# is copied on its own first access (_Copied). A consumer that only acks copies nothing, and one
# that reads the payload copies only the payload: this is what makes fetch_many + ack_many
# cheap. The values are the same whenever they are read: a fetched delivery's view does not
# change until it is freed. A message view of a handler or listener dies with its callback, so
# those are copied at once (_read).

_delivery_message = _ffi.lib_gil.brokk_delivery_message
_delivery_id = _ffi.lib_gil.brokk_message_delivery_id
_delivery_free = _ffi.lib_gil.brokk_delivery_free


class _Handle(int):
    """The address of a fetched brokk_delivery, which this object owns: brokk_delivery_free (which
    does not settle the delivery) runs when it is collected."""

    __slots__ = ()

    def __del__(self) -> None:
        try:
            _delivery_free(self)
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to free with
            pass


def _fetched(handles: list[_Handle]) -> list[Message]:
    """A Message for each handle, owning it: the delivery id read now (what ack needs), every
    other field read and copied on first use of any."""
    delivery_id, view_of, new = _delivery_id, _delivery_message, _new
    messages = []
    for handle in handles:
        m = new(Message)
        m.__dict__.update(delivery_id=delivery_id(view_of(handle)), _view=handle)
        messages.append(m)
    return messages


def _located(state: dict, handle: _Handle) -> tuple:
    """Reads where every field of a fetched message is (brokk_message_read), once: the instance's
    ``_view`` becomes (handle, the unpacked brokk_message_fields)."""
    try:
        buf, address = _buffers.fields
    except AttributeError:
        buf, address = _fields_buffer()
    status = _message_read(_delivery_message(handle), address)
    if status:
        raise error_for(status, _ffi.last_error())
    view = (handle, _unpack_from(buf))
    state["_view"] = view
    return view
