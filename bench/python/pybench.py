"""The Python side of the benchmarks: brokk's Python binding and its Python peers.

    pybench.py brokk-py 1to1       1 publisher -> 1 auto-ack subscriber (dict payload)
    pybench.py brokk-py latency    publish -> handler latency at a fixed rate
    pybench.py brokk-py pull       fetch_many + ack_many on one thread (--batch, default 128;
                                   --batch 1: fetch + ack), messages published beforehand
    pybench.py tadween 1to1        Tadween's InMemoryBroker, the same as brokk-py 1to1
    pybench.py tadween latency     ... and the same latency run
    pybench.py pynenc pull         pynenc's MemBroker: retrieve_invocation, ids routed beforehand
    pybench.py pynenc sqlite-route --threads T
                                   pynenc's SQLiteBroker: route_invocation from T threads (one
                                   INSERT and commit per call), into a fresh file
    pybench.py pynenc sqlite-retrieve
                                   pynenc's SQLiteBroker: retrieve_invocation, ids routed
                                   beforehand (route_invocations, one transaction)
    pybench.py pynenc-broker route|retrieve --broker mem|sqlite|brokk-memory|brokk-sqlite
                                   pynenc's broker interface, one call at a time on one thread:
                                   route_invocation into an empty queue, or retrieve_invocation
                                   of ids routed beforehand; pynenc's MemBroker and SQLiteBroker
                                   against brokk's pynenc plugin (brokk.pynenc_plugin.BrokkBroker)
                                   on memory:// and on a SQLite file
    pybench.py pynenc-broker route|retrieve --broker redis|brokk-redis --redis-url URL
                                   the same on a Redis server: pynenc-redis's RedisBroker (PyPI
                                   pynenc-redis 0.3.0, which needs pynenc 0.3.1: run it with the
                                   second venv, build/bench/venv-redis) against brokk's plugin on
                                   redis:// (pynenc 0.4.0, the main bench venv)

Every implementation gets the same payload, {"i": n, "s": "<32 chars>"}, as a Python dict (the
natural argument of both brokers), with the same warm-up and bounds (--messages, --seconds,
whichever comes first). Each result is one JSON line on stdout, as the C programs print.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

S32 = "abcdefghijklmnopqrstuvwxyz012345"
TOPIC = "bench"


def payload(n: int) -> dict:
    return {"i": n, "s": S32}


def percentiles(ns: list[int]) -> dict:
    ns = sorted(ns)
    n = len(ns)
    if n == 0:
        return {}

    def pct(q: float) -> float:
        return ns[int((n - 1) * q)] / 1000.0

    return {
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "max": ns[-1] / 1000.0,
        "mean": sum(ns) / n / 1000.0,
        "samples": n,
    }


def emit(record: dict) -> None:
    record.setdefault("python", platform.python_version())
    print(json.dumps(record), flush=True)
    line = f"  {record['scenario']:<10} {record['impl']:<16} {record['rate']:12.0f} {record['unit']}/s"
    if "latency_us" in record:
        lat = record["latency_us"]
        line += f"  p50 {lat['p50']:.2f} us  p99 {lat['p99']:.2f} us  p99.9 {lat['p999']:.2f} us"
    print(line, file=sys.stderr)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "source checkout"


def pace_until(t_ns: int) -> None:
    """Sleeps until perf_counter_ns reaches t_ns. No busy-wait: a spinning publisher would hold
    the GIL and keep the handler's thread from running (the C programs do spin)."""
    while True:
        left = t_ns - time.perf_counter_ns()
        if left <= 0:
            return
        time.sleep(left / 1e9)


# ---- the two push brokers behind one small interface ------------------------------------------


