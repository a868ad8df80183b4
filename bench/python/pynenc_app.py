"""A real pynenc 0.4.0 application on SQLite, run by pynenc's MultiThreadRunner, with its queues
in brokk (``BrokkBroker`` on a ``sqlite://`` file) or in pynenc's own ``SQLiteBroker``.

    build/python-venv-pynenc/bin/python bench/python/pynenc_app.py            # both, 3 rounds, 500 tasks
    build/python-venv-pynenc/bin/python bench/python/pynenc_app.py --broker brokk --tasks 200 --rounds 1

Everything else is pynenc's SQLite setup, as its users have it: the state backend, orchestrator,
client data store and trigger on one pynenc SQLite file in a fresh temporary directory per run
(``PynencBuilder().sqlite(path)``), the broker either pynenc's SQLiteBroker on that file or
BrokkBroker on ``sqlite://<dir>/brokk.db`` (``.brokk_broker(url)``), and the runner pynenc's
MultiThreadRunner (``.multi_thread_runner(...)``: worker processes forked by multiprocessing, each
a ThreadRunner).

One run (a "round" of one broker) is three processes deep:

  this script (the bench)            -> a driver subprocess, in a process group of its own
  driver: builds the app, submits N add(i, i) tasks (timed: "submit"), starts the runner
          subprocess (the `pynenc runner` a user would start), waits until every invocation is
          final (timed from the runner's start: "run"), checks the results, stops the runner
          (SIGTERM, as pynenc's CLI is stopped), prints one JSON line
  runner: app.runner.run() (MultiThreadRunner: a multiprocessing Manager process, and
          ThreadRunner worker processes forked from it)

Rounds alternate the brokers (brokk, pynenc, brokk, pynenc, ...) so that a slow patch of the
machine hits both; the table shows each round and the median per broker, and the ratio
brokk/pynenc of the medians ("run" is the wall time that matters: from the runner's start to the
last result). After each run the bench kills the driver's whole process group (SIGKILL) and says
if anything of it was still alive when the driver had finished (a runner process that did not
stop); at exit, or on Ctrl-C, it kills every group it started. The runner's log (stderr/stdout of
the runner and its workers) is scanned for Rust panics, Python tracebacks and pynenc errors, which
are reported per run.

From the history pynenc keeps in its state backend, each run also reports when the first task
started running (start-up: process start, imports, app and broker open, fork of the workers) and
the span from the first to the last task's end (throughput once running).

--profile DIR (with --broker brokk or pynenc) runs the runner's processes under cProfile (the
runner's main process and each forked worker write DIR/<role>-<pid>.prof); --keep keeps the
temporary directories (their paths are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
APP_ID = "benchapp"


# ---- the app -------------------------------------------------------------------------------------


def add(x: int, y: int) -> int:
    return x + y


def build_app(broker: str, workdir: Path, args: argparse.Namespace):
    """The app, the same in the driver and in the runner (both call this with the same arguments)."""
    from pynenc import PynencBuilder

    builder = (
        PynencBuilder()
        .app_id(APP_ID)
        .sqlite(sqlite_db_path=str(workdir / "pynenc.db"))
        .multi_thread_runner(min_threads=1, max_threads=args.max_threads, enforce_max_processes=args.enforce_max)
        .logging_level(args.log_level)
    )
    if args.loop_sleep is not None:
        builder = builder.runner_tuning(
            runner_loop_sleep_time_sec=args.loop_sleep,
            invocation_wait_results_sleep_time_sec=args.loop_sleep,
        )
    if args.max_processes:
        builder = builder.custom_config(max_processes=args.max_processes)
    if broker == "brokk":
        url = f"sqlite://{workdir / 'brokk.db'}"
        if args.brokk_query:
            url += "?" + args.brokk_query
        builder = builder.brokk_broker(url)
    elif broker != "pynenc":
        raise SystemExit(f"unknown broker {broker!r}")
    app = builder.build()
    # A task's function must live in an importable module (not __main__): this file, imported
    # as `pynenc_app` (its directory is sys.path[0] in every process of a run).
    import pynenc_app

    task = app.task(pynenc_app.add)
    return app, task


# ---- runner: the `pynenc runner` process -----------------------------------------------------------


def _profile_at_exit(role: str, outdir: Path):
    import atexit
    import cProfile

    prof = cProfile.Profile()

    def dump() -> None:
        prof.disable()
        prof.dump_stats(str(outdir / f"{role}-{os.getpid()}.prof"))

    prof.enable()
    return prof, dump


def _trace_calls(app) -> None:
    """Times the broker's retrieve and count and the ThreadRunner loop iteration in every process
    of the runner; each process prints a summary line ("TRACE ...") to the log when it stops."""
    import atexit
    import threading
    from collections import defaultdict

    import pynenc.runner.thread_runner as tr

    times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                dt = time.perf_counter() - t
                with lock:
                    times[name].append(dt)
        return wrapper

    broker = app.broker
    broker.retrieve_invocation = timed("retrieve", broker.retrieve_invocation)
    broker.count_invocations = timed("count", broker.count_invocations)
    tr.ThreadRunner.runner_loop_iteration = timed("loop_iteration", tr.ThreadRunner.runner_loop_iteration)

    def report() -> None:
        parts = []
        for name, ts in sorted(times.items()):
            ts = sorted(ts)
            q = lambda f: 1000 * ts[min(len(ts) - 1, int(f * len(ts)))]
            parts.append(f"{name}: n={len(ts)} mean={1000 * sum(ts) / len(ts):.2f}ms p50={q(.5):.2f} "
                         f"p99={q(.99):.2f} max={1000 * ts[-1]:.2f}")
        print(f"TRACE pid {os.getpid()}: " + "; ".join(parts), flush=True)

    import pynenc.runner.multi_thread_runner as mtr

    original = mtr.thread_runner_process_main

    def traced(*a, **kw):
        times.clear()
        try:
            original(*a, **kw)
        finally:
            report()

    mtr.thread_runner_process_main = traced
    atexit.register(report)


def runner_main(args: argparse.Namespace) -> None:
    workdir = Path(args.dir)
    if args.core:
        # A worker that crashes leaves a core in the run's directory (its cwd), if the
        # system's core_pattern is a plain file name.
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    app, _ = build_app(args.broker, workdir, args)
    if args.trace:
        _trace_calls(app)
    if args.profile:
        outdir = Path(args.profile)
        outdir.mkdir(parents=True, exist_ok=True)
        # Each forked worker profiles itself from its start (thread_runner_process_main), and
        # dumps when it stops (SIGTERM -> KeyboardInterrupt -> finally -> _on_stop).
        import pynenc.runner.multi_thread_runner as mtr

        original = mtr.thread_runner_process_main

        def profiled(*a, **kw):
            parent.disable()  # the runner's profiler, which the fork copied active
            prof, dump = _profile_at_exit("worker", outdir)
            try:
                original(*a, **kw)
            finally:
                dump()

        mtr.thread_runner_process_main = profiled
        parent, dump = _profile_at_exit("runner", outdir)
        try:
            app.runner.run()
        finally:
            dump()
        return
    app.runner.run()


# ---- driver: one run ------------------------------------------------------------------------------------


def _history_span(app, ids) -> tuple[float | None, float | None, float | None, dict]:
    """(first RUNNING, last final, first final) timestamps (epoch seconds) from pynenc's history,
    and per worker (runner context id): [tasks run, first RUNNING, last RUNNING]."""
    first_run = last_end = first_end = None
    workers: dict[str, list] = {}
    for iid in ids:
        for h in app.state_backend.get_history(iid):
            status = h.status_record.status
            ts = h.timestamp.timestamp()
            if status.name == "RUNNING":
                first_run = ts if first_run is None else min(first_run, ts)
                w = workers.setdefault(str(h.runner_context_id)[:8], [0, ts, ts])
                w[0] += 1
                w[1] = min(w[1], ts)
                w[2] = max(w[2], ts)
            elif status.is_final():
                last_end = ts if last_end is None else max(last_end, ts)
                first_end = ts if first_end is None else min(first_end, ts)
    return first_run, last_end, first_end, workers


def driver_main(args: argparse.Namespace) -> None:
    workdir = Path(args.dir)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    app, task = build_app(args.broker, workdir, args)
    logging.getLogger("pynenc").setLevel(logging.ERROR)
    n = args.tasks

    t0 = time.perf_counter()
    invocations = [task(i, i) for i in range(n)]
    t_submit = time.perf_counter() - t0
    ids = [inv.invocation_id for inv in invocations]

    log = open(workdir / "runner.log", "wb")
    cmd = [sys.executable, str(HERE), "--role", "runner", *args.passthrough]
    # A worker that dies of a signal (abort, segfault) says where, in the log.
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1", RUST_BACKTRACE="1")
    wall0 = time.time()
    t1 = time.perf_counter()
    runner = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)
    print(json.dumps({"runner_pid": runner.pid}), flush=True)
    status_of = app.orchestrator.get_invocation_status
    timed_out = False
    deadline = t1 + args.timeout
    pending = list(ids)
    while pending:
        # In submission order: tasks finish roughly FIFO, so this asks about one id at a time.
        if status_of(pending[-1]).is_final():
            pending = [i for i in pending if not status_of(i).is_final()]
            continue
        if status_of(pending[0]).is_final():
            pending.pop(0)
            continue
        if runner.poll() is not None or time.perf_counter() > deadline:
            timed_out = True
            break
        time.sleep(0.005)
    t_run = time.perf_counter() - t1

    # Stop the runner as its CLI is stopped (SIGTERM): it stops its workers and manager.
    t2 = time.perf_counter()
    runner_rc = runner.poll()
    if runner_rc is None:
        runner.send_signal(signal.SIGTERM)
        try:
            runner_rc = runner.wait(args.stop_timeout)
        except subprocess.TimeoutExpired:
            runner_rc = "did not stop"
    t_stop = time.perf_counter() - t2

    done = len(ids) - len(pending)
    wrong = 0
    if not timed_out:
        for i, inv in enumerate(invocations):
            if inv.result != 2 * i:
                wrong += 1
    first_run, last_end, first_end, workers = _history_span(app, ids)
    print(
        json.dumps(
            {
                "broker": args.broker,
                "tasks": n,
                "done": done,
                "wrong": wrong,
                "timed_out": timed_out,
                "submit_s": t_submit,
                "run_s": t_run,
                "stop_s": t_stop,
                "runner_rc": runner_rc,
                "startup_s": None if first_run is None else first_run - wall0,
                "first_result_s": None if first_end is None else first_end - wall0,
                "span_s": None if first_run is None or last_end is None else last_end - first_run,
                # Per worker: tasks it ran, its first and last task's start (s after the runner's start).
                "workers": [[n, a - wall0, b - wall0] for n, a, b in sorted(workers.values(), key=lambda w: w[1])],
            }
        ),
        flush=True,
    )


# ---- bench ---------------------------------------------------------------------------------------------


_groups: set[int] = set()


def _kill_group(pgid: int) -> list[str]:
    """SIGKILLs process group `pgid`; returns what of it was alive before (pid and command)."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                alive.append(f"{proc.name}: {cmdline.strip()[:120]}")
        except (OSError, ValueError):
            continue
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _groups.discard(pgid)
    return alive


