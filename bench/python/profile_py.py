"""Where the Python binding spends its time (make bench-profile; docs/bench/analysis.md).

    python profile_py.py OUT_DIR

Writes OUT_DIR/python-profile.txt:
- rates of the binding's publish alone, of delivery alone (messages retained first, then taken
  by a no-op handler, so no publisher competes for the GIL), and of fetch + ack;
- the same operations through bare ctypes calls on the binding's own `lib` (no wrapper): the
  floor a leaner wrapper could reach;
- cProfile of each binding loop (handlers run on brokk threads, where cProfile does not
  follow, so the handler path is profiled by calling the binding's trampoline entry directly
  on fetched message views).
"""

from __future__ import annotations

import cProfile
import ctypes
import io
import pstats
import sys
import time
from pathlib import Path

import brokk
from brokk import _callbacks, _ffi

S32 = "abcdefghijklmnopqrstuvwxyz012345"
N = int(__import__("os").environ.get("PROFILE_N", "50000"))
lib = _ffi.lib


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:12,.0f} /s  ({seconds / n * 1e6:6.2f} µs each)"


def top(prof: cProfile.Profile, k: int = 18) -> str:
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(k)
    return "\n".join(line for line in s.getvalue().splitlines() if line.strip())[:6000]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = [f"# Python binding profile ({sys.version.split()[0]}, brokk {brokk.version()}, N = {N})", ""]
    payloads = [{"i": i, "s": S32} for i in range(N)]
    raw = [f'{{"i": {i}, "s": "{S32}"}}'.encode() for i in range(N)]

    # ---- publish alone (retention OFF: nothing is kept) -----------------------------------------
    with brokk.Broker(retention_policy=brokk.RetentionPolicy.OFF) as b:
        t = time.perf_counter()
        for p in payloads:
            b.publish("bench", p)
        lines.append(f"binding publish(dict)          {rate(N, time.perf_counter() - t)}")
        t = time.perf_counter()
        for r in raw:
            b.publish("bench", raw=r)
        lines.append(f"binding publish(raw=bytes)     {rate(N, time.perf_counter() - t)}")
        ptr = b._ptr
        t = time.perf_counter()
        for r in raw:
            lib.brokk_broker_publish(ptr, b"bench", 5, r, len(r), None, None, 0)
        lines.append(f"bare ctypes brokk_broker_publish {rate(N, time.perf_counter() - t)}")
        t = time.perf_counter()
        for _ in range(N):
            lib.brokk_version_number()
        lines.append(f"bare ctypes call, no arguments {rate(N, time.perf_counter() - t)}")
        prof = cProfile.Profile()
        prof.enable()
        for p in payloads[:20000]:
            b.publish("bench", p)
        prof.disable()
        publish_profile = top(prof)

    # ---- delivery alone: retained first, then a grouped no-op handler takes them -------------------
    with brokk.Broker(retention_limit=N + 1) as b:
        for i in range(0, N, 1000):
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
        t = time.perf_counter()
        b.subscribe("bench", lambda m: None, group="g")
        b.join(timeout=300)
        lines.append(f"binding delivery to a no-op handler {rate(N, time.perf_counter() - t)}")

    # The same with a bare CFUNCTYPE handler that only returns ACK: the ctypes callback floor.
    with brokk.Broker(retention_limit=N + 1) as b:
        for i in range(0, N, 1000):
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
        bare = _ffi.brokk_handler_cb(lambda user_data, msg: 0)
        opts = _ffi.brokk_subscription_options(group=b"g", group_len=1)
        sub = ctypes.c_uint64()
        t = time.perf_counter()
        lib.brokk_broker_subscribe(b._ptr, b"bench", 5, bare, None, _ffi.brokk_free_cb(), ctypes.byref(opts), ctypes.byref(sub))
        b.join(timeout=300)
        lines.append(f"bare CFUNCTYPE handler (returns 0) {rate(N, time.perf_counter() - t)}")
        b.close()

    # ---- the handler entry, called directly on fetched views (cProfile can follow it) ----------
    with brokk.Broker(queue_capacity=N + 1) as b:
        assert b.fetch("bench", timeout=0) is None
        for i in range(0, 20000, 1000):
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
        entry = _callbacks.HandlerEntry(lambda m: None, b)
        views = []
        for _ in range(20000):
            d = ctypes.POINTER(_ffi.brokk_delivery)()
            lib.brokk_broker_fetch(b._ptr, b"bench", 5, None, 0, ctypes.byref(d))
            views.append(d)
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        addresses = [ctypes.cast(lib.brokk_delivery_message(d), ctypes.c_void_p).value for d in views]
        for address in addresses:
            entry.run(address)
        prof.disable()
        lines.append(f"handler entry (message copy + call), profiled {rate(len(views), time.perf_counter() - t)}")
        handler_profile = top(prof)
        for d in views:
            lib.brokk_delivery_free(d)
        b.close(force=True)

    # ---- fetch + ack --------------------------------------------------------------------------
    with brokk.Broker(queue_capacity=2 * N + 1) as b:
        assert b.fetch("bench", timeout=0) is None
        for i in range(0, N, 1000):
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
        t = time.perf_counter()
        for _ in range(N // 2):
            m = b.fetch("bench", timeout=0)
            b.ack(m.delivery_id)
        lines.append(f"binding fetch + ack            {rate(N // 2, time.perf_counter() - t)}")
        ptr = b._ptr
        d = ctypes.POINTER(_ffi.brokk_delivery)()
        dref = ctypes.byref(d)
        t = time.perf_counter()
        for _ in range(N // 2):
            lib.brokk_broker_fetch(ptr, b"bench", 5, None, 0, dref)
            lib.brokk_broker_ack(ptr, lib.brokk_message_delivery_id(lib.brokk_delivery_message(d)))
            lib.brokk_delivery_free(d)
        lines.append(f"bare ctypes fetch + ack + free {rate(N // 2, time.perf_counter() - t)}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(N // 2):
            m = b.fetch("bench", timeout=0)
            b.ack(m.delivery_id)
        prof.disable()
        fetch_profile = top(prof)
        b.close(force=True)

    # ---- fetch_many + ack_many: the batch pull ----------------------------------------------------
    with brokk.Broker(queue_capacity=N + 1) as b:
        assert b.fetch("bench", timeout=0) is None
        for i in range(0, N, 1000):
            b.publish_batch("bench", [brokk.BatchMessage(raw=r) for r in raw[i : i + 1000]])
        t = time.perf_counter()
        taken = 0
        while taken < N:
            batch = b.fetch_many("bench", 128)
            b.ack_many([m.delivery_id for m in batch])
            taken += len(batch)
        lines.append(f"binding fetch_many(128) + ack_many {rate(taken, time.perf_counter() - t)}")
        b.close(force=True)

    lines += ["", "## cProfile: binding publish(dict), 20 000 calls", "", publish_profile]
    lines += ["", "## cProfile: handler entry on 20 000 fetched views", "", handler_profile]
    lines += ["", f"## cProfile: binding fetch + ack, {N // 2} pairs", "", fetch_profile]
    text = "\n".join(lines) + "\n"
    (out / "python-profile.txt").write_text(text)
    print("\n".join(lines[:12]), file=sys.stderr)


if __name__ == "__main__":
    main()
