"""brokk.AsyncBroker on every backend: waiting fetches cost no thread, and the event loop is
never blocked. Every test runs its coroutine on a loop in debug mode with a low slow-callback
threshold, and fails if asyncio reports a slow callback (a step that blocked the loop)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import pytest
from conftest import T, run_python

import brokk

pytestmark = pytest.mark.both_backends



def slow_callback() -> float:
    """asyncio's debug mode logs every callback (a task's step included) that runs longer than
    this: 50 ms, scaled for slow machines, and by how overcommitted the CPUs are now (a loop
    thread that waits for a CPU, or for the GIL behind brokk's threads, looks blocked)."""
    busy = os.getloadavg()[0] / (os.cpu_count() or 1)
    return T(0.05) * max(1.0, busy)


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "took" in text and "Executing" in text:
            self.reports.append(text)


def run(coro_fn, *args):
    """Runs `coro_fn(*args)` in a fresh loop in debug mode; fails on a slow callback.

    A slow callback is wall time, which a loaded machine inflates (a loop thread that waits for
    a CPU, or for the GIL, looks blocked): so a run that reports one is run once more, and the
    test fails only if the second run reports one too. Brokk blocking the loop (a wait, a
    commit, a round trip on the loop's thread) happens on every run."""
    reports: list[list[str]] = []
    for _ in range(2):
        seen = _SlowCallbacks()
        logger = logging.getLogger("asyncio")
        logger.addHandler(seen)
        try:

            async def main():
                loop = asyncio.get_running_loop()
                loop.slow_callback_duration = slow_callback()
                return await asyncio.wait_for(coro_fn(*args), T(60))

            result = asyncio.run(main(), debug=True)
        finally:
            logger.removeHandler(seen)
        if not seen.reports:
            return result
        reports.append(seen.reports)
    raise AssertionError(f"the event loop was blocked, twice: {reports}")


def os_threads() -> int:
    """Threads of this process, Python's or not (brokk's own are not Python threads)."""
    return len(os.listdir("/proc/self/task"))


async def eventually(what: str, cond) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + T(10)
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def waiting(broker: brokk.AsyncBroker, n: int = 1) -> None:
    """Until the tasks under test are parked on their readiness registrations."""
    from brokk import aio

    await eventually(f"{n} waiting fetches", lambda: len(aio._waiting) >= n)


def test_a_waiting_fetch_wakes_on_a_publish_from_another_thread(backend_url):
    async def body():
        async with await brokk.AsyncBroker.open(backend_url) as broker:
            task = asyncio.create_task(broker.fetch("jobs", group="g", timeout=T(30)))
            await waiting(broker)
            t = threading.Thread(target=broker.broker.publish, args=("jobs", {"n": 1}))
            t.start()
            message = await task
            t.join()
            assert message.payload == {"n": 1}
            await broker.ack(message.delivery_id)
            assert await broker.fetch("jobs", group="g", timeout=0) is None
            assert await broker.fetch("jobs", group="g", timeout=0.05) is None

    run(body)


def test_fifty_waiting_fetches_cost_no_thread_each(backend_url):
    async def body():
        async with await brokk.AsyncBroker.open(backend_url, executor_workers=2) as broker:
            await broker.publish("warm", 1)  # the executor's threads, started once
            before = os_threads()
            tasks = []
            for _ in range(5):  # in steps: debug mode records a traceback per task it makes
                for _ in range(10):
                    tasks.append(asyncio.create_task(broker.fetch("jobs", group="g", timeout=T(30))))
                await asyncio.sleep(0)
            await waiting(broker, 50)
            # Bounded by the executor (2), not by the 50 waits; a few more for slack.
            assert os_threads() <= before + 2 + 2, (before, os_threads())
            await broker.publish_batch("jobs", list(range(50)))
            got = await asyncio.gather(*tasks)
            assert sorted(m.payload for m in got) == list(range(50))
            assert await broker.ack_many(m.delivery_id for m in got) == 50

    run(body)


def test_a_cancelled_fetch_takes_nothing_and_loses_no_notification(backend_url):
    async def body():
        async with await brokk.AsyncBroker.open(backend_url) as broker:
            first = asyncio.create_task(broker.fetch("jobs", timeout=T(30)))
            await waiting(broker, 1)
            second = asyncio.create_task(broker.fetch("jobs", timeout=T(30)))
            await waiting(broker, 2)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await broker.publish("jobs", "one")
            message = await second
            assert message.payload == "one"
            await broker.ack(message.delivery_id)
            # Cancelled after its notification came, before it fetched: the next waiter gets it.
            third = asyncio.create_task(broker.fetch("jobs", timeout=T(30)))
            await waiting(broker, 1)
            fourth = asyncio.create_task(broker.fetch("jobs", timeout=T(30)))
            await waiting(broker, 2)
            broker.broker.publish("jobs", "two")  # on memory the notification is posted now
            third.cancel()
            try:
                got = await third
                await broker.ack(got.delivery_id)  # it had fetched before the cancel landed
                fourth.cancel()
            except asyncio.CancelledError:
                message = await fourth
                assert message.payload == "two"
                await broker.ack(message.delivery_id)
            assert await broker.count("jobs") == 0

    run(body)


def test_a_fetch_times_out_with_none_and_leaves_nothing_registered(backend_url):
    from brokk import aio

    async def body():
        async with await brokk.AsyncBroker.open(backend_url) as broker:
            assert await broker.fetch("jobs", timeout=0.05) is None
            assert await broker.fetch_many("jobs", 5, timeout=0) == []
            assert not aio._waiting

    run(body)


def test_close_ends_waiting_fetches_with_the_closed_error(backend_url):
    async def body():
        broker = await brokk.AsyncBroker.open(backend_url)
        tasks = [asyncio.create_task(broker.fetch("jobs", group="g")) for _ in range(3)]

        async def iterate():
            return [m async for m in broker.messages("other")]

        iterating = asyncio.create_task(iterate())
        await waiting(broker, 4)
        await broker.close(timeout=T(10))
        for task in tasks:
            with pytest.raises(brokk.ClosedError):
                await task
        assert await iterating == []  # the iteration ends
        assert await broker.close() is not None or broker.closed  # idempotent
        with pytest.raises(brokk.ClosedError):
            await broker.fetch("jobs", timeout=0)

    run(body)


def test_async_handlers_run_on_the_loop_and_settle_like_sync_ones(backend_url):
    async def body():
        async with await brokk.AsyncBroker.open(backend_url, workers=2) as broker:
            loop_thread = threading.get_ident()
            seen = []

            async def handler(message):
                assert threading.get_ident() == loop_thread  # on the loop, not a worker
                await asyncio.sleep(0.01)  # a handler that awaits
                seen.append(message.payload)
                if message.payload == "fail":
                    raise ValueError("no")
                if message.payload == "again" and message.attempt == 1:
                    return brokk.requeue()
                return None

            await broker.subscribe("jobs", handler, group="g", concurrency=2)
            for payload in ("a", "fail", "again", "b"):
                await broker.publish("jobs", payload)
            await broker.join(timeout=T(30))
            assert sorted(seen) == ["a", "again", "again", "b", "fail"]
            stats = await broker.stats()
            assert stats.failed == 1 and stats.requeued == 1
            assert isinstance(broker.broker.last_handler_error, ValueError)

    run(body)


def test_a_cancelled_join_returns_at_once(backend_url):
    async def body():
        async with await brokk.AsyncBroker.open(backend_url) as broker:
            held = None
            await broker.publish("jobs", 1)
            held = await broker.fetch("jobs", timeout=T(10))  # unacked: join waits for it
            joining = asyncio.create_task(broker.join())
            await asyncio.sleep(0.05)
            joining.cancel()
            with pytest.raises(asyncio.CancelledError):
                await joining
            await broker.ack(held.delivery_id)
            await broker.join(timeout=T(10))

    run(body)


def test_a_fetch_wakes_on_a_publish_from_another_process(backend_url):
    if backend_url == "memory://":
        pytest.skip("memory:// is not shared between processes")

    async def body():
        async with await brokk.AsyncBroker.open(backend_url) as broker:
            task = asyncio.create_task(broker.fetch("jobs", group="g", timeout=T(30)))
            await waiting(broker)
            code = (
                f"import brokk\nwith brokk.Broker({backend_url!r}) as b:\n"
                "    b.publish('jobs', 'from afar')\n"
            )
            done = await asyncio.get_running_loop().run_in_executor(None, run_python, code)
            assert done.returncode == 0, done.stderr
            message = await task
            assert message.payload == "from afar"
            await broker.ack(message.delivery_id)

    run(body)
