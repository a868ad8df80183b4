"""brokk.Cancel (brokk_cancel): a wait given one ends with CancelledError, having taken nothing,
when another thread cancels it; a cancelled token ends later waits at once until reset. (Ctrl-C
during a wait: tests/test_lifecycle.py.)"""

from __future__ import annotations

import threading
import time

import pytest
from conftest import T

import brokk

WAITS = {
    "fetch": lambda b, c: b.fetch("q", timeout=None, cancel=c),
    "fetch_many": lambda b, c: b.fetch_many("q", 4, timeout=T(60), cancel=c),
    "take_raw": lambda b, c: b.take_raw("q", timeout=None, cancel=c),
    "take": lambda b, c: b.take("q", timeout=T(60), cancel=c),
}


def _outcome(fn) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_cancelled_error_is_transient_with_its_status():
    error = brokk._errors.error_for(brokk.Status.CANCELLED, "detail")
    assert type(error) is brokk.CancelledError and isinstance(error, brokk.TransientError)
    assert error.status == brokk.Status.CANCELLED == 205
    assert brokk.classify(brokk.Status.CANCELLED) == brokk.StatusClass.TRANSIENT


@pytest.mark.parametrize("on_main_thread", [False, True], ids=["other-thread", "main-thread"])
@pytest.mark.parametrize("call", sorted(WAITS))
def test_cancel_from_another_thread_ends_a_wait_having_taken_nothing(broker, call, on_main_thread):
    broker.fetch("q", timeout=0)  # the group, so that what is published later waits in it
    with brokk.Cancel() as cancel:
        safety = threading.Timer(T(60), lambda: broker.publish("q", "safety"))
        safety.start()
        try:
            started = time.monotonic()
            if on_main_thread:  # its wait has a checked token of its own, which cancel() triggers
                threading.Timer(0.2, cancel.cancel).start()
                with pytest.raises(brokk.CancelledError):
                    WAITS[call](broker, cancel)
            else:
                thread, outcome = _outcome(lambda: WAITS[call](broker, cancel))
                time.sleep(0.2)
                cancel.cancel()
                thread.join(T(10))
                assert not thread.is_alive() and isinstance(outcome[0], brokk.CancelledError), outcome
            assert time.monotonic() - started < T(10)
        finally:
            safety.cancel()
        assert cancel.cancelled
        assert broker.count("q") == 0
        broker.publish("q", "after")  # nothing was taken
        cancel.reset()
        assert not cancel.cancelled
        assert WAITS[call](broker, cancel) not in (None, [])


def test_one_cancel_ends_every_wait_on_it_and_later_ones_until_reset(broker):
    broker.publish("held", 1)
    held = broker.fetch("held", timeout=T(10))
    cancel = brokk.Cancel()
    waits = [
        _outcome(lambda: broker.take_raw("q", timeout=None, cancel=cancel)),
        _outcome(lambda: broker.fetch("q", group="other", timeout=None, cancel=cancel)),
        _outcome(lambda: broker.join(cancel=cancel)),
    ]
    time.sleep(0.2)
    cancel.cancel()
    cancel.cancel()  # idempotent
    for thread, outcome in waits:
        thread.join(T(10))
        assert not thread.is_alive() and isinstance(outcome[0], brokk.CancelledError), outcome
    # Cancelled: a later call raises at once, timeout 0 included, and on the main thread too.
    for call in (
        lambda: broker.take_raw("q", cancel=cancel),
        lambda: broker.fetch("q", timeout=T(60), cancel=cancel),
        lambda: broker.join(T(60), cancel=cancel),
    ):
        started = time.monotonic()
        with pytest.raises(brokk.CancelledError):
            call()
        assert time.monotonic() - started < T(10)
    cancel.reset()
    with pytest.raises(brokk.TimeoutError) as err:
        broker.join(0.05, cancel=cancel)
    assert err.value.remaining == 1
    broker.ack(held.delivery_id)
    broker.join(T(10), cancel=cancel)
    assert repr(cancel) == "<brokk.Cancel ready>"
    cancel.close()
    cancel.close()  # idempotent
    assert repr(cancel) == "<brokk.Cancel closed>"
    with pytest.raises(brokk.ClosedError):
        cancel.cancel()
    with pytest.raises(brokk.ClosedError):
        broker.take_raw("q", timeout=0.01, cancel=cancel)


def test_timeouts_without_cancel_still_return_empty(broker):
    for timeout in (0, 0.0, 0.05):
        assert broker.fetch("nothing", timeout=timeout) is None
        assert broker.fetch_many("nothing", 4, timeout=timeout) == []
        assert broker.take_raw("nothing", timeout=timeout) is None
        assert broker.take("nothing", timeout=timeout, default="none") == "none"
    with brokk.Cancel() as cancel:
        assert broker.fetch("nothing", timeout=0.05, cancel=cancel) is None
        assert broker.fetch_many("nothing", 4, timeout=0, cancel=cancel) == []
        assert broker.take_raw("nothing", timeout=0.05, cancel=cancel) is None
    with pytest.raises(TypeError):
        broker.take_raw("nothing", timeout=0.05, cancel=object())
