"""Payloads and metadata travel as JSON, unchanged: a value JSON cannot carry as it is (a key that
is not a str, NaN or an infinity, a tuple, a set, bytes, any other object, a cycle) raises
brokk.NotJSONError on every publish path, and nothing is published."""

from __future__ import annotations

import enum
import json
import math

import pytest
from conftest import T

import brokk
from brokk import _json
from brokk.compat import tadween


def _circular_list():
    value: list = [1]
    value.append(value)
    return value


def _circular_dict():
    value: dict = {"a": 1}
    value["self"] = {"again": value}
    return value


class _Thing:
    pass


# (value, what the message names)
NOT_JSON = {
    "int key": ({1: "x"}, "key 1"),
    "float key": ({1.5: "x"}, "key 1.5"),
    "bool key": ({True: "x"}, "key True"),
    "None key": ({None: "x"}, "key None"),
    "tuple key": ({(1, 2): "x"}, "key (1, 2)"),
    "nested int key": ({"a": [{"b": {2: 1}}]}, "['a'][0]['b']"),
    "nan": (float("nan"), "nan"),
    "infinity": (float("inf"), "inf"),
    "nested -infinity": ({"a": [1, float("-inf")]}, "['a'][1]"),
    "set": ({"a": {1, 2}}, "set"),
    "frozenset": (frozenset(), "frozenset"),
    "bytes": ({"a": b"raw"}, "bytes"),
    "bytearray": (bytearray(b"x"), "bytearray"),
    "object": ({"a": _Thing()}, "_Thing"),
    "tuple": ((1, 2), "tuple"),
    "nested tuple": ({"a": [1, (2,)]}, "['a'][1]"),
    "list with a tuple": ([1, "[x]", (2,)], "[2]"),
    "records, one with an int key": ([{"a": 1}, {"a": 2, 3: "b"}], "[1]: key 3"),
    "records, one with a tuple": ([{"a": [1]}, {"a": (1,)}], "[1]['a']"),
    "brackets in a string": ({"s": "[{x}]", 3: 1}, "key 3"),
    "circular list": (_circular_list(), "circular"),
    "circular dict": (_circular_dict(), "circular"),
}
CASES = list(NOT_JSON.values())
IDS = list(NOT_JSON)


def _published(broker) -> int:
    return broker.stats().published


def _check(err, what: str, named: str) -> None:
    assert isinstance(err.value, brokk.InvalidJSONError) and isinstance(err.value, TypeError)
    assert err.value.status == brokk.Status.INVALID_JSON
    assert what in str(err.value) and named in str(err.value), str(err.value)


@pytest.mark.parametrize(("value", "named"), CASES, ids=IDS)
def test_publish_refuses_what_json_cannot_carry_unchanged(broker, value, named):
    for call in (
        lambda: broker.publish("j", value),  # the request form (no options)
        lambda: broker.publish("j", value, priority=3),  # the request form with a priority
        lambda: broker.publish("j", value, id="mine"),  # the plain form, with options
        lambda: broker.publish_batch("j", [1, value]),
        lambda: broker.publish_batch("j", [brokk.BatchMessage(value)]),
    ):
        with pytest.raises(brokk.NotJSONError) as err:
            call()
        _check(err, "payload", named)
    assert _published(broker) == 0 and broker.count("j") == 0


@pytest.mark.parametrize(("value", "named"), CASES, ids=IDS)
def test_metadata_refuses_what_json_cannot_carry_unchanged(broker, value, named):
    metadata = value if isinstance(value, dict) else {"m": value}
    for call in (
        lambda: broker.publish("j", 1, metadata=metadata),
        lambda: broker.publish_batch("j", [1, brokk.BatchMessage(2, metadata=metadata)]),
    ):
        with pytest.raises(brokk.NotJSONError) as err:
            call()
        _check(err, "metadata", named)
    assert _published(broker) == 0 and broker.count("j") == 0


@pytest.mark.parametrize(("value", "named"), CASES, ids=IDS)
def test_tadween_facade_refuses_what_json_cannot_carry_unchanged(value, named):
    broker = tadween.InMemoryBroker(max_workers=2)
    try:
        broker.subscribe("t", lambda m: None)
        payload = value if isinstance(value, dict) else {"p": value}
        for message in (
            tadween.Message(topic="t", payload=payload),
            tadween.Message(topic="t", payload={"ok": 1}, metadata=payload),
        ):
            with pytest.raises(brokk.NotJSONError, match="JSON") as err:
                broker.publish(message)
            assert isinstance(err.value, TypeError) and named in str(err.value)
        assert _published(broker.brokk) == 0
    finally:
        broker.close(T(5))


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


ROUND_TRIPS = [
    None,
    True,
    0,
    -(10**30),
    1.5,
    -0.0,
    1e300,
    "text é \u2028 \x00",
    [],
    {},
    {"a": [1, 2.5, None, True, {"b": [], "c": {}}], "": "empty key"},
    [[[[{"deep": [1]}]]]],
    {"same": [1], "again": [1]},
    ["a", 1, 2.5, None, "[{"],
    [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2, "tags": ["x"]}],
    {"text": "[{not a container}]", "n": 1},
    {Name("k"): Name("v")},  # str subclasses: the same text
    {"colour": Colour.RED},  # int subclasses: the same number
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=repr)
def test_what_json_carries_arrives_unchanged(broker, value):
    broker.publish("rt", value, metadata={"v": value})
    message = broker.fetch("rt", timeout=T(10))
    broker.ack(message.delivery_id)
    assert message.payload == value and message.metadata == {"v": value}
    assert repr(message.payload) == repr(json.loads(json.dumps(value)))
    if isinstance(value, float):
        assert math.copysign(1, message.payload) == math.copysign(1, value)


def test_the_encoder_is_json_dumps_where_the_value_is_json():
    for value in ROUND_TRIPS:
        assert _json.dumps(value) == json.dumps(value, ensure_ascii=False)
    # After a refusal the per-thread encoder works as before (its cycle markers are clean).
    shared = [1]
    for bad in (_circular_list(), {1: shared}, float("nan")):
        with pytest.raises(brokk.NotJSONError):
            _json.dumps(bad)
    assert _json.dumps({"x": shared, "y": shared}) == '{"x": [1], "y": [1]}'


def test_nothing_of_a_batch_with_one_bad_message_is_published(broker):
    with pytest.raises(brokk.NotJSONError) as err:
        broker.publish_batch("b", [1, 2, brokk.BatchMessage({"ok": 1}, metadata={7: "x"}), 4])
    assert "messages[2].metadata" in str(err.value)
    assert broker.count("b") == 0 and _published(broker) == 0
