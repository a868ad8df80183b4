"""Every bad input raises the exception of its status (class and subclass), with brokk's
detail; use after close raises ClosedError."""

from __future__ import annotations

import builtins
import ctypes

import pytest
from conftest import T

import brokk
from brokk import _errors, _ffi

BAD_TOPICS = ["", "has space", "x" * 256, "ünï", "a/b", "comma,topic"]


@pytest.mark.parametrize("topic", BAD_TOPICS)
def test_invalid_topic_everywhere(broker, topic):
    for call in (
        lambda: broker.publish(topic, 1),
        lambda: broker.publish_batch(topic, [1]),
        lambda: broker.subscribe(topic, lambda m: None),
        lambda: broker.fetch(topic),
        lambda: broker.count([topic]),
        lambda: broker.purge(topic),
    ):
        with pytest.raises(brokk.InvalidTopicError) as err:
            call()
        assert err.value.status == brokk.Status.INVALID_TOPIC
        assert isinstance(err.value, brokk.CallerError) and isinstance(err.value, ValueError)
        assert err.value.message  # brokk_last_error()'s detail


def test_longest_topic_is_fine(broker):
    broker.publish("x" * brokk.TOPIC_MAX_LEN, 1)


def test_invalid_utf8(broker):
    lone = "\ud800"  # a lone surrogate: not encodable as UTF-8; reaches brokk as invalid bytes
    with pytest.raises(brokk.InvalidUTF8Error):
        broker.publish("t" + lone, 1)
    with pytest.raises(brokk.InvalidUTF8Error):
        broker.publish(b"\xff\xfe", 1)
    with pytest.raises(brokk.InvalidUTF8Error):
        broker.subscribe("t", lambda m: None, group=b"\xff")
    broker.publish("t", 1)
    msg = broker.fetch("t", timeout=T(10))
    with pytest.raises(brokk.InvalidUTF8Error):
        broker.nack(msg.delivery_id, reason="bad " + lone)
    broker.ack(msg.delivery_id)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"raw": "{not json"},
        {"raw": b""},
        {"raw": "1 2"},
        {"payload": float("nan")},
        {"payload": 1, "metadata": [1, 2]},
        {"payload": 1, "metadata": '"a string"'},
        {"payload": 1, "metadata": "{broken"},
    ],
)
def test_invalid_json(broker, kwargs):
    with pytest.raises(brokk.InvalidJSONError) as err:
        broker.publish("j", **kwargs)
    assert err.value.status == brokk.Status.INVALID_JSON


def test_not_serialisable_payload_is_a_type_error(broker):
    with pytest.raises(TypeError):
        broker.publish("j", object())
    with pytest.raises(TypeError):
        broker.publish("j")  # no payload at all
    with pytest.raises(TypeError):
        broker.publish("j", 1, raw="1")  # both


@pytest.mark.parametrize("bad_id", ["", "x" * 129, "é", "tab\there", "nul\0"])
def test_invalid_id(broker, bad_id):
    with pytest.raises(brokk.InvalidIdError):
        broker.publish("ids", 1, id=bad_id)
    with pytest.raises(brokk.InvalidIdError):
        broker.publish_batch("ids", [brokk.BatchMessage(1, id=bad_id)])
    assert broker.count("ids") == 0


def test_longest_id_is_fine(broker):
    assert broker.publish("ids", 1, id="x" * brokk.ID_MAX_LEN) == "x" * brokk.ID_MAX_LEN


def test_payload_too_large():
    with brokk.Broker(workers=2, max_payload_bytes=16) as b:
        b.publish("big", "x" * 10)
        with pytest.raises(brokk.PayloadTooLargeError):
            b.publish("big", "x" * 100)
        b.purge()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workers": 5000},
        {"retention_policy": 9},
        {"backpressure": 7},
        {"max_payload_bytes": 2**33},
        {"listener_queue_capacity": _ffi.BROKK_MAX_LISTENER_QUEUE + 1},
    ],
)
def test_invalid_broker_options(kwargs):
    with pytest.raises(brokk.InvalidArgumentError) as err:
        brokk.Broker(**kwargs)
    assert err.value.status == brokk.Status.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "kwargs", [{"workers": -1}, {"workers": 2**32}, {"publish_timeout": -1.0}, {"queue_capacity": 2**64}]
)
def test_options_outside_the_c_range_are_invalid_arguments(kwargs):
    # The binding refuses what C cannot even represent, with the library's exception.
    with pytest.raises(brokk.InvalidArgumentError):
        brokk.Broker(**kwargs)


