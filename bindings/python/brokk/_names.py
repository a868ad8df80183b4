"""Topic names from arbitrary text: brokk_topic_name_part (core/src/names.rs), the same in every
language, so that a producer in C, C++ or Go derives the topic a Python program derives."""

from __future__ import annotations

import ctypes

from . import _errors, _ffi

__all__ = ["topic_name"]


def topic_name(text: str, max_len: int = _ffi.BROKK_TOPIC_MAX_LEN) -> str:
    """Maps any string onto a topic name fragment of at most `max_len` bytes: bytes of
    ``[A-Za-z0-9.-]`` are kept, every other byte of its UTF-8 (``_`` included) becomes ``_`` and
    two lowercase hex digits (``"my app"`` -> ``"my_20app"``); if that is longer than `max_len`,
    it is cut and followed by ``_x`` and the 16 hex digits of the 64-bit FNV-1a hash of the
    whole input. Different strings give different fragments (truncated ones: unless their
    hashes collide); a fragment never contains ``"__"``.

    Raises InvalidUTF8Error (a lone surrogate), InvalidArgumentError (it must be truncated and
    `max_len` is below 18, or `max_len` is negative)."""
    if type(max_len) is not int or max_len < 0:
        raise _errors.invalid_argument(f"max_len must be a non-negative int, not {max_len!r}")
    data = text.encode("utf-8", "surrogatepass")
    out = ctypes.create_string_buffer(max_len + 1)
    length = ctypes.c_size_t(0)
    _errors.check(_ffi.lib.brokk_topic_name_part(data, len(data), max_len, out, max_len + 1, ctypes.byref(length)))
    return out.raw[: length.value].decode("ascii")
