#!/usr/bin/env python3
"""Turns build/bench/results.json into docs/bench/results.md and docs/bench/results.png.

    python3 bench/report.py [build/bench/results.json]

The ratios and target verdicts are computed here (``evaluate``), pair by pair from the records
of one run, and run.py stores them in the results file as well. Only the chart needs
matplotlib; without it the markdown is still written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Display names, in table order.
IMPLS = {
    "brokk-c": "brokk (C ABI)",
    "brokk-go": "brokk (Go binding)",
    "brokk-py": "brokk (Python binding)",
    "zmq-pushpull": "ZeroMQ inproc PUSH/PULL",
    "zmq-pubsub": "ZeroMQ inproc PUB/SUB x4",
    "crossbeam": "raw crossbeam-channel",
    "tadween": "Tadween InMemoryBroker",
    "pynenc": "pynenc MemBroker",
    "rusqlite": "hand-written rusqlite",
    "pynenc-sqlite": "pynenc SQLiteBroker",
    "pynenc-mem": "pynenc MemBroker",
    "brokk-pynenc": "brokk pynenc plugin (BrokkBroker)",
    "redis-benchmark": "redis-benchmark XADD, unpipelined",
    "redis-benchmark-pipelined": "redis-benchmark XADD, pipelined (-P 64)",
    "pynenc-redis": "pynenc-redis RedisBroker",
}
SCENARIOS = {
    "1to1": "1 publisher -> 1 subscriber",
    "fanout4": "fan-out to 4 subscribers",
    "group4x2": "4 publishers -> group of 2 workers",
    "pull": "pull: fetch + ack",
    "pull-batch64": "pull: fetch_batch + ack_batch, 64 per call",
    "batch100": "batch publish, 100 per call",
    "batch1000": "batch publish, 1000 per call",
    "latency": "publish -> handler latency, fixed rate",
    "latency-spin": "latency, receiver busy-polling (floor)",
    "memory": "1M messages queued in a group",
    "memory-retained": "1M messages retained (no group yet)",
    "sqlite-publish-threads4": "SQLite: durable publish, 4 threads",
    "sqlite-pull": "SQLite: fetch + ack, one at a time",
    "sqlite-pull-batch64": "SQLite: fetch_batch + ack_batch, 64 per call",
    "sqlite-batch10000": "SQLite: batch publish, 10 000 per call",
    "sqlite-pull-backlog-1k": "SQLite: fetch + ack, 1 000 queued",
    "sqlite-pull-backlog-100k": "SQLite: fetch + ack, 100 000 queued",
    "sqlite-pull-backlog-1m": "SQLite: fetch + ack, 1 000 000 queued",
    "sqlite-publish-threads1": "SQLite: durable publish, 1 thread (the bare one-row commit loop)",
    "sqlite-procs1-publish": "SQLite: publish, 1 process",
    "sqlite-procs4-publish": "SQLite: publish, 4 processes on one file",
    "sqlite-procs1-pull": "SQLite: fetch + ack, 1 process",
    "sqlite-procs4-pull": "SQLite: fetch + ack, 4 processes on one file",
    "pynenc-route": "pynenc broker: route_invocation, memory",
    "pynenc-retrieve": "pynenc broker: retrieve_invocation, memory",
    "pynenc-sqlite-route": "pynenc broker: route_invocation, SQLite",
    "pynenc-sqlite-retrieve": "pynenc broker: retrieve_invocation, SQLite",
    "redis-publish-threads1": "Redis: publish, 1 thread / 1 client",
    "redis-publish-threads4": "Redis: publish, 4 threads / 4 clients",
    "redis-batch1000": "Redis: batch publish, 1 000 per call",
    "redis-batch10000": "Redis: batch publish, 10 000 per call",
    "redis-xadd-pipelined64": "Redis: raw XADD, 1 client, pipeline 64",
    "redis-pull": "Redis: fetch + ack, one at a time",
    "redis-pull-batch64": "Redis: fetch_batch + ack_batch, 64 per call",
    "redis-pull-backlog-1k": "Redis: fetch + ack, 1 000 queued",
    "redis-pull-backlog-100k": "Redis: fetch + ack, 100 000 queued",
    "redis-pull-backlog-1m": "Redis: fetch + ack, 1 000 000 queued",
    "pynenc-redis-route": "pynenc broker: route_invocation, Redis",
    "pynenc-redis-retrieve": "pynenc broker: retrieve_invocation, Redis",
}

# (id, description, numerator (scenario, impl, field), denominator or None, comparison, bound)
# A ratio target compares brokk with a peer measured in the same run; an absolute one checks a
# figure against a bound.
TARGETS = [
    ("1to1-vs-zmq", "1->1 throughput >= ZeroMQ PUSH/PULL",
     ("1to1", "brokk-c", "rate"), ("1to1", "zmq-pushpull", "rate"), ">=", 1.0),
    ("1to1-vs-channel", "1->1 throughput >= 0.5x raw channel",
     ("1to1", "brokk-c", "rate"), ("1to1", "crossbeam", "rate"), ">=", 0.5),
    ("fanout-vs-zmq", "fan-out deliveries/s >= ZeroMQ PUB/SUB x4",
     ("fanout4", "brokk-c", "rate"), ("fanout4", "zmq-pubsub", "rate"), ">=", 1.0),
    ("latency-p50", "latency p50 <= 5 µs at a fixed rate",
     ("latency", "brokk-c", "latency_us.p50"), None, "<=", 5.0),
    ("latency-p99", "latency p99 <= 20 µs at a fixed rate",
     ("latency", "brokk-c", "latency_us.p99"), None, "<=", 20.0),
    ("python-vs-tadween", "Python binding 1->1 >= 10x Tadween InMemoryBroker",
     ("1to1", "brokk-py", "rate"), ("1to1", "tadween", "rate"), ">=", 10.0),
    ("pull-vs-pynenc", "Python pull (fetch+ack) >= pynenc MemBroker retrieve",
     ("pull", "brokk-py", "rate"), ("pull", "pynenc", "rate"), ">=", 1.0),
    ("memory", "< 200 bytes of broker overhead per queued message",
     ("memory", "brokk-c", "overhead_per_msg"), None, "<", 200.0),
    ("sqlite-publish-vs-pynenc", "SQLite durable publish, 4 threads >= 50x pynenc SQLiteBroker route",
     ("sqlite-publish-threads4", "brokk-c", "rate"), ("sqlite-publish-threads4", "pynenc-sqlite", "rate"), ">=", 50.0),
    ("sqlite-pull-vs-pynenc", "SQLite fetch + ack >= 20x pynenc SQLiteBroker retrieve",
     ("sqlite-pull", "brokk-c", "rate"), ("sqlite-pull", "pynenc-sqlite", "rate"), ">=", 20.0),
    # The pynenc plugin against pynenc's own brokers, through pynenc's broker interface.
    ("pynenc-plugin-route", "pynenc plugin route_invocation (memory) >= pynenc MemBroker",
     ("pynenc-route", "brokk-pynenc", "rate"), ("pynenc-route", "pynenc-mem", "rate"), ">=", 1.0),
    ("pynenc-plugin-retrieve", "pynenc plugin retrieve_invocation (memory) >= pynenc MemBroker",
     ("pynenc-retrieve", "brokk-pynenc", "rate"), ("pynenc-retrieve", "pynenc-mem", "rate"), ">=", 1.0),
    ("pynenc-plugin-sqlite-route", "pynenc plugin route_invocation (SQLite) >= 20x pynenc SQLiteBroker",
     ("pynenc-sqlite-route", "brokk-pynenc", "rate"), ("pynenc-sqlite-route", "pynenc-sqlite", "rate"), ">=", 20.0),
    ("pynenc-plugin-sqlite-retrieve", "pynenc plugin retrieve_invocation (SQLite) >= 20x pynenc SQLiteBroker",
     ("pynenc-sqlite-retrieve", "brokk-pynenc", "rate"), ("pynenc-sqlite-retrieve", "pynenc-sqlite", "rate"), ">=", 20.0),
    ("sqlite-batch", "SQLite batch publish of 10 000 >= 300 k msgs/s",
     ("sqlite-batch10000", "brokk-c", "rate"), None, ">=", 300_000.0),
    # Flat: the rate with 1 M queued keeps at least half the rate with 1 k queued (a queue that
    # scans its backlog on each fetch would fall about 1000x over that range).
    ("sqlite-backlog-flat", "SQLite fetch + ack with 1 M queued >= 0.5x with 1 k queued",
     ("sqlite-pull-backlog-1m", "brokk-c", "rate"), ("sqlite-pull-backlog-1k", "brokk-c", "rate"), ">=", 0.5),
    # Issue 21, SQLite: at the speed of the engine, against hand-written loops on the same file
    # (bench/rust/src/sqlite.rs) and against one process of the same program.
    ("sqlite-publish-vs-loop", "SQLite durable publish, 4 threads >= 0.9x hand-written rusqlite (one INSERT a transaction)",
     ("sqlite-publish-threads4", "brokk-c", "rate"), ("sqlite-publish-threads4", "rusqlite", "rate"), ">=", 0.9),
    ("sqlite-pull-vs-pop", "SQLite fetch + ack, one at a time >= 0.8x naive rusqlite pop",
     ("sqlite-pull", "brokk-c", "rate"), ("sqlite-pull", "rusqlite", "rate"), ">=", 0.8),
    ("pynenc-plugin-sqlite-route-vs-loop", "pynenc plugin route_invocation (SQLite) >= 0.8x a bare one-row commit loop",
     ("pynenc-sqlite-route", "brokk-pynenc", "rate"), ("sqlite-publish-threads1", "rusqlite", "rate"), ">=", 0.8),
    ("pynenc-plugin-sqlite-retrieve-vs-loop", "pynenc plugin retrieve_invocation (SQLite) >= 0.8x a bare one-row commit loop",
     ("pynenc-sqlite-retrieve", "brokk-pynenc", "rate"), ("sqlite-publish-threads1", "rusqlite", "rate"), ">=", 0.8),
    ("sqlite-procs4-publish", "SQLite publish, 4 processes on one file >= 2x one process",
     ("sqlite-procs4-publish", "brokk-c", "rate"), ("sqlite-procs1-publish", "brokk-c", "rate"), ">=", 2.0),
    ("sqlite-procs4-pull", "SQLite fetch + ack, 4 processes on one file >= 2x one process",
     ("sqlite-procs4-pull", "brokk-c", "rate"), ("sqlite-procs1-pull", "brokk-c", "rate"), ">=", 2.0),
    # Redis, against the same local server in the same run (bench/README.md); issue 21's targets.
    ("redis-publish-vs-xadd", "Redis publish, 4 threads >= 0.8x redis-benchmark XADD, 4 clients unpipelined",
     ("redis-publish-threads4", "brokk-c", "rate"), ("redis-publish-threads4", "redis-benchmark", "rate"), ">=", 0.8),
    ("redis-publish1-vs-xadd", "Redis publish, 1 thread >= 0.8x redis-benchmark XADD, 1 client",
     ("redis-publish-threads1", "brokk-c", "rate"), ("redis-publish-threads1", "redis-benchmark", "rate"), ">=", 0.8),
    ("redis-batch-vs-pipelined", "Redis batch publish (10 000) >= 0.8x pipelined XADD (-P 64)",
     ("redis-batch10000", "brokk-c", "rate"), ("redis-xadd-pipelined64", "redis-benchmark-pipelined", "rate"), ">=", 0.8),
    ("redis-pull-vs-pynenc", "Redis fetch + ack >= 1.5x pynenc-redis RedisBroker retrieve",
     ("redis-pull", "brokk-c", "rate"), ("pynenc-redis-retrieve", "pynenc-redis", "rate"), ">=", 1.5),
    ("pynenc-plugin-redis-retrieve", "pynenc plugin retrieve_invocation (Redis) >= 1.5x pynenc-redis RedisBroker",
     ("pynenc-redis-retrieve", "brokk-pynenc", "rate"), ("pynenc-redis-retrieve", "pynenc-redis", "rate"), ">=", 1.5),
    ("redis-backlog-flat", "Redis fetch + ack with 1 M queued >= 0.8x with 1 k queued",
     ("redis-pull-backlog-1m", "brokk-c", "rate"), ("redis-pull-backlog-1k", "brokk-c", "rate"), ">=", 0.8),
]

# The unit an absolute target's figure is shown in.
UNITS = {"memory": " B", "latency-p50": " µs", "latency-p99": " µs", "sqlite-batch": " msgs/s"}

# More ratios from the same run, for reading the targets (no verdict).
COMPARISONS = [
    ("Go binding / C ABI, 1->1", ("1to1", "brokk-go", "rate"), ("1to1", "brokk-c", "rate")),
    ("Python binding / C ABI, 1->1", ("1to1", "brokk-py", "rate"), ("1to1", "brokk-c", "rate")),
    ("fan-out brokk / raw channel x4", ("fanout4", "brokk-c", "rate"), ("fanout4", "crossbeam", "rate")),
    ("latency p50 brokk / ZeroMQ", ("latency", "brokk-c", "latency_us.p50"), ("latency", "zmq-pushpull", "latency_us.p50")),
    ("latency p50 brokk / raw channel", ("latency", "brokk-c", "latency_us.p50"), ("latency", "crossbeam", "latency_us.p50")),
    ("latency p99 brokk / raw channel", ("latency", "brokk-c", "latency_us.p99"), ("latency", "crossbeam", "latency_us.p99")),
    ("Python latency p50 brokk / Tadween", ("latency", "brokk-py", "latency_us.p50"), ("latency", "tadween", "latency_us.p50")),
    ("Python latency p99 brokk / Tadween", ("latency", "brokk-py", "latency_us.p99"), ("latency", "tadween", "latency_us.p99")),
    ("pull brokk C ABI / pynenc (Python)", ("pull", "brokk-c", "rate"), ("pull", "pynenc", "rate")),
    ("SQLite publish, 4 threads: brokk / hand-written rusqlite",
     ("sqlite-publish-threads4", "brokk-c", "rate"), ("sqlite-publish-threads4", "rusqlite", "rate")),
    ("SQLite fetch + ack: brokk / hand-written rusqlite pop",
     ("sqlite-pull", "brokk-c", "rate"), ("sqlite-pull", "rusqlite", "rate")),
    ("SQLite fetch_batch + ack_batch (64) / fetch + ack, brokk",
     ("sqlite-pull-batch64", "brokk-c", "rate"), ("sqlite-pull", "brokk-c", "rate")),
    ("SQLite fetch + ack, 100 k / 1 k queued, brokk",
     ("sqlite-pull-backlog-100k", "brokk-c", "rate"), ("sqlite-pull-backlog-1k", "brokk-c", "rate")),
    ("SQLite pop, 1 M / 1 k queued, hand-written rusqlite",
     ("sqlite-pull-backlog-1m", "rusqlite", "rate"), ("sqlite-pull-backlog-1k", "rusqlite", "rate")),
    ("memory / SQLite fetch + ack, brokk C ABI", ("pull", "brokk-c", "rate"), ("sqlite-pull", "brokk-c", "rate")),
    ("Redis publish, 4 / 1 threads, brokk", ("redis-publish-threads4", "brokk-c", "rate"), ("redis-publish-threads1", "brokk-c", "rate")),
    ("Redis batch publish (1 000) / pipelined XADD",
     ("redis-batch1000", "brokk-c", "rate"), ("redis-xadd-pipelined64", "redis-benchmark-pipelined", "rate")),
    ("Redis fetch_batch + ack_batch (64) / pynenc-redis retrieve",
     ("redis-pull-batch64", "brokk-c", "rate"), ("pynenc-redis-retrieve", "pynenc-redis", "rate")),
    ("Redis fetch_batch + ack_batch (64) / fetch + ack, brokk",
     ("redis-pull-batch64", "brokk-c", "rate"), ("redis-pull", "brokk-c", "rate")),
    ("Redis fetch + ack, 100 k / 1 k queued, brokk",
     ("redis-pull-backlog-100k", "brokk-c", "rate"), ("redis-pull-backlog-1k", "brokk-c", "rate")),
    ("Redis fetch + ack / redis-benchmark XADD, 1 client",
     ("redis-pull", "brokk-c", "rate"), ("redis-publish-threads1", "redis-benchmark", "rate")),
    ("pynenc plugin route (Redis) / pynenc-redis RedisBroker",
     ("pynenc-redis-route", "brokk-pynenc", "rate"), ("pynenc-redis-route", "pynenc-redis", "rate")),
]


def _get(records: list[dict], ref: tuple[str, str, str]) -> float | None:
    scenario, impl, field = ref
    for r in records:
        if r["scenario"] == scenario and r["impl"] == impl:
            v = r
            for part in field.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            return v if isinstance(v, (int, float)) else None
    return None


def evaluate(results: dict) -> dict:
    """The targets (met / missed / not measured) and the informational ratios of one run."""
    recs = results["records"]
    targets = []
    for tid, text, num, den, op, bound in TARGETS:
        a = _get(recs, num)
        b = _get(recs, den) if den else 1.0
        value = a / b if a is not None and b else None
        met = None
        if value is not None:
            met = {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]
        targets.append({"id": tid, "target": text, "value": value, "op": op, "bound": bound,
                        "ratio": den is not None, "numerator": a, "denominator": b if den else None,
                        "refs": [num, den], "met": met})
    comparisons = []
    for text, num, den in COMPARISONS:
        a, b = _get(recs, num), _get(recs, den)
        comparisons.append({"comparison": text, "numerator": a, "denominator": b,
                            "ratio": a / b if a is not None and b else None})
    return {"targets": targets, "comparisons": comparisons}


# ---- markdown --------------------------------------------------------------------------------------


def _n(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if abs(v) >= 1e6:
        s = f"{v / 1e6:.2f} M"
    elif abs(v) >= 1e4:
        s = f"{v / 1e3:.0f} k"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def _shown(t: dict) -> str:
    """A target's measured figure: a ratio, or a value in its unit."""
    if t["ratio"]:
        return f"{t['value']:.2f}x"
    unit = UNITS.get(t["id"], "")
    return _n(t["value"], unit) if unit == " msgs/s" else f"{t['value']:.1f}{unit}"