class BrokkPush:
    impl = "brokk-py"

    def __init__(self) -> None:
        import brokk

        self.brokk = brokk
        self.broker = brokk.Broker()
        self.version = brokk.version()

    def subscribe(self, handler) -> None:
        # brokk hands the handler a Message; returning None acks it.
        self.broker.subscribe(TOPIC, lambda m: handler(m.payload))

    def publish(self, n: int) -> None:
        self.broker.publish(TOPIC, payload(n))

    def join(self) -> None:
        self.broker.join(timeout=300)

    def close(self) -> None:
        self.broker.close(timeout=10)


class TadweenPush:
    impl = "tadween"

    def __init__(self) -> None:
        from tadween_core.broker import InMemoryBroker, Message

        self.Message = Message
        self.broker = InMemoryBroker()  # its default pool: max_workers=4
        self.version = version_of("tadween-core")

    def subscribe(self, handler) -> None:
        self.broker.subscribe(TOPIC, lambda m: handler(m.payload))  # auto_ack=True

    def publish(self, n: int) -> None:
        self.broker.publish(self.Message(topic=TOPIC, payload=payload(n)))

    def join(self) -> None:
        if not self.broker.join(timeout=300):
            raise SystemExit("tadween: join timed out")

    def close(self) -> None:
        self.broker.close(timeout=10)


PUSH = {"brokk-py": BrokkPush, "tadween": TadweenPush}


def run_1to1(impl: str, o: argparse.Namespace) -> None:
    b = PUSH[impl]()
    count = [0]
    lock = threading.Lock()  # Tadween runs one subscription on several pool threads at once

    def handler(p: dict) -> None:
        with lock:
            count[0] += p["i"] >= 0

    b.subscribe(handler)
    for n in range(o.warmup):
        b.publish(n)
    b.join()
    count[0] = 0
    t0 = time.perf_counter()
    deadline = t0 + o.seconds
    sent = 0
    while sent < o.messages:
        b.publish(o.warmup + sent)
        sent += 1
        if sent & 255 == 0 and time.perf_counter() >= deadline:
            break
    t_pub = time.perf_counter()
    b.join()
    t1 = time.perf_counter()
    b.close()
    if count[0] != sent:
        raise SystemExit(f"{impl} 1to1: {count[0]} deliveries for {sent} messages")
    emit(
        {
            "scenario": "1to1",
            "impl": impl,
            "unit": "messages",
            "messages": sent,
            "deliveries": count[0],
            "seconds": t1 - t0,
            "rate": count[0] / (t1 - t0),
            "publish_rate": sent / (t_pub - t0),
            "version": b.version,
        }
    )


def run_latency(impl: str, o: argparse.Namespace) -> None:
    measured = min(int(o.rate * o.seconds), o.messages)
    warm = min(int(o.rate * 0.5), o.warmup)
    total = warm + measured
    send_ns = [0] * total
    recv_ns = [0] * total
    b = PUSH[impl]()

    def handler(p: dict) -> None:
        recv_ns[p["i"]] = time.perf_counter_ns()

    b.subscribe(handler)
    period = int(1e9 / o.rate)
    t0 = time.perf_counter_ns() + 1_000_000
    late = 0
    for i in range(total):
        due = t0 + i * period
        pace_until(due)
        now = time.perf_counter_ns()
        if now > due + period:
            late += 1
        send_ns[i] = now
        b.publish(i)
    t_end = time.perf_counter_ns()
    b.join()
    b.close()
    lat = [recv_ns[i] - send_ns[i] for i in range(warm, total) if recv_ns[i] >= send_ns[i]]
    seconds = (t_end - (t0 + warm * period)) / 1e9
    emit(
        {
            "scenario": "latency",
            "impl": impl,
            "unit": "messages",
            "messages": measured,
            "deliveries": len(lat),
            "seconds": seconds,
            "rate": measured / seconds,
            "latency_us": percentiles(lat),
            "target_rate": o.rate,
            "achieved_rate": measured / seconds,
            "sends_late": late,
            "version": b.version,
        }
    )


# ---- pull ----------------------------------------------------------------------------------------