def test_wrong_types_are_type_errors(broker):
    with pytest.raises(TypeError):
        brokk.Broker(workers="two")
    with pytest.raises(TypeError):
        broker.publish(42, 1)
    with pytest.raises(TypeError):
        broker.publish("t", 1, priority="high")
    with pytest.raises(TypeError):
        broker.subscribe("t", "not callable")
    with pytest.raises(TypeError):
        broker.fetch("t", timeout="soon")
    with pytest.raises(TypeError):
        broker.ack("12")


def test_invalid_url_and_unsupported_backend():
    with pytest.raises(brokk.InvalidURLError):
        brokk.Broker("not a url")
    with pytest.raises(brokk.InvalidURLError):
        brokk.Broker("memory://extra")
    with pytest.raises(brokk.InvalidURLError):
        brokk.Broker("ftp://x")
    with pytest.raises(brokk.UnsupportedBackendError) as err:
        brokk.Broker("rediss+cluster://localhost")  # no cluster over TLS in this build; rediss:// is
    assert "not available" in err.value.message
    with pytest.raises(brokk.CannotOpenStoreError):
        brokk.Broker("sqlite:///nonexistent-brokk-dir/x.db")
    with pytest.raises(brokk.InvalidArgumentError):
        brokk.Broker("memory://\0hidden")
    with brokk.Broker(None, workers=2):  # NULL url: memory://
        pass
    with brokk.Broker("", workers=2):
        pass


def test_invalid_arguments_of_calls(broker):
    with pytest.raises(brokk.InvalidArgumentError):
        broker.subscribe("t", lambda m: None, concurrency=brokk.MAX_CONCURRENCY + 1)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.subscribe("t", lambda m: None, concurrency=-1)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.publish("t", 1, priority=2**31)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.fetch("t", timeout=-1)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.subscribe("t", lambda m: None, ack_deadline=-0.5)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.join(timeout=float("nan"))
    with pytest.raises(brokk.InvalidArgumentError):
        broker.nack(1, delay=-1)
    with pytest.raises(brokk.InvalidArgumentError):
        broker.ack(-1)
    assert broker.publish("t", 1, priority=2**31 - 1) and broker.publish("t", 1, priority=-(2**31))


def test_invalid_group(broker):
    for bad in ("", "bad group", "g" * 256):
        with pytest.raises(brokk.InvalidGroupError):
            broker.subscribe("t", lambda m: None, group=bad)
        with pytest.raises(brokk.InvalidGroupError):
            broker.fetch("t", group=bad)


def test_invalid_dead_letter_topic(broker):
    with pytest.raises(brokk.CallerError):
        broker.subscribe("t", lambda m: None, dead_letter_topic="bad topic")
    with pytest.raises(brokk.CallerError):
        broker.fetch("t", dead_letter_topic="bad topic")


def test_null_arguments(broker):
    with pytest.raises(brokk.NullArgumentError):
        broker.publish(None, 1)
    with pytest.raises(brokk.NullArgumentError):
        broker.subscribe("t", None)
    with pytest.raises(brokk.NullArgumentError):
        broker.fetch(None)
    with pytest.raises(brokk.NullArgumentError):
        broker.count([None])


def test_unknown_ids(broker):
    with pytest.raises(brokk.UnknownSubscriptionError):
        broker.unsubscribe(424242)
    with pytest.raises(brokk.UnknownListenerError):
        broker.remove_listener(424242)
    with pytest.raises(brokk.UnknownListenerError):
        broker.remove_listener(object())  # never added
    with pytest.raises(brokk.UnknownDeliveryError):
        broker.ack(424242)


def test_timeout_error_is_transient_and_builtin(broker):
    broker.subscribe("t", lambda m: brokk.Verdict.LATER, manual_ack=True)
    broker.publish("t", 1)
    with pytest.raises(brokk.TimeoutError) as err:
        broker.join(timeout=0.05)
    assert isinstance(err.value, builtins.TimeoutError)
    assert isinstance(err.value, brokk.TransientError) and isinstance(err.value, brokk.BrokkError)
    assert err.value.status == brokk.Status.TIMEOUT and err.value.remaining == 1
    with pytest.raises(builtins.TimeoutError):
        broker.join(timeout=0)


def test_buffer_too_small_maps_to_its_exception(broker):
    # The binding always passes a big enough buffer; the status is reachable through the C call.
    ptr = broker._acquire()
    try:
        small = ctypes.create_string_buffer(4)
        status = _ffi.lib.brokk_broker_publish(ptr, b"t", 1, b"1", 1, None, small, len(small))
        assert status == brokk.Status.BUFFER_TOO_SMALL
        with pytest.raises(brokk.BufferTooSmallError):
            brokk._errors.check(status)
    finally:
        broker._unuse()
    assert broker.count("t") == 0  # nothing was published