def _us(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def conditions(results: dict) -> list[str]:
    """Warnings about a run whose figures are not to be trusted: a busy machine, a paced
    publisher that could not keep its schedule, or a smoke run."""
    env = results["environment"]
    cpus = env.get("cpus") or 1
    warn = []
    if results["mode"] == "smoke":
        warn.append("This is a smoke run (tiny sizes): it checks that every program runs; its figures mean nothing.")
    loads = [float(x) for x in (env.get("loadavg_start") or [])[:1] + (env.get("loadavg_end") or [])[:1]]
    if loads and max(loads) > 0.5 * cpus:
        warn.append(f"The machine was busy (load average up to {max(loads):.1f} on {cpus} CPUs): other "
                    "processes took CPU time, so every figure is provisional, latency above all.")
    for r in results["records"]:
        late = r.get("sends_late") or 0
        if r["scenario"] == "latency" and r.get("messages") and late / r["messages"] > 0.01:
            warn.append(f"Latency, {IMPLS.get(r['impl'], r['impl'])}: {100 * late / r['messages']:.0f}% of the "
                        "paced sends left more than one period late, i.e. the publisher itself was descheduled; "
                        "its percentiles measure the machine's scheduling more than the queue.")
    if not warn:
        return []
    return ["> **Caution.**", ">"] + [f"> - {w}" for w in warn] + [""]


def markdown(results: dict) -> str:
    env = results["environment"]
    recs = results["records"]
    lines = [
        "# brokk benchmark results",
        "",
        "Generated by `make bench` (bench/run.py, bench/report.py) from "
        "`build/bench/results.json`; do not edit by hand. How each figure is measured: "
        "[bench/README.md](../../bench/README.md). Where the time goes: [analysis.md](analysis.md).",
        "",
        f"Run of {results['generated']} ({results['mode']}), {env.get('cpus')} CPUs "
        f"({env.get('cpu')}), {env.get('memory_gib')} GiB, kernel {env.get('kernel')}; load average "
        f"{' '.join(env.get('loadavg_start') or [])} at start, {' '.join(env.get('loadavg_end') or [])} at end. "
        f"brokk {env.get('brokk_version')} at {str(env.get('git_commit'))[:12]}"
        f"{' (core files modified)' if env.get('git_core_dirty') else ''}, {env.get('rustc')}; "
        f"libzmq {env.get('libzmq') or '—'}; {env.get('go') or 'no Go'}; Python {env.get('python_bench')}.",
        "",
    ]
    lines += conditions(results)
    lines += [
        "## Targets",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        if t["value"] is None:
            measured, verdict = "not measured", "—"
        elif t["ratio"]:
            measured = f"{t['value']:.2f}x ({_n(t['numerator'])} / {_n(t['denominator'])})"
            verdict = "**met**" if t["met"] else "**missed**"
        else:
            measured = _shown(t)
            verdict = "**met**" if t["met"] else "**missed**"
            lat = next((r for r in recs if r["scenario"] == "latency" and r["impl"] == "brokk-c"), {})
            if t["id"].startswith("latency") and lat.get("messages") and (lat.get("sends_late") or 0) > 0.01 * lat["messages"]:
                verdict += " (publisher descheduled: see the caution above)"
        lines.append(f"| {t['target']} | {measured} | {verdict} |")

    lines += [
        "",
        "## All results",
        "",
        "Rates are messages/s, except the fan-out rows: deliveries/s (4 per message). Latency in "
        "µs, from just before publish to the start of the handler (or receive), at the rate shown. "
        "Memory: resident-set growth per queued message, minus the payload bytes. SQLite rows: "
        "each run on a fresh file on disk, synchronous=normal (WAL), every call returning after "
        "its commit; the batch row counts the publish calls alone, the backlog rows only the "
        "fetch + ack time.",
        "",
        "| scenario | implementation | rate /s | p50 µs | p99 µs | p99.9 µs | B/msg beyond payload | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {k: i for i, k in enumerate(SCENARIOS)}
    iorder = {k: i for i, k in enumerate(IMPLS)}
    for r in sorted(recs, key=lambda r: (order.get(r["scenario"], 99), iorder.get(r["impl"], 99))):
        lat = r.get("latency_us") or {}
        notes = []
        if r["scenario"].startswith("latency"):
            notes.append(f"at {_n(r.get('target_rate'))} msg/s")
            if r.get("sends_late"):
                notes.append(f"{r['sends_late']} sends >1 period late")
        elif r["scenario"].startswith("memory"):
            notes.append(f"payload {r.get('payload_bytes', 0):.0f} B, {r.get('bytes_per_msg', 0):.0f} B/msg in all")
        else:
            notes.append(f"{_n(r.get('messages'))} msgs in {r.get('seconds', 0):.2f} s")
        if "publish_rate" in r and r["scenario"].startswith("batch"):
            notes.append(f"publish calls alone {_n(r['publish_rate'])} msg/s")
        if r.get("note"):
            notes.append(r["note"])
        if "rounds" in r:
            notes.append(f"median of {len(r['rounds'])}, spread {100 * r.get('spread', 0):.0f}%")
        rate = r["rate"] if not r["scenario"].startswith("memory") else None
        name = IMPLS.get(r["impl"], r["impl"])
        lines.append(
            f"| {SCENARIOS.get(r['scenario'], r['scenario'])} | {name} | {_n(rate)} | {_us(lat.get('p50'))} | "
            f"{_us(lat.get('p99'))} | {_us(lat.get('p999'))} | "
            f"{'%.0f' % r['overhead_per_msg'] if 'overhead_per_msg' in r else '—'} | {'; '.join(notes)} |"
        )

    lines += ["", "## Ratios from the same run", "", "| ratio | value | target |", "|---|---|---|"]
    for t in results["targets"]:
        if t["ratio"]:
            num, den = t["refs"]
            ratio = "—" if t["value"] is None else f"{t['value']:.2f}x"
            if num[0] == den[0]:
                label = f"{SHORT[num[1]]} / {SHORT[den[1]]}, {SCENARIOS[num[0]]}"
            elif num[1] == den[1]:
                label = f"{SCENARIOS[num[0]]} / {SCENARIOS[den[0]]}, {SHORT[num[1]]}"
            else:
                label = f"{SHORT[num[1]]}, {SCENARIOS[num[0]]} / {SHORT[den[1]]}, {SCENARIOS[den[0]]}"
            lines.append(f"| {label} | {ratio} | {t['op']} {t['bound']:g}x |")
    for c in results["comparisons"]:
        ratio = "—" if c["ratio"] is None else f"{c['ratio']:.3g}x"
        lines.append(f"| {c['comparison']} | {ratio} | |")

    if results["skipped"] or results["failed"]:
        lines += ["", "## Not measured", ""]
        seen = set()
        for s in results["skipped"]:
            if (s["impl"], s["reason"]) in seen:
                continue
            seen.add((s["impl"], s["reason"]))
            on = f" on {s['url']}" if s.get("url") else ""
            lines.append(f"- {IMPLS.get(s['impl'], s['impl'])}{on}: skipped, {s['reason']}")
        for f in results["failed"]:
            lines.append(f"- {f['scenario']} / {IMPLS.get(f['impl'], f['impl'])}: failed (exit {f['exit']})")
    lines += ["", "![results chart](results.png)", ""]
    return "\n".join(lines)


# ---- chart -------------------------------------------------------------------------------------------


SHORT = {"brokk-c": "brokk C", "brokk-go": "brokk Go", "brokk-py": "brokk Python", "zmq-pushpull": "ZeroMQ",
         "zmq-pubsub": "ZeroMQ PUB/SUB", "crossbeam": "raw channel", "tadween": "Tadween", "pynenc": "pynenc",
         "rusqlite": "rusqlite", "pynenc-sqlite": "pynenc SQLite", "pynenc-mem": "pynenc MemBroker",
         "brokk-pynenc": "brokk plugin", "redis-benchmark": "redis-benchmark",
         "redis-benchmark-pipelined": "redis-benchmark -P 64", "pynenc-redis": "pynenc RedisBroker"}
COLORS = {"brokk-c": "#1f5fa8", "brokk-go": "#4f8fd8", "brokk-py": "#7fb2ea", "zmq-pushpull": "#d9822b",
          "zmq-pubsub": "#d9822b", "crossbeam": "#7a7a7a", "tadween": "#8e5cb5", "pynenc": "#3a9a5b",
          "rusqlite": "#b8860b", "pynenc-sqlite": "#3a9a5b", "pynenc-mem": "#3a9a5b", "brokk-pynenc": "#7fb2ea",
          "redis-benchmark": "#c0392b", "redis-benchmark-pipelined": "#e57368", "pynenc-redis": "#3a9a5b"}


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = results["records"]

    def rec(s: str, i: str) -> dict | None:
        return next((r for r in recs if r["scenario"] == s and r["impl"] == i), None)

    fig, axes = plt.subplots(4, 2, figsize=(14, 20))
    fig.suptitle(f"brokk benchmarks ({results['environment'].get('cpus')} CPUs, {results['generated'][:16]} UTC, "
                 f"{results['mode']} run)", fontsize=13)

    def bars(ax, groups, title, xlabel):
        """groups: [(label, [(impl, value)])]: horizontal bars, one block per group."""
        y, ticks, labels, values = 0, [], [], []
        for label, items in groups:
            for impl, v in items:
                if v is None:
                    continue
                values.append(v)
                ax.barh(y, v, color=COLORS.get(impl, "#999"), height=0.8)
                ax.text(v * 1.05, y, _n(v), va="center", fontsize=8)
                ticks.append(y)
                labels.append(f"{label}: {IMPLS.get(impl, impl)}" if label else IMPLS.get(impl, impl))
                y += 1
            y += 0.6
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=11)
        ax.set_axisbelow(True)
        ax.grid(axis="x", which="major", alpha=0.4)
        if values:
            # Bars start a decade below the smallest value, so that their lengths compare.
            ax.set_xlim(min(values) / 10, max(values) * 8)

    native = []
    for s, impls in [("1to1", ["brokk-c", "brokk-go", "zmq-pushpull", "crossbeam"]),
                     ("fanout4", ["brokk-c", "zmq-pubsub", "crossbeam"]),
                     ("group4x2", ["brokk-c"]), ("pull", ["brokk-c"]),
                     ("batch100", ["brokk-c"]), ("batch1000", ["brokk-c"])]:
        items = [(i, (rec(s, i) or {}).get("rate")) for i in impls]
        if any(v for _, v in items):
            native.append((s, items))
    bars(axes[0][0], native, "Throughput: C ABI, Go and native peers", "messages/s (fan-out: deliveries/s), log scale")

    py = []
    for s, impls in [("1to1", ["brokk-py", "tadween"]), ("pull", ["brokk-py", "pynenc"]),
                     ("pynenc-route", ["brokk-pynenc", "pynenc-mem"]),
                     ("pynenc-retrieve", ["brokk-pynenc", "pynenc-mem"])]:
        items = [(i, (rec(s, i) or {}).get("rate")) for i in impls]
        if any(v for _, v in items):
            py.append((s, items))
    bars(axes[0][1], py, "Throughput: Python", "messages/s, log scale")

    ax = axes[1][0]
    lat_impls = [i for i in ["brokk-c", "zmq-pushpull", "crossbeam", "brokk-py", "tadween"] if rec("latency", i)]
    pcts = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]
    width = 0.8 / len(pcts)
    for k, (key, label) in enumerate(pcts):
        vals = [rec("latency", i)["latency_us"].get(key, 0) for i in lat_impls]
        xs = [j + (k - 1) * width for j in range(len(lat_impls))]
        ax.bar(xs, vals, width=width, label=label, color=["#6baed6", "#2171b5", "#08306b"][k])
    ax.set_xticks(range(len(lat_impls)),
                  [f"{SHORT[i]}\n@ {_n(rec('latency', i).get('target_rate'))}/s" for i in lat_impls], fontsize=8)
    ax.set_yscale("log")
    ax.axhline(5, color="green", ls="--", lw=1, label="target p50 5 µs (C)")
    ax.axhline(20, color="red", ls="--", lw=1, label="target p99 20 µs (C)")
    ax.set_ylabel("µs, log scale")
    ax.set_title("Latency, publish -> handler, at a fixed rate", fontsize=11)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, 1.0), hi * 30)  # room for the legend above the bars
    ax.set_axisbelow(True)
    ax.grid(axis="y", which="major", alpha=0.4)

    sql = []
    for s, impls in [("sqlite-publish-threads4", ["brokk-c", "rusqlite", "pynenc-sqlite"]),
                     ("sqlite-pull", ["brokk-c", "rusqlite", "pynenc-sqlite"]),
                     ("sqlite-pull-batch64", ["brokk-c"]), ("sqlite-batch10000", ["brokk-c"]),
                     ("pynenc-sqlite-route", ["brokk-pynenc", "pynenc-sqlite"]),
                     ("pynenc-sqlite-retrieve", ["brokk-pynenc", "pynenc-sqlite"])]:
        items = [(i, (rec(s, i) or {}).get("rate")) for i in impls]
        if any(v for _, v in items):
            sql.append((s.removeprefix("sqlite-"), items))
    bars(axes[2][0], sql, "SQLite file, durable (each call returns after its commit)", "messages/s, log scale")

    def backlog_panel(ax, prefix: str, impls: list[str], title: str) -> None:
        """fetch + ack as the backlog grows: one line per implementation."""
        sizes = set()
        for impl in impls:
            pts = sorted((r["backlog"], r["rate"]) for r in recs
                         if r["scenario"].startswith(prefix) and r["impl"] == impl and r.get("backlog"))
            sizes.update(x for x, _ in pts)
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", color=COLORS[impl],
                        label=f"{IMPLS[impl]}{': fetch + ack' if impl == 'brokk-c' else ': naive pop'}")
                for x, y in pts:
                    ax.annotate(_n(y), (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xscale("log")
        sizes = sorted(sizes)
        if sizes:
            ax.set_xticks(sizes, [_n(x).replace(".00", "") for x in sizes], fontsize=8)
            ax.minorticks_off()
            ax.set_xlim(sizes[0] / 2, sizes[-1] * 2)
        ax.set_ylim(bottom=0, top=max([ax.get_ylim()[1], 1]) * 1.25)
        ax.set_xlabel("messages queued while measuring, log scale")
        ax.set_ylabel("per second, one message at a time")
        ax.set_title(title, fontsize=11)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower left")
        ax.set_axisbelow(True)
        ax.grid(alpha=0.4)

    backlog_panel(axes[2][1], "sqlite-pull-backlog-", ["brokk-c", "rusqlite"], "SQLite: fetch + ack as the backlog grows")

    red = []
    for s, impls in [("redis-publish-threads1", ["brokk-c", "redis-benchmark"]),
                     ("redis-publish-threads4", ["brokk-c", "redis-benchmark"]),
                     ("redis-batch1000", ["brokk-c"]), ("redis-batch10000", ["brokk-c"]),
                     ("redis-xadd-pipelined64", ["redis-benchmark-pipelined"]),
                     ("redis-pull", ["brokk-c"]), ("redis-pull-batch64", ["brokk-c"]),
                     ("pynenc-redis-route", ["brokk-pynenc", "pynenc-redis"]),
                     ("pynenc-redis-retrieve", ["brokk-pynenc", "pynenc-redis"])]:
        items = [(i, (rec(s, i) or {}).get("rate")) for i in impls]
        if any(v for _, v in items):
            red.append((s.removeprefix("redis-"), items))
    bars(axes[3][0], red, "Redis, one local server (brokk C ABI against redis-benchmark and pynenc-redis)",
         "messages/s, log scale")
    backlog_panel(axes[3][1], "redis-pull-backlog-", ["brokk-c"], "Redis: fetch + ack as the backlog grows")

    ax = axes[1][1]
    ts = [t for t in results["targets"] if t["value"] is not None]
    # Attainment: how far past (>1) or short of (<1) its bound each target is.
    att = [(t["value"] / t["bound"]) if t["op"] == ">=" else (t["bound"] / t["value"] if t["value"] else float("inf"))
           for t in ts]
    colors = ["#2ca02c" if t["met"] else "#d62728" for t in ts]
    ax.barh(range(len(ts)), att, color=colors)
    for j, (t, a) in enumerate(zip(ts, att)):
        shown = _shown(t)
        ax.text(a * 1.05, j, f"{shown} ({'met' if t['met'] else 'missed'})", va="center", fontsize=8)
    ax.set_yticks(range(len(ts)), [t["target"] for t in ts], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="black", lw=1)
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, 0.01), max(hi, 10) * 3)
    ax.set_xlabel("measured / target (>= 1: met), log scale")
    ax.set_title("Targets (green: met, red: missed)", fontsize=11)
    ax.set_axisbelow(True)
    ax.grid(axis="x", which="major", alpha=0.4)

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: dict, smoke: bool = False) -> None:
    outdir = ROOT / ("build/bench/smoke" if smoke else "docs/bench")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "results.md").write_text(markdown(results))
    msg = f"report: {(outdir / 'results.md').relative_to(ROOT)}"
    try:
        chart(results, outdir / "results.png")
        msg += f", {(outdir / 'results.png').relative_to(ROOT)}"
    except ImportError:
        msg += " (no chart: matplotlib is not installed in this interpreter; `make bench-venv`)"
    print(msg, file=sys.stderr)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build/bench/results.json"
    results = json.loads(path.read_text())
    results.update(evaluate(results))
    write_all(results, smoke=results.get("mode") == "smoke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
