#!/usr/bin/env python3
"""Runs every benchmark, one process per scenario and implementation, and writes the results.

    python3 bench/run.py                 # full run: build/bench/results.json, then bench/report.py
    python3 bench/run.py --smoke         # tiny sizes: checks that every program builds and runs
    python3 bench/run.py --only latency  # the runs whose "scenario/impl" contains "latency"

bench/bench.mk builds the programs first (`make bench-all`, `make bench-smoke`). A peer that is
not available (its program was not built, or a Python package cannot be imported) is skipped
with the reason, recorded in the results; a program that was built but fails makes the run fail.
The Redis rows run against one throwaway redis-server that this script starts (through
core/src/store/redis/test-server.sh) before the first of them and stops at the end, also on failure, Ctrl-C
or SIGTERM; without redis-server they are skipped.

Standard library only: the interpreter running this may lack the bench venv's packages.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402  (bench/report.py: comparisons, targets, markdown, chart)


# ---- what runs -----------------------------------------------------------------------------------
# (scenario, impl, program, argv, full sizes, smoke sizes). Peers of one comparison are adjacent,
# so that they run close together in time on a shared machine.

FAST = {"messages": 5_000_000, "warmup": 200_000, "seconds": 5}
FAN = {"messages": 2_000_000, "warmup": 100_000, "seconds": 5}
LAT = {"rate": 50_000, "seconds": 5, "warmup": 25_000}
SMOKE = {"messages": 2_000, "warmup": 200, "seconds": 1}
SMOKE_LAT = {"rate": 5_000, "seconds": 0.2, "warmup": 500}
PY = {"messages": 200_000, "warmup": 10_000, "seconds": 4}
PY_LAT = {"rate": 2_000, "seconds": 5, "warmup": 1_000}
SMOKE_PY = {"messages": 300, "warmup": 50, "seconds": 1}
SMOKE_PY_LAT = {"rate": 500, "seconds": 0.2, "warmup": 50}
# SQLite: every run on a fresh file (bench/README.md). A durable call costs 100-300 µs, so the
# bounds are mostly the seconds; --messages only caps what is prepublished.
SQL = ["--url", "sqlite://"]
SQL_PUB = {"messages": 1_000_000, "warmup": 2_000, "seconds": 3}
SQL_PULL = {"messages": 200_000, "warmup": 2_000, "seconds": 3}
SQL_PY = {"messages": 20_000, "warmup": 200, "seconds": 3}
SQL_BACKLOG = {"messages": 5_000, "warmup": 500, "seconds": 2}
SQL_PROCS = {"messages": 100_000, "warmup": 0, "seconds": 3}  # messages: each process's cap (and share to pull)
SMOKE_SQL = {"messages": 300, "warmup": 30, "seconds": 0.5}
SMOKE_SQL_PY = {"messages": 100, "warmup": 10, "seconds": 0.5}
SMOKE_BACKLOG = {"messages": 200, "warmup": 20, "seconds": 0.5}
# Smoke runs use small backlogs (1k, 2k, 5k), so their records are named after those sizes.
BACKLOGS = [("1k", 1_000, 1_000), ("100k", 100_000, 2_000), ("1m", 1_000_000, 5_000)]

# Redis: one throwaway redis-server for all these rows (core/src/store/redis/test-server.sh: a free loopback
# port, no persistence), started before the first of them and stopped at the end. Every row
# starts on an empty server (FLUSHALL) under a fresh prefix. "{redis_url}" and "{redis_port}" in
# an argv are replaced by the server's address at run time (the URL with ?prefix=).
RED = ["--url", "{redis_url}"]
RED_PUB = {"messages": 1_000_000, "warmup": 2_000, "seconds": 3}
RED_BATCH = {"messages": 2_000_000, "warmup": 20_000, "seconds": 3}
RED_PULL = {"messages": 200_000, "warmup": 2_000, "seconds": 3}
RED_PY = {"messages": 50_000, "warmup": 1_000, "seconds": 3}
SMOKE_RED = {"messages": 300, "warmup": 30, "seconds": 0.5}
SMOKE_RED_BATCH = {"messages": 4_000, "warmup": 2_000, "seconds": 0.5}
# redis-benchmark has no time bound: --messages is sized to about 3 s here (30 k/s for one
# client, 60 k/s for 4, 500 k/s pipelined).
XADD = ["xadd", "--port", "{redis_port}"]
SMOKE_XADD = {"messages": 2_000, "warmup": 200}
REDIS_CLIENTS = [1, 4]

RUNS = [
    ("1to1", "brokk-c", "brokk", ["1to1"], FAST, SMOKE),
    ("1to1", "zmq-pushpull", "zmq", ["pushpull"], FAST, SMOKE),
    ("1to1", "crossbeam", "channel", ["1to1"], FAST, SMOKE),
    ("1to1", "brokk-go", "go", ["1to1"], FAST, SMOKE),
    ("fanout4", "brokk-c", "brokk", ["fanout4"], FAN, SMOKE),
    ("fanout4", "zmq-pubsub", "zmq", ["pubsub4"], FAN, SMOKE),
    ("fanout4", "crossbeam", "channel", ["fanout4"], FAN, SMOKE),
    ("group4x2", "brokk-c", "brokk", ["group4x2"], FAST, SMOKE),
    ("pull", "brokk-c", "brokk", ["pull"], {"messages": 2_000_000, "warmup": 200_000, "seconds": 5}, SMOKE),
    ("pull-batch64", "brokk-c", "brokk", ["pull-batch", "--batch", "64"], {"messages": 2_000_000, "warmup": 200_000, "seconds": 5}, SMOKE),
    ("batch100", "brokk-c", "brokk", ["batch", "--batch", "100"], FAST, SMOKE),
    ("batch1000", "brokk-c", "brokk", ["batch", "--batch", "1000"], FAST, SMOKE),
    ("latency", "brokk-c", "brokk", ["latency"], LAT, SMOKE_LAT),
    ("latency", "zmq-pushpull", "zmq", ["latency"], LAT, SMOKE_LAT),
    ("latency", "crossbeam", "channel", ["latency"], LAT, SMOKE_LAT),
    ("latency-spin", "crossbeam", "channel", ["latency-spin"], LAT, SMOKE_LAT),
    ("memory", "brokk-c", "brokk", ["memory"], {"messages": 1_000_000}, {"messages": 20_000}),
    ("memory-retained", "brokk-c", "brokk", ["memory-retained"], {"messages": 1_000_000}, {"messages": 20_000}),
    ("1to1", "brokk-py", "py", ["brokk-py", "1to1"], PY, SMOKE_PY),
    ("1to1", "tadween", "py", ["tadween", "1to1"], PY, SMOKE_PY),
    ("latency", "brokk-py", "py", ["brokk-py", "latency"], PY_LAT, SMOKE_PY_LAT),
    ("latency", "tadween", "py", ["tadween", "latency"], PY_LAT, SMOKE_PY_LAT),
    ("pull", "brokk-py", "py", ["brokk-py", "pull"], PY, SMOKE_PY),
    ("pull", "pynenc", "py", ["pynenc", "pull"], {"messages": 1_000_000, "warmup": 50_000, "seconds": 5}, SMOKE_PY),
    # pynenc's broker interface, one call at a time: pynenc's own brokers against brokk's pynenc
    # plugin (brokk.pynenc_plugin.BrokkBroker), in memory and on a SQLite file.
    ("pynenc-route", "pynenc-mem", "py", ["pynenc-broker", "route", "--broker", "mem"], PY, SMOKE_PY),
    ("pynenc-route", "brokk-pynenc", "py", ["pynenc-broker", "route", "--broker", "brokk-memory"], PY, SMOKE_PY),
    ("pynenc-retrieve", "pynenc-mem", "py", ["pynenc-broker", "retrieve", "--broker", "mem"], PY, SMOKE_PY),
    ("pynenc-retrieve", "brokk-pynenc", "py", ["pynenc-broker", "retrieve", "--broker", "brokk-memory"], PY, SMOKE_PY),
    ("pynenc-sqlite-route", "pynenc-sqlite", "py", ["pynenc-broker", "route", "--broker", "sqlite"], SQL_PY, SMOKE_SQL_PY),
    ("pynenc-sqlite-route", "brokk-pynenc", "py", ["pynenc-broker", "route", "--broker", "brokk-sqlite"], SQL_PY, SMOKE_SQL_PY),
    ("pynenc-sqlite-retrieve", "pynenc-sqlite", "py", ["pynenc-broker", "retrieve", "--broker", "sqlite"], SQL_PY, SMOKE_SQL_PY),
    ("pynenc-sqlite-retrieve", "brokk-pynenc", "py", ["pynenc-broker", "retrieve", "--broker", "brokk-sqlite"], SQL_PY, SMOKE_SQL_PY),
    # The bare one-row commit loop the plugin's route and retrieve are held to (issue 21): one
    # thread, one INSERT a transaction; and brokk's C ABI doing the same, one publish a call.
    ("sqlite-publish-threads1", "rusqlite", "sqlite", ["publish-threads", "--threads", "1"], SQL_PUB, SMOKE_SQL),
    ("sqlite-publish-threads1", "brokk-c", "brokk", ["publish-threads", "--threads", "1"] + SQL, SQL_PUB, SMOKE_SQL),
    # SQLite, a fresh file per run, synchronous=normal everywhere.
    ("sqlite-publish-threads4", "brokk-c", "brokk", ["publish-threads", "--threads", "4"] + SQL, SQL_PUB, SMOKE_SQL),
    ("sqlite-publish-threads4", "rusqlite", "sqlite", ["publish-threads", "--threads", "4"], SQL_PUB, SMOKE_SQL),
    ("sqlite-publish-threads4", "pynenc-sqlite", "py", ["pynenc", "sqlite-route", "--threads", "4"], SQL_PY, SMOKE_SQL_PY),
    ("sqlite-pull", "brokk-c", "brokk", ["pull"] + SQL, SQL_PULL, SMOKE_SQL),
    ("sqlite-pull", "rusqlite", "sqlite", ["pull"], SQL_PULL, SMOKE_SQL),
    ("sqlite-pull", "pynenc-sqlite", "py", ["pynenc", "sqlite-retrieve"], SQL_PY, SMOKE_SQL_PY),
    ("sqlite-pull-batch64", "brokk-c", "brokk", ["pull-batch", "--batch", "64"] + SQL,
     {"messages": 400_000, "warmup": 10_000, "seconds": 3}, SMOKE_SQL),
    ("sqlite-batch10000", "brokk-c", "brokk", ["batch", "--batch", "10000"] + SQL,
     {"messages": 1_000_000, "warmup": 20_000, "seconds": 3}, {"messages": 20_000, "warmup": 10_000, "seconds": 1}),
] + [
    (f"sqlite-pull-backlog-{label}", impl, program, ["pull-backlog"] + (SQL if program == "brokk" else []),
     {**SQL_BACKLOG, "backlog": n}, {**SMOKE_BACKLOG, "backlog": smoke_n})
    for label, n, smoke_n in BACKLOGS
    for impl, program in [("brokk-c", "brokk"), ("rusqlite", "sqlite")]
] + [
    # N processes on one file, each its own broker (brokk_bench procs-*, --threads = processes),
    # one message a call: the aggregate against the same program with one process.
    (f"sqlite-procs{n}-{what}", "brokk-c", "brokk", [f"procs-{what}", "--threads", str(n)] + SQL, SQL_PROCS, SMOKE_SQL)
    for what in ["publish", "pull"]
    for n in [1, 4]
] + [
    # Redis. Publish one message a call from N threads against redis-benchmark's unpipelined
    # XADD from N clients; batch publish against pipelined XADD (one client, 64 in flight).
    row
    for n in REDIS_CLIENTS
    for row in [
        (f"redis-publish-threads{n}", "brokk-c", "brokk", ["publish-threads", "--threads", str(n)] + RED, RED_PUB, SMOKE_RED),
        (f"redis-publish-threads{n}", "redis-benchmark", "redisbench",
         XADD + ["--clients", str(n), "--scenario", f"redis-publish-threads{n}"],
         {"messages": 100_000 * (1 + (n > 1)), "warmup": 10_000}, SMOKE_XADD),
    ]
] + [
    ("redis-batch1000", "brokk-c", "brokk", ["batch", "--batch", "1000"] + RED, RED_BATCH, SMOKE_RED_BATCH),
    ("redis-batch10000", "brokk-c", "brokk", ["batch", "--batch", "10000"] + RED, RED_BATCH,
     {"messages": 20_000, "warmup": 10_000, "seconds": 0.5}),
    ("redis-xadd-pipelined64", "redis-benchmark-pipelined", "redisbench",
     XADD + ["--clients", "1", "--pipeline", "64", "--scenario", "redis-xadd-pipelined64"],
     {"messages": 1_500_000, "warmup": 50_000}, SMOKE_XADD),
    ("redis-pull", "brokk-c", "brokk", ["pull"] + RED, RED_PULL, SMOKE_RED),
    ("redis-pull-batch64", "brokk-c", "brokk", ["pull-batch", "--batch", "64"] + RED,
     {"messages": 300_000, "warmup": 10_000, "seconds": 3}, SMOKE_RED),
    # pynenc's broker interface on the server: pynenc-redis's RedisBroker (its own venv: pynenc
    # 0.3.1) against brokk's pynenc plugin on redis:// (the main venv: pynenc 0.4.0).
    ("pynenc-redis-route", "pynenc-redis", "pyredis", ["pynenc-broker", "route", "--broker", "redis", "--redis-url", "{redis_url}"], RED_PY, SMOKE_SQL_PY),
    ("pynenc-redis-route", "brokk-pynenc", "py", ["pynenc-broker", "route", "--broker", "brokk-redis", "--redis-url", "{redis_url}"], RED_PY, SMOKE_SQL_PY),
    ("pynenc-redis-retrieve", "pynenc-redis", "pyredis", ["pynenc-broker", "retrieve", "--broker", "redis", "--redis-url", "{redis_url}"], RED_PY, SMOKE_SQL_PY),
    ("pynenc-redis-retrieve", "brokk-pynenc", "py", ["pynenc-broker", "retrieve", "--broker", "brokk-redis", "--redis-url", "{redis_url}"], RED_PY, SMOKE_SQL_PY),
] + [
    (f"redis-pull-backlog-{label}", "brokk-c", "brokk", ["pull-backlog"] + RED,
     {**SQL_BACKLOG, "backlog": n}, {**SMOKE_BACKLOG, "backlog": smoke_n})
    for label, n, smoke_n in BACKLOGS
]

# Which Python import each Python implementation needs.
PY_IMPORTS = {"brokk-py": "brokk", "tadween": "tadween_core.broker", "pynenc": "pynenc.broker.mem_broker",
              "pynenc-sqlite": "pynenc.broker.sqlite_broker", "pynenc-mem": "pynenc.broker.mem_broker",
              "brokk-pynenc": "brokk.pynenc_plugin", "pynenc-redis": "pynenc_redis.broker.redis_broker"}


class RedisServer:
    """The bench's throwaway redis-server (core/src/store/redis/test-server.sh, this process its owner: its
    watchdog kills the server within a second of this process ending, however it ends)."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.port: int | None = None
        self.failed: str | None = None
        self.rows = 0

    def start(self) -> str | None:
        """None once the server answers, else why it cannot run (the Redis rows are skipped)."""
        if self.port or self.failed:
            return self.failed
        if not shutil.which("redis-server"):
            self.failed = "redis-server is not installed (apt-get install -y redis-server)"
            return self.failed
        base = os.environ.get("BENCH_TMPDIR") or None
        self.dir = Path(tempfile.mkdtemp(prefix="brokk-bench-redis-", dir=base))
        p = subprocess.run(["sh", str(ROOT / "core/src/store/redis/test-server.sh"), "start", str(self.dir), str(os.getpid()),
                            "--save", "", "--appendonly", "no"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0 or not p.stdout.strip().isdigit():
            self.failed = f"core/src/store/redis/test-server.sh could not start redis-server: {p.stderr.strip()[-300:]}"
            shutil.rmtree(self.dir, ignore_errors=True)
            return self.failed
        self.port = int(p.stdout.strip())
        version = sh("redis-server", "--version")
        print(f"  redis-server on 127.0.0.1:{self.port} ({version.split(' sha=')[0]})", file=sys.stderr)
        return None

    def command(self, *args: str) -> bytes:
        """One command (RESP), its raw reply."""
        req = f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as c:
            c.sendall(req)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply

    def fresh(self, rnd: int) -> dict:
        """Empties the server for the next row; its placeholders, with a prefix of its own."""
        self.rows += 1
        if not self.command("FLUSHALL").startswith(b"+OK"):
            raise RuntimeError("FLUSHALL failed on the bench redis-server")
        return {"{redis_url}": f"redis://127.0.0.1:{self.port}/0?prefix=bench-r{rnd}-{self.rows}",
                "{redis_port}": str(self.port)}

    def stop(self) -> None:
        if self.dir:
            subprocess.run(["sh", str(ROOT / "core/src/store/redis/test-server.sh"), "stop", str(self.dir)],
                           capture_output=True, timeout=60)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = self.port = None


def sh(*cmd: str, cwd: Path = ROOT) -> str:
    """Output of a command, or "" if it cannot run."""
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def environment(python: str) -> dict:
    cpu = re.search(r"model name\s*:\s*(.*)", read("/proc/cpuinfo"))
    mem = re.search(r"MemTotal:\s*(\d+) kB", read("/proc/meminfo"))
    version = re.search(r'^version\s*=\s*"([^"]+)"', read(str(ROOT / "Cargo.toml")), re.M)
    dirty = sh("git", "status", "--porcelain", "--", "src", "include", "Cargo.toml", "Cargo.lock")
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu.group(1) if cpu else platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "loadavg_start": read("/proc/loadavg").split()[:3],
        "brokk_version": version.group(1) if version else None,
        "git_commit": sh("git", "rev-parse", "HEAD"),
        "git_core_dirty": bool(dirty),
        "rustc": sh("rustc", "--version"),
        "cc": sh(os.environ.get("CC", "cc"), "--version").splitlines()[0:1],
        "go": sh("go", "version"),
        "libzmq": sh("pkg-config", "--modversion", "libzmq"),
        "python_bench": sh(python, "-c", "import platform; print(platform.python_version())"),
        "python_runner": platform.python_version(),
        "profile": "cargo --release (opt-level 3, debug = 1, panic = unwind)",
    }


def python_can_import(python: str, module: str, env: dict) -> str | None:
    """None if `module` imports under `python`, else the reason."""
    if not python:
        return "no Python interpreter"
    p = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, env=env)
    if p.returncode == 0:
        return None
    last = (p.stderr.strip().splitlines() or ["import failed"])[-1]
    return f"`import {module}` fails under {python}: {last}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; only checks that everything runs")
    ap.add_argument("--bin", default=str(ROOT / "build/bench/bin"), help="where bench.mk put the programs")
    ap.add_argument("--python", default="", help="interpreter for the Python programs (bench venv)")
    ap.add_argument("--out", default="", help="results file (default build/bench/results.json)")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "1")),
                    help="runs of each scenario; the median run (by rate) is kept")
    ap.add_argument("--only", default="", help="run only scenario/impl names containing this")
    ap.add_argument("--report", action="store_true", help="also write the markdown table and chart")
    o = ap.parse_args()

    bindir = Path(o.bin)
    out = Path(o.out).resolve() if o.out else ROOT / ("build/bench/smoke/results.json" if o.smoke else "build/bench/results.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out_shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    skipdir = ROOT / "build/bench/skip"
    python = o.python or (str(ROOT / "build/bench/venv/bin/python") if (ROOT / "build/bench/venv/bin/python").exists()
                          else shutil.which("python3") or "")
    # pynenc-redis 0.3.0 needs pynenc 0.3.1: a venv of its own (bench/venv.sh).
    python_redis = str(ROOT / "build/bench/venv-redis/bin/python")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT / "bindings/python"), env.get("PYTHONPATH", "")] if p)

    programs = {
        "brokk": [str(bindir / "brokk_bench")],
        "zmq": [str(bindir / "zmq_bench")],
        "channel": [str(bindir / "channel_bench")],
        "go": [str(bindir / "gobench")],
        "sqlite": [str(bindir / "sqlite_bench")],
        "py": [python, str(HERE / "python/pybench.py")],
        "redisbench": [sys.executable, str(HERE / "python/redisbench.py")],
        "pyredis": [python_redis, str(HERE / "python/pybench.py")],
    }

    def unavailable(program: str, impl: str, url: str | None) -> str | None:
        reason_file = skipdir / impl
        if reason_file.exists():
            return reason_file.read_text().strip()
        if program == "py":
            return python_can_import(python, PY_IMPORTS[impl], env)
        if program == "pyredis":
            if not Path(python_redis).exists():
                return "no build/bench/venv-redis (make bench-venv: pynenc-redis 0.3.0 with pynenc 0.3.1 from PyPI)"
            return python_can_import(python_redis, PY_IMPORTS[impl], env)
        if program == "redisbench":
            return None if shutil.which("redis-benchmark") else "redis-benchmark is not installed (apt-get install -y redis-tools)"
        exe = Path(programs[program][0])
        if not exe.exists():
            return f"{exe.relative_to(ROOT) if exe.is_relative_to(ROOT) else exe} was not built"
        if url:
            # Does the library take this backend? brokk_bench probe exits 3 if brokk_broker_new
            # refuses the URL (say, a library built before the SQLite store).
            p = subprocess.run(programs[program] + ["probe", "--url", url], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
            if p.returncode == 3:
                return p.stdout.strip() or f"libbrokk refuses {url}"
        return None

    results = {
        "schema": 1,
        "mode": "smoke" if o.smoke else "full",
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(python),
        "records": [],
        "skipped": [],
        "failed": [],
    }
    checked: dict[str, str | None] = {}
    started = time.monotonic()
    print(f"bench: {'smoke' if o.smoke else 'full'} run, {o.repeat} round(s); results in {out_shown}",
          file=sys.stderr)
    runs = [r for r in RUNS if o.only in f"{r[0]}/{r[1]}"]
    collected: dict[tuple[str, str], list[dict]] = {}
    redis = RedisServer()
    # SIGTERM ends the run as Ctrl-C does, through the finally below that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run_all(o, runs, programs, unavailable, checked, results, collected, env, redis)
    finally:
        redis.stop()
    finish(results, collected, started, out, out_shown, o)
    return 1 if results["failed"] else 0


def run_all(o, runs, programs, unavailable, checked, results, collected, env, redis) -> None:
    for rnd in range(o.repeat):
        for scenario, impl, program, args, full, smoke in runs:
            subst: dict[str, str] = {}
            if any("{redis_" in a for a in args):
                reason = redis.start()
                if reason:
                    if rnd == 0:
                        print(f"  SKIP {scenario}/{impl}: {reason}", file=sys.stderr)
                        results["skipped"].append({"scenario": scenario, "impl": impl, "reason": reason})
                    continue
                subst = redis.fresh(rnd)
            # brokk on another backend than memory:// is checked apart: the library may lack it.
            url = args[args.index("--url") + 1] if program == "brokk" and "--url" in args else None
            key = f"{impl} on {url}" if url else impl
            args = [subst.get(a, a) for a in args]
            if url:
                url = subst.get(url, url)
            if key not in checked:
                checked[key] = unavailable(program, impl, url)
                if checked[key]:
                    print(f"  SKIP {key}: {checked[key]}", file=sys.stderr)
            if checked[key]:
                if rnd == 0:
                    results["skipped"].append({"scenario": scenario, "impl": impl, "reason": checked[key],
                                               **({"url": url} if url else {})})
                continue
            sizes = smoke if o.smoke else full
            argv = programs[program] + args
            for k, v in sizes.items():
                argv += [f"--{k}", str(v)]
            load = read("/proc/loadavg").split()[:1]
            t = time.monotonic()
            try:
                p = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                   timeout=60 if o.smoke else 240)
                rc, stdout, stderr = p.returncode, p.stdout, p.stderr
            except subprocess.TimeoutExpired as e:
                rc, stdout, stderr = -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timed out"
            wall = time.monotonic() - t
            sys.stderr.write("".join(line + "\n" for line in stderr.splitlines() if line.startswith("  ")))
            recs = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"scenario":')]
            if rc != 0 or not recs:
                tail = "\n".join(stderr.strip().splitlines()[-15:])
                print(f"  FAIL {scenario}/{impl} (exit {rc}):\n{tail}", file=sys.stderr)
                results["failed"].append({"scenario": scenario, "impl": impl, "exit": rc,
                                          "argv": argv, "stderr_tail": tail})
                continue
            for rec in recs:
                rec["argv"] = [Path(a).name if i < len(programs[program]) else a for i, a in enumerate(argv)]
                rec["wall_seconds"] = round(wall, 3)
                rec["round"] = rnd
                rec["loadavg_1min_before"] = float(load[0]) if load else None
                if subst:
                    rec.setdefault("store", "redis")
                    rec["redis_server"] = sh("redis-server", "--version").split(" sha=")[0]
                collected.setdefault((rec["scenario"], rec["impl"]), []).append(rec)