def run_pull_brokk(o: argparse.Namespace) -> None:
    """What a consumer working through a backlog writes: fetch_many (one C call per batch; each
    message a brokk.Message that reads its fields on first use) and ack_many (one C call per
    batch). --batch sets the batch size (default 128); --batch 1 measures fetch + ack one message
    at a time instead."""
    import brokk

    total = o.warmup + o.messages
    batch = o.batch or 128
    broker = brokk.Broker(queue_capacity=total + 1)
    assert broker.fetch(TOPIC, timeout=0) is None  # names the "default" group
    chunk = 1000
    for first in range(0, total, chunk):
        broker.publish_batch(TOPIC, [payload(n) for n in range(first, min(first + chunk, total))])

    def take_one_by_one(limit: int, deadline: float) -> int:
        n = 0
        while n < limit:
            m = broker.fetch(TOPIC, timeout=0)
            if m is None:
                raise SystemExit(f"brokk-py pull: queue empty after {n} fetches")
            broker.ack(m.delivery_id)
            n += 1
            if n & 255 == 0 and time.perf_counter() >= deadline:
                break
        return n

    def take_batches(limit: int, deadline: float) -> int:
        n = 0
        while n < limit:
            messages = broker.fetch_many(TOPIC, min(batch, limit - n), timeout=0)
            if not messages:
                raise SystemExit(f"brokk-py pull: queue empty after {n} fetches")
            broker.ack_many([m.delivery_id for m in messages])
            n += len(messages)
            if time.perf_counter() >= deadline:
                break
        return n

    take = take_one_by_one if batch == 1 else take_batches
    take(o.warmup, float("inf"))
    t0 = time.perf_counter()
    got = take(o.messages, t0 + o.seconds)
    t1 = time.perf_counter()
    broker.close(force=True)
    emit(
        {
            "scenario": "pull",
            "impl": "brokk-py",
            "unit": "messages",
            "messages": got,
            "deliveries": got,
            "seconds": t1 - t0,
            "rate": got / (t1 - t0),
            "prepublished": total,
            "batch": batch,
            "note": f"fetch_many({batch}) + ack_many" if batch > 1 else "fetch + ack, one at a time",
            "version": brokk.version(),
        }
    )


def run_pull_pynenc(o: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)
    from pynenc import Pynenc
    from pynenc.broker.mem_broker import MemBroker
    from pynenc.identifiers.invocation_id import generate_invocation_id

    app = Pynenc(config_values={"app_id": "brokk-bench"})
    broker = MemBroker(app)
    total = o.warmup + o.messages
    broker.route_invocations([generate_invocation_id() for _ in range(total)], "default", 0)

    def take(limit: int, deadline: float) -> int:
        n = 0
        while n < limit:
            if broker.retrieve_invocation("default") is None:
                raise SystemExit(f"pynenc pull: queue empty after {n} retrieves")
            n += 1
            if n & 255 == 0 and time.perf_counter() >= deadline:
                break
        return n

    take(o.warmup, float("inf"))
    t0 = time.perf_counter()
    got = take(o.messages, t0 + o.seconds)
    t1 = time.perf_counter()
    emit(
        {
            "scenario": "pull",
            "impl": "pynenc",
            "unit": "messages",
            "messages": got,
            "deliveries": got,
            "seconds": t1 - t0,
            "rate": got / (t1 - t0),
            "prepublished": total,
            "note": "retrieve_invocation pops an invocation id; there is no ack",
            "version": version_of("pynenc"),
        }
    )


# ---- pynenc's SQLiteBroker ---------------------------------------------------------------------------


def _pynenc_sqlite(tmpdir: str):
    """A pynenc SQLiteBroker on a fresh file in `tmpdir`. pynenc's own settings: every call opens
    a connection (WAL, synchronous NORMAL, busy timeout 30 s), runs its statements, commits."""
    import logging

    logging.disable(logging.WARNING)
    from pynenc import Pynenc
    from pynenc.broker.sqlite_broker import SQLiteBroker

    app = Pynenc(config_values={"app_id": "brokk-bench", "sqlite_db_path": os.path.join(tmpdir, "pynenc.db")})
    broker = SQLiteBroker(app)
    broker.conf  # noqa: B018  (its config is a cached_property: computed once, before any thread)
    return broker


