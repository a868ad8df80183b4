"""JSON as the binding sends and reads it: what is published arrives unchanged, or is refused.

- ``dumps(value, what)`` is ``json.dumps(value, ensure_ascii=False, allow_nan=False)`` for a
  value JSON carries unchanged, and raises ``NotJSONError`` (an ``InvalidJSONError``, also a
  ``TypeError``), naming where in `what` ("payload", "metadata", ...) the problem is, for any
  other: a dict key that is not a str (json.dumps would turn 1, 1.5, True or None into "1",
  "1.5", "true", "null" without a word), NaN or an infinity (json.dumps writes ``NaN``, which is
  not JSON), a tuple (it would arrive as a list), a set, bytes or any other object, a circular
  reference. Every publish path of the package (publish, publish_batch, metadata, the Tadween
  facade, the pynenc plugin) encodes through it.
- ``loads(data)`` is ``json.loads(data)`` for the bytes of a message brokk hands over.

Both run once per message, so both skip the json module's per-call set-up:

- json.dumps builds a JSONEncoder, and its ``encode`` builds a new C encoder
  (``c_make_encoder``), on every call: about 1.5 µs of a 2 µs encode of a small dict. Here each
  thread builds the same C encoder, with the same arguments JSONEncoder passes, once. Its
  ``markers`` dict (circular-reference detection) is empty again after every successful call,
  and is cleared after a failed one, as a fresh one would be. The C encoder refuses NaN,
  infinities, sets, bytes, objects and cycles itself; it cannot be told to refuse tuples or
  non-str keys, so after it succeeds a check looks closer. A scalar needs nothing. That a dict
  or list holds no container (a tuple is written as a list) shows in its text: two or three
  C-level substring searches; then a dict's keys are checked to be str, in a loop. Anything
  else is walked in Python, with C-level passes over each container's keys and value types
  (one pair for all the dicts of a list of dicts); a precise walk (``_problem``), for the error
  message, runs only when those find something unusual.
- json.loads runs ``detect_encoding`` and ``JSONDecoder.decode`` in Python around the C scanner.
  For a JSON text brokk accepted (valid UTF-8, so detect_encoding says UTF-8), the C scanner
  alone gives the same value when it consumes the whole text from offset 0; anything else
  (leading or trailing whitespace, an error) goes through json.loads itself, for its exact result
  or exception.

Both check themselves against the json module at import, and fall back to it if they differ.
"""

from __future__ import annotations

import itertools
import json
import json.decoder
import json.encoder
import math
import threading
from typing import Any

from ._errors import NotJSONError, Status

_reference_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_json_loads = json.loads

# Exact types JSON carries unchanged. Subclasses of str, int and float arrive as the same text
# or number (equal, if of the base type), of dict and list as a dict and a list: they pass the
# precise check (_problem), not the fast one (_plain).
_SCALARS = frozenset((str, int, float, bool, type(None)))
_CONTAINERS = frozenset((dict, list))
_scalars_only = _SCALARS.issuperset
_join = "".join
_dicts_only = frozenset((dict,)).issuperset
_chain = itertools.chain.from_iterable
_values = dict.values


def _plain(value: Any) -> bool:
    """True if `value`, already encoded without error, is plain JSON: every dict key a str,
    every value an exact str, int, float, bool, None, dict or list, all the way down. False
    means: look closer (a subclass may still be fine)."""
    t = type(value)
    if t is dict:
        try:
            _join(value)  # the keys: str.join takes str (and subclasses) only
        except TypeError:
            return False
        items: Any = value.values()
    elif t is list:
        items = value
        if items and _dicts_only(map(type, items)):  # a list of records: their keys and values at once
            try:
                _join(_chain(items))
            except TypeError:
                return False
            if _scalars_only(map(type, _chain(map(_values, items)))):
                return True
    else:
        return t in _SCALARS
    if _scalars_only(map(type, items)):
        return True
    for item in items:
        t = type(item)
        if t in _SCALARS:
            continue
        if t not in _CONTAINERS or not _plain(item):
            return False
    return True


_LEAVE = object()  # on _problem's stack: the walk leaves the container whose id comes with it