def test_panic_status_maps_to_brokk_panic():
    error = brokk._errors.error_for(brokk.Status.PANIC, "brokk panicked: boom")
    assert isinstance(error, brokk.BrokkPanic) and not isinstance(error, brokk.CallerError)
    assert brokk.classify(brokk.Status.PANIC) == brokk.StatusClass.BUG


def test_use_after_close_raises_closed_error():
    b = brokk.Broker(workers=2)
    sub = b.subscribe("t", lambda m: None)
    report = b.close(T(5))
    assert report == brokk.CloseReport(0, 0, 0)
    assert b.closed
    calls = [
        lambda: b.publish("t", 1),
        lambda: b.publish_batch("t", [1]),
        lambda: b.subscribe("t", lambda m: None),
        lambda: b.unsubscribe(sub),
        lambda: b.fetch("t"),
        lambda: b.ack(1),
        lambda: b.nack(1),
        lambda: b.count(),
        lambda: b.purge(),
        lambda: b.add_listener(object()),
        lambda: b.remove_listener(1),
        lambda: b.stats(),
        lambda: b.stats_json(),
        lambda: b.stats_prometheus(),
        lambda: b.join(),
    ]
    for call in calls:
        with pytest.raises(brokk.ClosedError) as err:
            call()
        assert err.value.status == brokk.Status.CLOSED
        assert isinstance(err.value, RuntimeError) and isinstance(err.value, brokk.TerminalError)
    assert b.close() == report  # idempotent
    assert b.close(force=True) == report


def test_library_reports_closed_while_a_close_is_draining():
    """Between brokk_broker_close starting and the handle's release the library itself answers
    CLOSED: a handler publishing during a graceful close sees ClosedError."""
    import threading

    b = brokk.Broker(workers=2)
    started, release = threading.Event(), threading.Event()
    seen = []

    def handler(msg):
        started.set()
        release.wait(T(10))
        try:
            b.publish("t2", 1)
        except brokk.BrokkError as e:
            seen.append(e)

    b.subscribe("t", handler)
    b.publish("t", 1)
    assert started.wait(T(10))
    threading.Timer(0.1, release.set).start()
    b.close(T(10))
    assert len(seen) == 1 and isinstance(seen[0], brokk.ClosedError)
    assert "released" not in seen[0].message  # brokk's own CLOSED, not the binding's


@pytest.mark.parametrize(
    ("status", "cls", "base"),
    [
        (brokk.Status.INCOMPATIBLE_STORE, brokk.IncompatibleStoreError, brokk.CallerError),
        (brokk.Status.CANNOT_OPEN_STORE, brokk.CannotOpenStoreError, brokk.CallerError),
        (brokk.Status.UNAVAILABLE, brokk.UnavailableError, brokk.TransientError),
        (brokk.Status.STORAGE_FAILED, brokk.StorageFailedError, brokk.TransientError),
        (brokk.Status.OUTCOME_UNKNOWN, brokk.OutcomeUnknownError, brokk.TransientError),
        (brokk.Status.FORKED, brokk.ForkedError, brokk.TerminalError),
    ],
)
def test_store_statuses_have_their_exceptions(status, cls, base):
    assert int(status) in (13, 14, 202, 203, 204, 301)
    error = _errors.error_for(int(status), "detail")
    assert type(error) is cls and isinstance(error, base) and error.status is status
    assert brokk.classify(status) == {
        brokk.CallerError: brokk.StatusClass.CALLER,
        brokk.TransientError: brokk.StatusClass.TRANSIENT,
        brokk.TerminalError: brokk.StatusClass.TERMINAL,
    }[base]
    assert isinstance(error, ValueError) == (base is brokk.CallerError)
    assert isinstance(error, RuntimeError) == (base is brokk.TerminalError)
    assert str(error) == f"{status.name}: detail"


def test_outcome_unknown_is_transient_and_not_unavailable():
    """OUTCOME_UNKNOWN (the call may have taken effect) and UNAVAILABLE (nothing was done) are
    both worth retrying, but must be told apart: neither exception is the other."""
    assert int(brokk.Status.OUTCOME_UNKNOWN) == _ffi.BROKK_STATUS_OUTCOME_UNKNOWN == 204
    unknown = _errors.error_for(204, "connection reset after the request was sent")
    assert type(unknown) is brokk.OutcomeUnknownError and isinstance(unknown, brokk.TransientError)
    assert not isinstance(unknown, brokk.UnavailableError)
    assert not isinstance(_errors.error_for(202, ""), brokk.OutcomeUnknownError)
    assert "may" in brokk.Status.OUTCOME_UNKNOWN.description  # brokk_status_str()
    assert brokk.OutcomeUnknownError.__doc__ and "OutcomeUnknownError" in brokk.__all__