def _tmpdir() -> str:
    base = os.environ.get("BENCH_TMPDIR") or None  # None: $TMPDIR or /tmp
    return tempfile.mkdtemp(prefix="brokk-bench-pynenc-", dir=base)


def run_sqlite_route_pynenc(o: argparse.Namespace) -> None:
    from pynenc.identifiers.invocation_id import generate_invocation_id

    threads = max(1, o.threads)
    tmp = _tmpdir()
    try:
        broker = _pynenc_sqlite(tmp)
        for _ in range(o.warmup):
            broker.route_invocation(generate_invocation_id(), "default", 0.0)
        sent = [0] * threads
        share = [o.messages // threads + (i < o.messages % threads) for i in range(threads)]
        t0 = time.perf_counter()
        deadline = t0 + o.seconds

        def publisher(i: int) -> None:
            n = 0
            while n < share[i]:
                broker.route_invocation(generate_invocation_id(), "default", 0.0)
                n += 1
                if n & 15 == 0 and time.perf_counter() >= deadline:
                    break
            sent[i] = n

        workers = [threading.Thread(target=publisher, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        t1 = time.perf_counter()
        queued = broker.count_invocations(["default"])
        total = sum(sent)
        if queued != o.warmup + total:
            raise SystemExit(f"pynenc sqlite-route: {queued} queued for {o.warmup + total} routed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(
        {
            "scenario": f"sqlite-publish-threads{threads}",
            "impl": "pynenc-sqlite",
            "unit": "messages",
            "messages": total,
            "deliveries": 0,
            "seconds": t1 - t0,
            "rate": total / (t1 - t0),
            "threads": threads,
            "queued": queued,
            "store": "sqlite",
            "synchronous": "normal",
            "note": f"route_invocation from {threads} threads: a new connection, one INSERT and a commit per call",
            "version": version_of("pynenc"),
        }
    )


def run_sqlite_retrieve_pynenc(o: argparse.Namespace) -> None:
    from pynenc.identifiers.invocation_id import generate_invocation_id

    total = o.warmup + o.messages
    tmp = _tmpdir()
    try:
        broker = _pynenc_sqlite(tmp)
        chunk = 10_000
        for first in range(0, total, chunk):
            broker.route_invocations([generate_invocation_id() for _ in range(min(chunk, total - first))], "default", 0.0)

        def take(limit: int, deadline: float) -> int:
            n = 0
            while n < limit:
                if broker.retrieve_invocation("default") is None:
                    raise SystemExit(f"pynenc sqlite-retrieve: queue empty after {n} retrieves")
                n += 1
                if n & 15 == 0 and time.perf_counter() >= deadline:
                    break
            return n

        take(o.warmup, float("inf"))
        t0 = time.perf_counter()
        got = take(o.messages, t0 + o.seconds)
        t1 = time.perf_counter()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(
        {
            "scenario": "sqlite-pull",
            "impl": "pynenc-sqlite",
            "unit": "messages",
            "messages": got,
            "deliveries": got,
            "seconds": t1 - t0,
            "rate": got / (t1 - t0),
            "prepublished": total,
            "store": "sqlite",
            "synchronous": "normal",
            "note": "retrieve_invocation: a new connection, BEGIN IMMEDIATE, SELECT ... LIMIT 1, DELETE, "
            "COMMIT; it returns the id only, there is no ack",
            "version": version_of("pynenc"),
        }
    )


# ---- pynenc's broker interface: pynenc's brokers against the brokk plugin -------------------------

# --broker -> (impl name in the results, store)
PYNENC_BROKERS = {
    "mem": ("pynenc-mem", "memory"),
    "sqlite": ("pynenc-sqlite", "sqlite"),
    "brokk-memory": ("brokk-pynenc", "memory"),
    "brokk-sqlite": ("brokk-pynenc", "sqlite"),
    "redis": ("pynenc-redis", "redis"),
    "brokk-redis": ("brokk-pynenc", "redis"),
}


class _Pynenc03Redis:
    """pynenc-redis 0.3.0's RedisBroker (pynenc 0.3.1) behind the pynenc 0.4 calls that
    run_pynenc_broker makes: 0.3.1 has one queue per app and no priorities, so the queue name and
    priority are dropped. Each call is RedisBroker's own: route RPUSH, route_invocations RPUSH in
    one pipeline, retrieve BLPOP (timeout queue_timeout_sec, 0.1 s), count LLEN."""

    def __init__(self, url: str) -> None:
        import pynenc_redis  # noqa: F401  (registers RedisBroker, as pynenc's plugin loading does)
        from pynenc import Pynenc

        # The server's address without brokk's options (?prefix=...); a fresh app_id keys the queue.
        server = url.split("?", 1)[0]
        app = Pynenc(config_values={"app_id": f"brokk-bench-{os.getpid()}-{time.time_ns() % 10**9}",
                                    "broker_cls": "RedisBroker", "redis_url": server})
        self.broker = app.broker
        assert type(self.broker).__name__ == "RedisBroker", type(self.broker)
        self.broker.purge()

    def route_invocation(self, invocation_id, queue=None, priority=None) -> None:
        self.broker.route_invocation(invocation_id)

    def route_invocations(self, invocation_ids, queue=None, priority=None) -> None:
        self.broker.route_invocations(invocation_ids)

    def retrieve_invocation(self, queue=None):
        return self.broker.retrieve_invocation()

    def count_invocations(self, queues=None) -> int:
        return self.broker.count_invocations()

    def close(self) -> None:
        self.broker.purge()


def _pynenc_broker(kind: str, tmpdir: str, redis_url: str = ""):
    """A broker as a pynenc app gets it, each on a fresh store: MemBroker, SQLiteBroker (as in
    _pynenc_sqlite), or BrokkBroker chosen with broker_cls (memory://, or a SQLite file with
    brokk's defaults: WAL, synchronous=normal, like pynenc's)."""
    import logging

    logging.disable(logging.WARNING)
    if kind == "sqlite":
        return _pynenc_sqlite(tmpdir)
    if kind == "redis":
        return _Pynenc03Redis(redis_url)
    from pynenc import Pynenc

    if kind == "mem":
        from pynenc.broker.mem_broker import MemBroker

        return MemBroker(Pynenc(config_values={"app_id": "brokk-bench"}))
    import brokk.pynenc_plugin  # noqa: F401  (what the pynenc.plugins entry point imports)

    if kind == "brokk-redis":
        url = redis_url
    else:
        url = "memory://" if kind == "brokk-memory" else f"sqlite://{os.path.join(tmpdir, 'brokk.db')}"
    broker = Pynenc(config_values={"app_id": "brokk-bench", "broker_cls": "BrokkBroker", "brokk_url": url}).broker
    assert type(broker).__name__ == "BrokkBroker"
    return broker


def run_pynenc_broker(o: argparse.Namespace) -> None:
    from pynenc.identifiers.invocation_id import generate_invocation_id

    impl, store = PYNENC_BROKERS[o.broker]
    route = o.scenario == "route"
    tmp = _tmpdir()
    try:
        if store == "redis" and not o.redis_url:
            raise SystemExit("--broker redis|brokk-redis needs --redis-url")
        broker = _pynenc_broker(o.broker, tmp, o.redis_url)
        total = o.warmup + o.messages
        ids = [generate_invocation_id() for _ in range(total)]
        if not route:
            for first in range(0, total, 10_000):
                broker.route_invocations(ids[first : first + 10_000], "default", 0.0)

        def run(start: int, limit: int, deadline: float) -> int:
            n = 0
            if route:
                while n < limit:
                    broker.route_invocation(ids[start + n], "default", 0.0)
                    n += 1
                    if n & 63 == 0 and time.perf_counter() >= deadline:
                        break
            else:
                while n < limit:
                    if broker.retrieve_invocation("default") is None:
                        raise SystemExit(f"{impl} retrieve: queue empty after {start + n} retrieves")
                    n += 1
                    if n & 63 == 0 and time.perf_counter() >= deadline:
                        break
            return n

        warm = run(0, o.warmup, float("inf"))
        t0 = time.perf_counter()
        got = run(warm, o.messages, t0 + o.seconds)
        t1 = time.perf_counter()
        # Checked, so that a broker that loses or duplicates work cannot post a figure.
        queued = broker.count_invocations(["default"])
        expected = warm + got if route else total - warm - got
        if queued != expected:
            raise SystemExit(f"{impl} {o.scenario}: {queued} queued, expected {expected}")
        if hasattr(broker, "close"):
            broker.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    what = "route_invocation" if route else "retrieve_invocation"
    emit(
        {
            "scenario": f"pynenc-{'' if store == 'memory' else store + '-'}{o.scenario}",
            "impl": impl,
            "unit": "messages",
            "messages": got,
            "deliveries": 0 if route else got,
            "seconds": t1 - t0,
            "rate": got / (t1 - t0),
            "store": store,
            **({"synchronous": "normal"} if store == "sqlite" else {}),
            **({} if route else {"prepublished": total}),
            "note": f"{what}, one call at a time on one thread"
            + (" (one take: the next delivery, acked as it is taken, in one call)" if impl == "brokk-pynenc" and not route else "")
            + (" (RedisBroker: RPUSH per route, BLPOP per retrieve; pynenc 0.3.1)" if impl == "pynenc-redis" else ""),
            "version": version_of("pynenc"),
            **({"pynenc_redis": version_of("pynenc-redis")} if impl == "pynenc-redis" else {}),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("impl", choices=["brokk-py", "tadween", "pynenc", "pynenc-broker"])
    ap.add_argument("scenario", choices=["1to1", "latency", "pull", "sqlite-route", "sqlite-retrieve", "route", "retrieve"])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=2_000.0)
    ap.add_argument(
        "--batch",
        type=int,
        default=0,
        help="brokk-py pull: messages per fetch_many (default 128; 1: fetch + ack)",
    )
    ap.add_argument("--threads", type=int, default=4, help="pynenc sqlite-route: publisher threads")
    ap.add_argument("--broker", choices=sorted(PYNENC_BROKERS), default="mem", help="pynenc-broker: which broker")
    ap.add_argument("--redis-url", default="", help="pynenc-broker --broker redis|brokk-redis: the server (brokk's URL)")
    o = ap.parse_args()
    o.messages = max(1, o.messages)
    if o.impl == "pynenc-broker" or o.scenario in ("route", "retrieve"):
        if o.impl != "pynenc-broker" or o.scenario not in ("route", "retrieve"):
            ap.error("pynenc-broker takes route or retrieve, and only it does")
        run_pynenc_broker(o)
        return
    if o.scenario.startswith("sqlite-"):
        if o.impl != "pynenc":
            ap.error(f"{o.scenario}: pynenc only")
        (run_sqlite_route_pynenc if o.scenario == "sqlite-route" else run_sqlite_retrieve_pynenc)(o)
    elif o.scenario == "pull":
        if o.impl == "brokk-py":
            run_pull_brokk(o)
        elif o.impl == "pynenc":
            run_pull_pynenc(o)
        else:
            ap.error("pull: brokk-py or pynenc")
    elif o.impl == "pynenc":
        ap.error("pynenc: pull only")
    elif o.scenario == "1to1":
        run_1to1(o.impl, o)
    else:
        run_latency(o.impl, o)


if __name__ == "__main__":
    main()