def _kill_all(*_: object) -> None:
    for pgid in list(_groups):
        _kill_group(pgid)
    if _:
        raise SystemExit(130)


PATTERNS = {
    "rust panic": b"panicked at",
    "BrokkPanic": b"BrokkPanic",
    "traceback": b"Traceback (most recent call last)",
    "ERROR": b"ERROR",
    "CRITICAL": b"CRITICAL",
    "did not exit": b"did not exit",
    "database is locked": b"database is locked",
    "fatal signal": b"Fatal Python error",
    "dead worker": b"DEAD pid:",
}


def scan_log(path: Path) -> dict[str, int]:
    try:
        data = path.read_bytes()
    except OSError:
        return {"no log": 1}
    return {name: data.count(pat) for name, pat in PATTERNS.items() if pat in data}


def first_problem_lines(path: Path, limit: int = 6) -> list[str]:
    out = []
    try:
        lines = path.read_bytes().decode(errors="replace").splitlines()
    except OSError:
        return out
    for i, line in enumerate(lines):
        if any(p.decode() in line for p in PATTERNS.values()):
            out.append(line[:300])
            if "Traceback" in line:
                out.extend(l[:300] for l in lines[i + 1 : i + 12])
            if len(out) >= limit:
                break
    return out


def run_once(broker: str, args: argparse.Namespace, passthrough: list[str]) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"pynenc-bench-{broker}-"))
    forwarded = [*passthrough, "--broker", broker, "--dir", str(workdir)]
    cmd = [sys.executable, str(HERE), "--role", "driver", *forwarded, "--passthrough", json.dumps(forwarded)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _groups.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=args.timeout + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    leftovers = _kill_group(proc.pid)
    result: dict = {"broker": broker, "dir": str(workdir)}
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    if "run_s" not in result:
        result["error"] = (err.decode(errors="replace")[-2000:] or f"driver exit {proc.returncode}")
    result["leftovers"] = leftovers
    log = workdir / "runner.log"
    result["log_problems"] = scan_log(log)
    result["log_lines"] = first_problem_lines(log)
    try:
        result["trace"] = [l for l in log.read_text(errors="replace").splitlines() if l.startswith("TRACE ")]
    except OSError:
        pass
    if not args.keep:
        import shutil

        # Keep the directory of a run with problems, to be read.
        if not result["log_problems"] and not leftovers and "error" not in result:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def fmt(v, width=8, digits=2) -> str:
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        return f"{v:{width}.{digits}f}"
    return str(v).rjust(width)


def bench_main(args: argparse.Namespace, passthrough: list[str]) -> int:
    signal.signal(signal.SIGINT, _kill_all)
    signal.signal(signal.SIGTERM, _kill_all)
    brokers = ["brokk", "pynenc"] if args.broker == "both" else [args.broker]
    results: list[dict] = []
    status = 0
    print(
        f"pynenc MultiThreadRunner on SQLite: {args.tasks} tasks add(i, i), {args.rounds} round(s), "
        f"max_threads={args.max_threads}, loop sleep={args.loop_sleep if args.loop_sleep is not None else 'pynenc default'}, "
        f"max_processes={args.max_processes or 'cpu_count'}, enforce_max_processes={args.enforce_max}",
        flush=True,
    )
    header = f"{'round':>5} {'broker':>7} {'submit s':>8} {'run s':>8} {'startup':>8} {'1st res':>8} {'span s':>8} {'stop s':>8}  done  notes"
    print(header, flush=True)
    try:
        for r in range(args.rounds):
            order = brokers if r % 2 == 0 else brokers[::-1]
            for broker in order:
                res = run_once(broker, args, passthrough)
                res["round"] = r + 1
                results.append(res)
                notes = []
                if res.get("error"):
                    notes.append("ERROR: " + res["error"].strip().splitlines()[-1][:100])
                    status = 1
                if res.get("timed_out"):
                    notes.append("TIMED OUT")
                    status = 1
                if res.get("wrong"):
                    notes.append(f"{res['wrong']} wrong results")
                    status = 1
                if res.get("runner_rc") not in (0, None):
                    notes.append(f"runner exit {res['runner_rc']}")
                if res["log_problems"]:
                    notes.append("log: " + ", ".join(f"{k} x{v}" for k, v in res["log_problems"].items()))
                if res["leftovers"]:
                    notes.append(f"{len(res['leftovers'])} process(es) left after the driver (killed)")
                print(
                    f"{r + 1:>5} {broker:>7} {fmt(res.get('submit_s'))} {fmt(res.get('run_s'))} "
                    f"{fmt(res.get('startup_s'))} {fmt(res.get('first_result_s'))} {fmt(res.get('span_s'))} "
                    f"{fmt(res.get('stop_s'))} {fmt(res.get('done'), 5)}  {'; '.join(notes)}",
                    flush=True,
                )
                if res.get("workers"):
                    print(f"{'':>14}| workers (tasks, first..last start): "
                          + ", ".join(f"{n} {a:.2f}..{b:.2f}s" for n, a, b in res["workers"]), flush=True)
                for line in res.get("trace", []):
                    print(f"{'':>14}| {line}", flush=True)
                for line in res["log_lines"]:
                    print(f"{'':>14}| {line}", flush=True)
                for line in res["leftovers"]:
                    print(f"{'':>14}| left: {line}", flush=True)
                if args.keep or res["log_problems"] or res["leftovers"]:
                    print(f"{'':>14}| dir: {res['dir']}", flush=True)
    finally:
        _kill_all()
    print()
    medians = {}
    for broker in brokers:
        ok = [r for r in results if r["broker"] == broker and "run_s" in r and not r.get("timed_out")]
        if not ok:
            continue
        med = {k: statistics.median(r[k] for r in ok if r.get(k) is not None) if any(r.get(k) is not None for r in ok) else None
               for k in ("submit_s", "run_s", "startup_s", "first_result_s", "span_s", "stop_s")}
        medians[broker] = med
        print(
            f"{'median':>5} {broker:>7} {fmt(med['submit_s'])} {fmt(med['run_s'])} {fmt(med['startup_s'])} "
            f"{fmt(med['first_result_s'])} {fmt(med['span_s'])} {fmt(med['stop_s'])}  ({len(ok)} rounds)"
        )
    if "brokk" in medians and "pynenc" in medians:
        b, p = medians["brokk"], medians["pynenc"]
        print(f"\nratio brokk/pynenc: run {b['run_s'] / p['run_s']:.2f}, submit {b['submit_s'] / p['submit_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return status


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("bench", "driver", "runner"), default="bench", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--passthrough", type=json.loads, default=[], help=argparse.SUPPRESS)
    p.add_argument("--broker", choices=("both", "brokk", "pynenc"), default="both")
    p.add_argument("--tasks", type=int, default=500, help="tasks per run (default 500)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per broker (default 3; medians)")
    p.add_argument("--max-threads", type=int, default=1,
                   help="threads per worker process (MultiThreadRunner's max_threads; default 1, pynenc's)")
    p.add_argument("--max-processes", type=int, default=0, help="worker processes (default: cpu_count, pynenc's)")
    p.add_argument("--enforce-max", action="store_true",
                   help="start max_processes workers at once (enforce_max_processes); default: scale up on queued work")
    p.add_argument("--loop-sleep", type=float, default=None,
                   help="runner_loop_sleep_time_sec (default: pynenc's own, 0.1 s)")
    p.add_argument("--brokk-query", default="", help="query string of the brokk sqlite:// URL (e.g. lease_ms=1000)")
    p.add_argument("--log-level", default="warning", help="pynenc log level in the runner (default warning)")
    p.add_argument("--timeout", type=float, default=120, help="seconds a run may take (default 120)")
    p.add_argument("--stop-timeout", type=float, default=20, help="seconds the runner gets to stop on SIGTERM")
    p.add_argument("--profile", help="cProfile the runner and workers into this directory (one broker)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    p.add_argument("--trace", action="store_true",
                   help="time retrieve, count and each loop iteration in each runner process (TRACE lines, shown per run)")
    p.add_argument("--core", action="store_true", help="let crashed runner processes dump core in the run's directory")
    p.add_argument("--json", help="write every run's numbers to this file")
    args = p.parse_args(argv)
    if args.profile and args.broker == "both":
        p.error("--profile needs --broker brokk or --broker pynenc")
    # What the bench forwards to its driver and runner: everything but role, broker, dir, rounds.
    skip = {"--role", "--broker", "--dir", "--rounds", "--passthrough", "--keep", "--json"}
    passthrough: list[str] = []
    it = iter(argv)
    for a in it:
        key = a.split("=", 1)[0]
        takes_value = key not in ("--enforce-max", "--keep", "--core", "--trace") and "=" not in a
        if key in skip:
            if takes_value:
                next(it, None)
            continue
        passthrough.append(a)
        if takes_value:
            passthrough.append(next(it, ""))
    if args.profile:
        args.profile = str(Path(args.profile).resolve())
        passthrough = [args.profile if i and passthrough[i - 1] == "--profile" else x for i, x in enumerate(passthrough)]
        passthrough = [f"--profile={args.profile}" if x.startswith("--profile=") else x for x in passthrough]
    return args, passthrough


def main() -> int:
    args, passthrough = parse(sys.argv[1:])
    if args.role == "runner":
        runner_main(args)
        return 0
    if args.role == "driver":
        args.passthrough = args.passthrough or []
        driver_main(args)
        return 0
    return bench_main(args, passthrough)


if __name__ == "__main__":
    sys.exit(main())
