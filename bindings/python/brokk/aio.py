"""brokk.AsyncBroker: the broker for asyncio, with no thread per waiting fetch and an event
loop that brokk never blocks.

    async with brokk.AsyncBroker("sqlite:///tmp/jobs.db") as broker:
        await broker.publish("jobs", {"n": 1})
        async for message in broker.messages("jobs", group="workers"):
            ...
            await broker.ack(message.delivery_id)

How a fetch waits. It first fetches without waiting; if nothing is there it registers a
readiness callback with the library (brokk_broker_notify_ready) and awaits a future. The
library runs the callback once, on whichever thread made a delivery available (a publisher,
its poller for other processes' work on SQLite and Redis, its timer) or closed the broker; the
callback only hands the news to the loop (``loop.call_soon_threadsafe``), and the fetch tries
again. So a waiting fetch costs a future and a registration, not a thread, and a thousand of
them cost no more threads than one. A fetch whose task is cancelled, or whose timeout runs
out, forgets its registration (brokk_broker_forget_ready), which hands a notification it may
already have had on to another waiter: none is lost.

What runs where. On ``memory://`` a fetch, ack or nack is a short call in this process and runs
on the loop. Every call that touches a shared store (SQLite, Redis: a disk commit, a network
round trip, a lock held by another process) and every call that can wait (a publish held up by
backpressure, join, close) runs on a small executor of this broker's (``executor_workers``
threads, 4 by default), whatever the number of waiting fetches. Cancelling the awaiting task
cancels a join's wait (through a ``brokk.Cancel``); a publish, ack or close that already started
finishes on its thread (a publish is then published all the same). A fetch cancelled while its
store call runs gives back what that call took (nack with requeue) rather than lose it until
its lease ends.

Semantics are the library's (docs/semantics.md), as with ``brokk.Broker``, which this wraps
(``.broker``): no logic here but where each call runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from ctypes import byref, c_bool, c_uint64
from typing import Any

from . import _callbacks, _ffi
from ._broker import Backpressure, Broker, CloseReport, Stats, _bytes, _len, _topic_bytes
from ._cancel import Cancel
from ._errors import ClosedError, check, closed_error
from ._message import Message

lib = _ffi.lib

_READY = _ffi.BROKK_READINESS_READY
_CLOSED = _ffi.BROKK_READINESS_CLOSED
_PENDING = _ffi.BROKK_READINESS_PENDING

# The futures of registered readiness callbacks, by the key passed to C as user_data: C never
# holds a Python object. The callback pops its entry; a forget that finds it unfired pops it.
_waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
_keys = itertools.count(1)  # 0 would arrive as NULL
_waiting_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The child has only the forking thread: the lock may be held for ever, and the loops and
    # registrations are the parent's.
    global _waiting_lock
    _waiting_lock = threading.Lock()
    _waiting.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve(fut: asyncio.Future, readiness: int | None) -> None:
    """On the loop: the news reaches the waiting fetch (None: its timeout ran out)."""
    if not fut.done():
        fut.set_result(readiness)


def _ready_trampoline(user_data: int | None, readiness: int) -> None:
    # On the thread that made a delivery available, with no brokk lock held: only hand the news
    # to the loop. Never raises into C.
    try:
        with _callbacks._inside:  # keeps a brokk thread's Python thread state (_threadstate)
            with _waiting_lock:
                entry = _waiting.pop(user_data, None) if user_data else None
            if entry is None:
                return
            loop, fut = entry
            try:
                loop.call_soon_threadsafe(_resolve, fut, int(readiness))
            except RuntimeError:
                pass  # the loop is closed: nobody waits any more
    except BaseException:  # noqa: BLE001 - nothing may unwind into brokk
        pass


# Created once, never collected (a collected CFUNCTYPE would crash the next callback).
_READY_CB = _ffi.brokk_ready_cb(_ready_trampoline)


class _Armed:
    """One registered readiness callback: its id, and the future its callback resolves."""

    __slots__ = ("waiter", "key", "fut")

    def __init__(self, waiter: int, key: int, fut: asyncio.Future):
        self.waiter, self.key, self.fut = waiter, key, fut


class AsyncBroker:
    """A ``brokk.Broker`` for asyncio (see the module docstring). Takes what ``brokk.Broker``
    takes, and ``executor_workers``: the threads that run store calls and waits (4 by default;
    never one per waiting fetch). Make it inside the loop that uses it; ``async with`` closes it.
    Opening a SQLite or Redis store connects once, on the calling thread:
    ``await AsyncBroker.open(url, ...)`` does that on a thread instead."""

    #: As ``Broker.exit_timeout``: how long leaving ``async with`` waits for outstanding work.
    exit_timeout: float | None = 30.0

    def __init__(self, url: str | None = "memory://", *, executor_workers: int = 4, **options: Any):
        if not isinstance(executor_workers, int) or executor_workers < 1:
            raise ValueError(f"executor_workers must be a positive int, not {executor_workers!r}")
        self.broker = Broker(url, **options)
        self._init(executor_workers, options)

    def _init(self, executor_workers: int, options: dict) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=executor_workers, thread_name_prefix="brokk-aio"
        )
        # Where a store call runs: on the loop only where it is a short call in this process.
        self._store_on_loop = not self.broker._shared
        self._publish_on_loop = self._store_on_loop and int(
            options.get("backpressure", Backpressure.BLOCK)
        ) != int(Backpressure.BLOCK)

    @classmethod
    async def open(
        cls, url: str | None = "memory://", *, executor_workers: int = 4, **options: Any
    ) -> AsyncBroker:
        """An AsyncBroker whose store is opened (a connection, a file) on a thread, not the loop."""
        make = functools.partial(Broker, url, **options)
        broker = await asyncio.get_running_loop().run_in_executor(None, make)
        self = cls.__new__(cls)
        self.broker = broker
        try:
            self._init(executor_workers, options)
        except BaseException:
            broker.close(force=True)
            raise
        return self

    def __repr__(self) -> str:
        return f"<brokk.AsyncBroker {self.broker.url!r}{' closed' if self.closed else ''}>"

    @property
    def closed(self) -> bool:
        return self.broker.closed

    # ---- where calls run -----------------------------------------------------------------------

    async def _off_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` on the executor. A cancelled task stops waiting for it; the call
        finishes on its thread."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except RuntimeError:
            if self._executor._shutdown:  # type: ignore[attr-defined]
                raise closed_error() from None
            raise

    async def _store(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A short store call: on the loop for memory://, on the executor otherwise."""
        if self._store_on_loop:
            return fn(*args, **kwargs)
        return await self._off_loop(fn, *args, **kwargs)

    async def _cancellable(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A call that waits, with a ``brokk.Cancel`` (``cancel=``) that cancelling the task
        triggers: the C call returns at once."""
        token = Cancel()
        loop = asyncio.get_running_loop()
        try:
            job = self._executor.submit(functools.partial(fn, *args, cancel=token, **kwargs))
        except RuntimeError:
            token.close()
            raise closed_error() from None
        job.add_done_callback(lambda _: token.close())
        try:
            return await asyncio.wrap_future(job, loop=loop)
        except asyncio.CancelledError:
            token.cancel()
            raise

    # ---- publish -------------------------------------------------------------------------------

    async def publish(self, topic: str, *payload: Any, **kwargs: Any) -> str:
        """``Broker.publish`` (same arguments); returns the message id. On a shared store it
        waits for the commit, and under ``Backpressure.BLOCK`` it may wait for room: both on the
        executor."""
        if self._publish_on_loop:
            return self.broker.publish(topic, *payload, **kwargs)
        return await self._off_loop(self.broker.publish, topic, *payload, **kwargs)

    async def publish_batch(self, topic: str, messages: Any) -> list[str]:
        """``Broker.publish_batch``, all or nothing; returns the ids."""
        messages = list(messages)
        if self._publish_on_loop:
            return self.broker.publish_batch(topic, messages)
        return await self._off_loop(self.broker.publish_batch, topic, messages)

    # ---- fetch ---------------------------------------------------------------------------------

    async def fetch(
        self,
        topic: str,
        *,
        group: str | None = None,
        timeout: float | None = None,
        ack_deadline: float | None = None,
        max_attempts: int = 0,
        dead_letter_topic: str | None = None,
    ) -> Message | None:
        """Takes the next delivery of `group` (None: "default") on `topic`, waiting up to
        `timeout` seconds (None: without limit; 0: not at all) without a thread; None if none
        came. It awaits ``ack``/``nack`` as with ``Broker.fetch``. Raises ``ClosedError`` if the
        broker closes meanwhile. Cancelling the task takes nothing."""
        got = await self.fetch_many(
            topic,
            1,
            group=group,
            timeout=timeout,
            ack_deadline=ack_deadline,
            max_attempts=max_attempts,
            dead_letter_topic=dead_letter_topic,
        )
        return got[0] if got else None

    async def fetch_many(
        self,
        topic: str,
        max: int,
        *,
        group: str | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> list[Message]:
        """Up to `max` deliveries: waits (as ``fetch``) for the first, then takes what is queued
        at that moment. [] if none came within `timeout`."""
        number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        if timeout is not None and (not number or timeout < 0):
            raise ValueError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            arm = deadline is None or loop.time() < deadline
            got, armed = await self._attempt(loop, topic, max, group, options, arm)
            if got:
                return got
            if armed is None:
                if not arm:
                    return []
                await asyncio.sleep(0)  # READY at once: fetch again, letting others run first
                continue
            readiness = await self._await_ready(loop, topic, group, armed, deadline)
            if readiness == _CLOSED:
                raise closed_error()

    async def _attempt(
        self, loop: asyncio.AbstractEventLoop, topic: Any, n: int, group: Any, options: dict, arm: bool
    ) -> tuple[list[Message], _Armed | None]:
        """A fetch that does not wait; if it found nothing (and `arm`), a readiness callback
        registered for the group. Both in one step, on the loop or on the executor."""
        if self._store_on_loop:
            return self._fetch_or_arm(loop, topic, n, group, options, arm)
        try:
            job = self._executor.submit(self._fetch_or_arm, loop, topic, n, group, options, arm)
        except RuntimeError:
            raise closed_error() from None  # the executor stopped with the close
        try:
            return await asyncio.shield(asyncio.wrap_future(job, loop=loop))
        except asyncio.CancelledError:
            # The call goes on on its thread: give back whatever it takes or registers.
            job.add_done_callback(lambda j: self._later(self._undo, topic, group, j))
            raise

    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        """`fn(*args)` on the executor, if it still runs (a done-callback may run anywhere)."""
        try:
            self._executor.submit(fn, *args)
        except RuntimeError:
            pass  # shut down: the broker is closed, and its close handled the rest

    def _undo(self, topic: Any, group: Any, job: concurrent.futures.Future) -> None:
        """After a fetch whose task was cancelled mid-call (on the executor's thread)."""
        if job.cancelled() or job.exception() is not None:
            return
        got, armed = job.result()
        for message in got:
            try:
                self.broker.nack(message.delivery_id, requeue=True, reason="fetch cancelled")
            except Exception:  # noqa: BLE001 - closed meanwhile: the close handled it
                pass
        if armed is not None:
            self._forget(topic, group, armed)

    def _fetch_or_arm(
        self, loop: asyncio.AbstractEventLoop, topic: Any, n: int, group: Any, options: dict, arm: bool
    ) -> tuple[list[Message], _Armed | None]:
        got = self.broker.fetch_many(topic, n, group=group, timeout=0, **options)
        if got or not arm:
            return got, None
        # (A future may be made on any thread; only its result must be set on the loop.)
        fut = loop.create_future()
        key = next(_keys)
        with _waiting_lock:
            _waiting[key] = (loop, fut)
        waiter, now = c_uint64(), _ffi.brokk_readiness()
        topic_bytes, group_bytes = _topic_bytes(topic), _bytes("group", group)
        try:
            with self.broker._use() as ptr:
                check(
                    lib.brokk_broker_notify_ready(
                        ptr,
                        topic_bytes,
                        _len(topic_bytes),
                        group_bytes,
                        _len(group_bytes),
                        _READY_CB,
                        key,
                        byref(waiter),
                        byref(now),
                    )
                )
        except BaseException:
            with _waiting_lock:
                _waiting.pop(key, None)
            raise
        if now.value != _PENDING:
            with _waiting_lock:
                _waiting.pop(key, None)  # the callback never runs
            if now.value == _CLOSED:
                raise closed_error()
            return [], None  # READY: fetch again
        return [], _Armed(waiter.value, key, fut)

    async def _await_ready(
        self, loop: asyncio.AbstractEventLoop, topic: Any, group: Any, armed: _Armed, deadline: float | None
    ) -> int | None:
        """Awaits the registration's news: READY, CLOSED, or None when `deadline` passed."""
        timer = None if deadline is None else loop.call_at(deadline, _resolve, armed.fut, None)
        try:
            readiness = await armed.fut
        except BaseException:
            self._forget(topic, group, armed)  # cancelled: hand on what it may have had
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if readiness is None:
            self._forget(topic, group, armed)  # the timeout: the same
        return readiness

    def _forget(self, topic: Any, group: Any, armed: _Armed) -> None:
        """brokk_broker_forget_ready: an in-process call that returns at once (or once a
        callback running elsewhere, which only posts to a loop, has returned)."""
        fired = c_bool(True)
        topic_bytes, group_bytes = _topic_bytes(topic), _bytes("group", group)
        try:
            with self.broker._use() as ptr:
                check(
                    lib.brokk_broker_forget_ready(
                        ptr,
                        topic_bytes,
                        _len(topic_bytes),
                        group_bytes,
                        _len(group_bytes),
                        armed.waiter,
                        byref(fired),
                    )
                )
        except ClosedError:
            pass  # released: the close ran every callback
        if not fired.value:
            with _waiting_lock:
                _waiting.pop(armed.key, None)

    async def messages(
        self, topic: str, *, group: str | None = None, **options: Any
    ) -> AsyncIterator[Message]:
        """The deliveries of `group` on `topic`, one by one as they come, until the broker
        closes (the iteration then ends). Each awaits ``ack``/``nack`` as with ``fetch``."""
        while True:
            try:
                got = await self.fetch_many(topic, 1, group=group, timeout=None, **options)
            except ClosedError:
                return
            for message in got:
                yield message

    # ---- settle --------------------------------------------------------------------------------

    async def ack(self, delivery_id: int) -> None:
        """``Broker.ack``."""
        await self._store(self.broker.ack, delivery_id)

    async def ack_many(self, delivery_ids: Any) -> int:
        """``Broker.ack_many``."""
        return await self._store(self.broker.ack_many, list(delivery_ids))

    async def nack(
        self, delivery_id: int, requeue: bool = False, delay: float = 0.0, reason: str | None = None
    ) -> None:
        """``Broker.nack``."""
        await self._store(self.broker.nack, delivery_id, requeue, delay, reason)

    # ---- subscribe -----------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: Callable[[Message], Awaitable[Any] | Any], **options: Any
    ) -> int:
        """``Broker.subscribe`` with an ``async def`` handler, run on this loop: a brokk worker
        hands each delivery to the loop and waits for the handler's result, which settles it
        as ``Broker.subscribe`` says (None: ACK; a ``Verdict``; raising: NACK; ``Requeue``). At
        most ``concurrency`` run at once per subscription, and no more than the broker has
        workers (``workers=``). A plain function (one that returns no awaitable) runs on the
        worker, as with ``Broker.subscribe``. Close the broker before the loop ends: a worker
        waits for the handler it handed over, and a handler must not await this broker's
        ``join`` or graceful ``close`` (they would wait for it)."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        loop = asyncio.get_running_loop()

        def on_worker(message: Message) -> Any:
            result = handler(message)
            if not asyncio.iscoroutine(result):
                if not hasattr(result, "__await__"):
                    return result

                async def awaiting() -> Any:
                    return await result

                result = awaiting()
            try:
                handed = asyncio.run_coroutine_threadsafe(result, loop)
            except BaseException:
                result.close()  # the loop is closed: never awaited, and not warned about
                raise  # a NACK, as a handler's exception is
            return handed.result()

        on_worker.__qualname__ = getattr(handler, "__qualname__", repr(handler))
        return await self._store(self.broker.subscribe, topic, on_worker, **options)

    async def unsubscribe(self, subscription_id: int) -> None:
        await self._store(self.broker.unsubscribe, subscription_id)

    # ---- the rest ------------------------------------------------------------------------------

    async def count(self, topics: Any = None) -> int:
        return await self._store(self.broker.count, topics)

    async def purge(self, topics: Any = None) -> int:
        return await self._store(self.broker.purge, topics)

    async def stats(self) -> Stats:
        return await self._store(self.broker.stats)

    async def join(self, timeout: float | None = None) -> None:
        """``Broker.join`` on the executor; cancelling the task cancels the wait."""
        await self._cancellable(self.broker.join, timeout)

    async def close(self, timeout: float | None = None, force: bool = False) -> CloseReport | None:
        """``Broker.close`` on a thread: fetches waiting on the broker raise
        ``ClosedError``, and async handlers still running finish on the loop meanwhile. The
        executor's threads end once it returns. A cancelled task stops waiting; the close goes
        on. Idempotent."""
        if self._executor._shutdown:  # type: ignore[attr-defined]
            return self.broker._close_report
        # On the loop's default executor: this broker's may be busy with joins that only the
        # close can end.
        close = functools.partial(self.broker.close, timeout, force)
        try:
            return await asyncio.get_running_loop().run_in_executor(None, close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncBroker:
        return self

    async def __aexit__(self, exc_type: Any, *exc: object) -> None:
        await self.close(timeout=self.exit_timeout, force=exc_type is not None)

