"""What ``Broker.peek`` hands to Python: ``Peeked`` values copied out of a brokk_peek_result
(which is freed before peek returns, so nothing refers to brokk's memory)."""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import time
from ctypes import byref
from typing import Any

from . import _ffi, _json
from ._errors import check


@dataclasses.dataclass(frozen=True)
class Peeked:
    """A delivery that a fetch of the group would get, shown by ``Broker.peek`` without taking
    it: no delivery id (nothing was handed out), and ``attempt`` is the one a fetch now would
    be. ``payload`` and ``metadata`` are decoded from the JSON as for a fetched ``Message``;
    ``raw_payload`` and ``raw_metadata`` are its bytes exactly as published."""

    topic: str
    id: str
    payload: Any
    metadata: dict
    priority: int
    attempt: int
    timestamp_ms: int
    raw_payload: bytes = dataclasses.field(repr=False, default=b"")
    raw_metadata: bytes = dataclasses.field(repr=False, default=b"{}")

    @property
    def timestamp(self) -> datetime.datetime:
        """When the message was published (UTC)."""
        return datetime.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=datetime.timezone.utc)

    @property
    def age(self) -> float:
        """Seconds since the message was published, by this machine's clock (never negative)."""
        return max(0.0, time.time() - self.timestamp_ms / 1000)


def _bytes(view: _ffi.brokk_str) -> bytes:
    return ctypes.string_at(view.ptr, view.len) if view.len else b""


def read_all(result: Any) -> list[Peeked]:
    """Every delivery of the brokk_peek_result `result`, copied, in its order."""
    fields = _ffi.brokk_peeked_fields()
    out = []
    for i in range(_ffi.lib.brokk_peek_result_count(result)):
        check(_ffi.lib.brokk_peek_result_read(result, i, byref(fields)))
        raw_payload, raw_metadata = _bytes(fields.payload), _bytes(fields.metadata)
        out.append(
            Peeked(
                topic=_bytes(fields.topic).decode(),
                id=_bytes(fields.id).decode(),
                payload=_json.loads(raw_payload) if raw_payload else None,
                metadata=_json.loads(raw_metadata) if raw_metadata else {},
                priority=fields.priority,
                attempt=fields.attempt,
                timestamp_ms=fields.timestamp_ms,
                raw_payload=raw_payload,
                raw_metadata=raw_metadata,
            )
        )
    return out
