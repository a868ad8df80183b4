"""Two processes, one SQLite file: a producer publishes orders, a consumer takes them.

    make lib
    PYTHONPATH=bindings/python python3 examples/python/two_process.py [path/to/file.db]

Each process opens its own broker on the same `sqlite:///...` URL; the file carries the
messages between them. Without a path, a temporary file is used and removed afterwards.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
from pathlib import Path

import brokk

ORDERS = 5


def producer(url: str) -> None:
    with brokk.Broker(url) as broker:
        for n in range(ORDERS):
            # Whether or not the consumer has started yet: with no group on the topic, the
            # file retains the message for the first named group (the consumer's).
            broker.publish("orders", {"order": n, "total": 10 * n}, priority=n % 2)
        print(f"producer: published {ORDERS} orders", flush=True)


def consumer(url: str) -> None:
    got = []
    with brokk.Broker(url) as broker:
        while len(got) < ORDERS:
            # Pull from the named group "billing"; other processes in it would compete.
            msg = broker.fetch("orders", group="billing", timeout=10)
            if msg is None:
                sys.exit(f"consumer: timed out after {len(got)} orders")
            got.append(msg.payload["order"])
            broker.ack(msg.delivery_id)  # settled in the file: never delivered again
    print(f"consumer: got {len(got)} orders: {sorted(got)}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(tmp) / "orders.db").resolve()
        url = f"sqlite://{path}"  # sqlite:// + /absolute/path
        # "spawn": each child starts a fresh interpreter and loads libbrokk itself (forking a
        # process that already runs brokk's threads is not safe).
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=consumer, args=(url,)), ctx.Process(target=producer, args=(url,))]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        if any(p.exitcode != 0 for p in procs):
            sys.exit(f"a process failed: exit codes {[p.exitcode for p in procs]}")


if __name__ == "__main__":
    main()