def _problem(value: Any, what: str) -> str | None:
    """What makes `value` something JSON cannot carry unchanged, said of its place in `what`
    ("payload['a'][2]: ..."), or None. Walks with a stack of its own (any depth), reporting a
    cycle rather than following it."""
    stack: list[tuple[Any, Any]] = [(value, what)]
    active: set[int] = set()  # the containers on the way down to the current value
    while stack:
        value, path = stack.pop()
        if path is _LEAVE:
            active.discard(value)
            continue
        if value is None or isinstance(value, (str, int)):  # bool is an int
            continue
        if isinstance(value, float):
            if math.isfinite(value):
                continue
            return f"{path} is {value!r}: JSON has no NaN or infinities"
        if isinstance(value, tuple):
            return f"{path} is a tuple: it would arrive as a list (publish a list)"
        if not isinstance(value, (dict, list)):
            return f"{path} is a {type(value).__name__}: JSON cannot carry it"
        if id(value) in active:
            return f"{path} contains itself (a circular reference)"
        active.add(id(value))
        stack.append((id(value), _LEAVE))
        if isinstance(value, list):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(value)]
        else:
            for key in value:
                if not isinstance(key, str):
                    return (
                        f"{path}: key {key!r} is a {type(key).__name__}, not a str: JSON object "
                        "keys are strings, so it would not arrive as it is"
                    )
            children = [(item, f"{path}[{key!r}]") for key, item in value.items()]
        stack.extend(reversed(children))  # the first child is looked at first
    return None


def _refused(value: Any, what: str, cause: BaseException | None) -> NotJSONError:
    problem = _problem(value, what)
    if problem is None:  # cause is what the encoder said (only a bug of ours gets here)
        problem = f"{what} cannot be encoded as JSON" + (f": {cause}" if cause is not None else "")
    return NotJSONError(Status.INVALID_JSON, problem)


def _make_dumps(c_make_encoder: Any):
    """dumps, with one C encoder per thread made by `c_make_encoder` (None: json's own)."""
    ref = _reference_encoder
    local = threading.local()

    def new_encoder() -> tuple[Any, dict]:
        markers: dict = {}
        if c_make_encoder is None:
            return (lambda value, _level: (ref.encode(value),)), markers
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
        return encoder, markers

    def dumps(value: Any, what: str = "payload") -> str:
        """The JSON text of `value`; NotJSONError if JSON cannot carry it unchanged."""
        try:
            encoder, markers = local.encoder
        except AttributeError:
            encoder, markers = local.encoder = new_encoder()
        try:
            text = "".join(encoder(value, 0))
        except (TypeError, ValueError) as exc:  # a type or a float json refuses, or a cycle
            markers.clear()
            raise _refused(value, what, exc) from exc
        except BaseException:
            markers.clear()
            raise
        # The common payloads, inlined. A scalar. A dict or list with no container inside (a
        # tuple is written as a list): in a dict's text a container follows a key, as '": {' or
        # '": [', in a list's the opening bracket or a comma; looked for at C speed (a string
        # that happens to hold one of these sends the value to the walk below, nothing worse).
        # And a dict's keys must be str: a loop over a few keys costs less than any C call.
        t = type(value)
        if t is dict:
            if '": {' not in text and '": [' not in text:
                for key in value:
                    if type(key) is not str:
                        break
                else:
                    return text
        elif t in _SCALARS:
            return text
        elif t is list and text[1] not in "[{" and ", [" not in text and ", {" not in text:
            return text
        try:
            if _plain(value):
                return text
        except RecursionError:  # nested deeper than _plain can recurse: _problem walks any depth
            pass
        if _problem(value, what) is not None:
            raise _refused(value, what, None)
        return text

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
    [{"k": 1}, {"k": [2]}],
    "text",
    12,
    [],
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
        for bad in (float("nan"), [float("inf")], circular, {1: 2}, [(1,)]):
            try:
                dumps(bad)
                return False
            except NotJSONError:
                pass
        return dumps({"after": "a failure"}) == '{"after": "a failure"}'
    except Exception:  # noqa: BLE001
        return False


dumps = _make_dumps(getattr(json.encoder, "c_make_encoder", None))
loads = _make_loads()
if not _agrees(dumps, loads):  # pragma: no cover - a json module that works differently
    dumps = _make_dumps(None)
    loads = _json_loads