def finish(results, collected, started, out, out_shown, o) -> None:
    for recs in collected.values():
        if len(recs) == 1:
            results["records"].append(recs[0])
            continue
        # The median run: by rate, by p99 for latency runs (their rate is fixed), by bytes per
        # message for memory runs. The other rounds' figures are kept in "rounds".
        if "overhead_per_msg" in recs[0]:
            key = lambda r: r["overhead_per_msg"]  # noqa: E731
        elif "latency_us" in recs[0]:
            key = lambda r: r["latency_us"]["p99"]  # noqa: E731
        else:
            key = lambda r: r["rate"]  # noqa: E731
        ordered = sorted(recs, key=key)
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["rounds"] = [round(key(r), 1) for r in recs]
        median["spread"] = round((key(ordered[-1]) - key(ordered[0])) / max(abs(statistics.median(map(key, recs))), 1e-9), 3)
        results["records"].append(median)

    results["environment"]["loadavg_end"] = read("/proc/loadavg").split()[:3]
    results["environment"]["total_seconds"] = round(time.monotonic() - started, 1)
    results.update(report.evaluate(results))
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: {len(results['records'])} results, {len(results['skipped'])} skipped, "
          f"{len(results['failed'])} failed in {results['environment']['total_seconds']} s -> {out_shown}",
          file=sys.stderr)
    if o.report:
        report.write_all(results, smoke=o.smoke)


if __name__ == "__main__":
    sys.exit(main())
