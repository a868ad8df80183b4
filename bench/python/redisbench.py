"""The raw Redis peer: redis-benchmark (Debian's redis-tools) doing XADD, the limit of what one
Redis server takes from N clients, unpipelined or pipelined.

    redisbench.py xadd --port P --clients C [--pipeline K] --messages N --warmup W --seconds S

runs `redis-benchmark -p P -c C -P K -n N --csv XADD <key> * p <payload>`, after an untimed
warm-up of W requests, and prints one JSON record as the other bench programs do. The payload is
brokk's bench payload ({"i": n, "s": "<32 chars>"}, 54 bytes for a 6-digit n), one field per
entry; each run XADDs to its own stream key. redis-benchmark has no time bound: --messages sets
the requests (run.py sizes them to a few seconds); --seconds is recorded only.

Standard library only (run by the runner's interpreter).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

PAYLOAD = '{"i": 123456, "s": "abcdefghijklmnopqrstuvwxyz012345"}'
# The last seven CSV fields; the first one (the command) holds the payload's unescaped quotes.
# A run shorter than its clock's millisecond reports "inf" requests/s (smoke sizes).
ROW = re.compile(r'"([\d.]+|inf)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)"\s*$')


def requests(n: int, pipeline: int) -> int:
    """n rounded up to whole pipelines (redis-benchmark aborts when n is below one)."""
    return max(1, -(-n // pipeline) * pipeline)


def run(port: int, clients: int, pipeline: int, n: int, key: str) -> dict:
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-P", str(pipeline),
            "-n", str(n), "--csv", "XADD", key, "*", "p", PAYLOAD]
    t = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"redis-benchmark exited {p.returncode}: {p.stderr.strip()[-500:]}")
    for line in p.stdout.splitlines():
        m = ROW.search(line)
        if m and line.startswith('"XADD'):
            rps, avg, lo, p50, p95, p99, hi = map(float, m.groups())
            if not math.isfinite(rps):
                rps = n / wall  # too short for its clock: the process's wall time instead
            return {"rps": rps, "avg_ms": avg, "p50_ms": p50, "p99_ms": p99, "max_ms": hi, "wall": wall, "argv": argv}
    raise SystemExit(f"no result in redis-benchmark's output: {p.stdout.strip()[-500:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["xadd"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=0.0, help="recorded only: --messages bounds the run")
    ap.add_argument("--scenario", required=True, help="the record's scenario name")
    o = ap.parse_args()
    if not shutil.which("redis-benchmark"):
        raise SystemExit("redis-benchmark is not installed (apt-get install redis-tools)")
    key = f"bench-xadd-{os.getpid()}"
    if o.warmup:
        run(o.port, o.clients, o.pipeline, requests(o.warmup, o.pipeline), key + "-warmup")
    o.messages = requests(o.messages, o.pipeline)
    r = run(o.port, o.clients, o.pipeline, o.messages, key)
    version = subprocess.run(["redis-benchmark", "--version"], capture_output=True, text=True).stdout.strip()
    impl = "redis-benchmark-pipelined" if o.pipeline > 1 else "redis-benchmark"
    record = {
        "scenario": o.scenario,
        "impl": impl,
        "unit": "messages",
        "messages": o.messages,
        "deliveries": 0,
        # redis-benchmark's own rate (requests over its measured time); "seconds" follows from it.
        "seconds": o.messages / r["rps"],
        "rate": r["rps"],
        "clients": o.clients,
        "pipeline": o.pipeline,
        "latency_ms": {"avg": r["avg_ms"], "p50": r["p50_ms"], "p99": r["p99_ms"], "max": r["max_ms"]},
        "payload_bytes": len(PAYLOAD),
        "store": "redis",
        "note": f"redis-benchmark XADD, {o.clients} client{'s' if o.clients > 1 else ''}"
        + (f", pipeline {o.pipeline}" if o.pipeline > 1 else ", unpipelined"),
        "version": version,
    }
    print(json.dumps(record), flush=True)
    print(f"  {o.scenario:<10} {impl:<16} {r['rps']:12.0f} messages/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
