"""What handlers, listeners and fetch hand to Python: copies, never views (a view dies with the
callback that received it)."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from typing import Any

from . import _ffi


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


@dataclasses.dataclass(frozen=True)
class Message:
    """One delivery (or, in a listener's on_publish, the published message), copied out of
    brokk. ``payload`` and ``metadata`` are decoded from the JSON; ``raw_payload`` and
    ``raw_metadata`` are its bytes exactly as published."""

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
        lib = _ffi.lib
        raw_payload = _ffi.view_bytes(lib.brokk_message_payload(msg))
        raw_metadata = _ffi.view_bytes(lib.brokk_message_metadata(msg))
        group = _ffi.view_text(lib.brokk_message_group(msg))
        return cls(
            topic=_ffi.view_text(lib.brokk_message_topic(msg)),
            payload=json.loads(raw_payload) if raw_payload else None,
            metadata=json.loads(raw_metadata) if raw_metadata else {},
            id=_ffi.view_text(lib.brokk_message_id(msg)),
            parent_id=_ffi.view_text(lib.brokk_message_parent_id(msg)),
            delivery_id=lib.brokk_message_delivery_id(msg),
            subscription_id=lib.brokk_message_subscription_id(msg),
            attempt=lib.brokk_message_attempt(msg),
            priority=lib.brokk_message_priority(msg),
            group=group or None,
            timestamp_ms=lib.brokk_message_timestamp_ms(msg),
            raw_payload=raw_payload,
            raw_metadata=raw_metadata,
        )
