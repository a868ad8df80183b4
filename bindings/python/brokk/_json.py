"""json.dumps and json.loads as the binding uses them, with the same results, minus their per-call
set-up (the publish and delivery hot paths run them once per message).

- ``dumps(value)`` is ``json.dumps(value, ensure_ascii=False)``. That call builds a JSONEncoder,
  and its ``encode`` builds a new C encoder (``c_make_encoder``), on every call: about 1.5 µs of a
  2 µs encode of a small dict. Here each thread builds the same C encoder, with the same
  arguments JSONEncoder passes, once. Its ``markers`` dict (circular-reference detection) is empty
  again after every successful call, and is cleared after a failed one, as a fresh one would be.
- ``loads(data)`` is ``json.loads(data)`` for the bytes of a message brokk hands over. json.loads
  runs ``detect_encoding`` and ``JSONDecoder.decode`` in Python around the C scanner. For a JSON
  text brokk accepted (valid UTF-8, so detect_encoding says UTF-8), the C scanner alone gives the
  same value when it consumes the whole text from offset 0; anything else (leading or trailing
  whitespace, an error) goes through json.loads itself, for its exact result or exception.

Both check themselves against the json module at import, and fall back to it if they differ.
"""

from __future__ import annotations

import json
import json.decoder
import json.encoder
import threading
from typing import Any

_reference_encoder = json.JSONEncoder(ensure_ascii=False)
_json_loads = json.loads


def _make_dumps():
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - no C accelerator
        return _reference_encoder.encode
    ref = _reference_encoder
    local = threading.local()

    def dumps(value: Any) -> str:
        try:
            encoder, markers = local.encoder
        except AttributeError:
            markers = {}
            # The arguments JSONEncoder.iterencode passes (indent None: the one-shot C path).
            encoder = c_make_encoder(
                markers,
                ref.default,
                json.encoder.encode_basestring,
                ref.indent,
                ref.key_separator,
                ref.item_separator,
                ref.sort_keys,
                ref.skipkeys,
                ref.allow_nan,
            )
            local.encoder = (encoder, markers)
        try:
            return "".join(encoder(value, 0))
        except BaseException:
            markers.clear()
            raise

    return dumps


def _make_loads():
    scan_once = getattr(json.decoder.JSONDecoder(), "scan_once", None)
    if scan_once is None:  # pragma: no cover
        return _json_loads

    def loads(data: bytes) -> Any:
        try:
            text = data.decode("utf-8", "surrogatepass")
            value, end = scan_once(text, 0)
            if end == len(text):
                return value
        except Exception:  # noqa: BLE001 - json.loads below gives the real answer
            pass
        return _json_loads(data)

    return loads


_SAMPLES = [
    {"i": 1, "s": "abc"},
    {"a": [1, -2.5, 1e300, None, True, False, "é\u2028\x00\"\\/", {"b": -0.0}], "c": 10**30, "": []},
    "text",
    12,
    [],
    float("nan"),
    [float("inf"), float("-inf")],
]


def _agrees(dumps, loads) -> bool:
    try:
        for sample in _SAMPLES:
            text = json.dumps(sample, ensure_ascii=False)
            if dumps(sample) != text:
                return False
            data = text.encode("utf-8")
            if repr(loads(data)) != repr(json.loads(data)):
                return False
        circular: list = []
        circular.append(circular)
        try:
            dumps(circular)
            return False
        except ValueError:
            pass
        return dumps({"after": "a failure"}) == '{"after": "a failure"}'
    except Exception:  # noqa: BLE001
        return False


dumps = _make_dumps()
loads = _make_loads()
if not _agrees(dumps, loads):  # pragma: no cover - a json module that works differently
    dumps = _reference_encoder.encode
    loads = _json_loads
