#!/usr/bin/env python3
"""asyncio_pipeline.py: brokk.AsyncBroker in one event loop, no thread per waiting consumer.

    main --await publish--> "orders" --async def price()--> "invoices"
    "invoices" --async for ... in broker.messages(group="billing")--> two billing tasks (ack)
    "audit" <-- nobody publishes: a fetch with a timeout that ends with None

Run it from the repository root, after `make lib`:

    PYTHONPATH=bindings/python python3 examples/python/asyncio_pipeline.py [sqlite:///abs/path.db]

The handler is an `async def`: brokk's worker hands each order to the loop and waits for it. The
billing tasks wait in `messages()` on a readiness registration each (brokk_broker_notify_ready),
not on a thread; `make test-python` runs this and checks its last line.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import brokk

ORDERS = [("anvil", 2), ("rope", 10), ("lantern", 3), ("dynamite", 12), ("magnet", 1), ("rocket", 1)]
PRICES = {"anvil": 2990, "rope": 425, "lantern": 1250, "dynamite": 775, "magnet": 1999, "rocket": 14900}


async def price(message: brokk.Message, broker: brokk.AsyncBroker) -> None:
    """Runs on the loop for each order; returning None acks it."""
    order = message.payload
    await asyncio.sleep(0.01)  # as if it asked a pricing service
    total = PRICES[order["item"]] * order["qty"]
    await broker.publish("invoices", {"item": order["item"], "cents": total})


async def bill(name: str, broker: brokk.AsyncBroker, billed: list, want: int, done: asyncio.Event) -> None:
    """Competes with the other billing task for the group's invoices, until all are billed."""
    async for message in broker.messages("invoices", group="billing"):
        billed.append((name, message.payload["item"], message.payload["cents"]))
        await broker.ack(message.delivery_id)
        if len(billed) == want:
            done.set()
        if done.is_set():
            return


async def main(url: str) -> int:
    threads_before = threading.active_count()
    async with await brokk.AsyncBroker.open(url) as broker:
        await broker.subscribe("orders", lambda m: price(m, broker), group="pricing", concurrency=3)
        billed: list = []
        done = asyncio.Event()
        billers = [
            asyncio.create_task(bill(name, broker, billed, len(ORDERS), done)) for name in ("north", "south")
        ]
        for item, qty in ORDERS:
            await broker.publish("orders", {"item": item, "qty": qty})
        await asyncio.wait_for(done.wait(), 30)
        # The billing task still waiting for an invoice is cancelled: its registration is
        # forgotten, and nothing it might have been told of is lost.
        for b in billers:
            b.cancel()
        await asyncio.gather(*billers, return_exceptions=True)
        nothing = await broker.fetch("audit", timeout=0.05)
        print(f"audit: {nothing} after 0.05 s (nobody published)")
        await broker.join(timeout=30)
        for name, item, cents in sorted(billed, key=lambda b: b[1]):
            print(f"invoice {item:<9} {cents / 100:>8.2f}  (billed by {name})")
        # Python threads: the loop's, plus at most the broker's small executor; none per waiter.
        print(f"python threads: {threading.active_count() - threads_before} more than at the start")
    total = sum(c for _, _, c in billed)
    print(f"asyncio_pipeline: {len(billed)} of {len(ORDERS)} orders billed, {total / 100:.2f} in all")
    return 0 if len(billed) == len(ORDERS) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://")))
