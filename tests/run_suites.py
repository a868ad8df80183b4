#!/usr/bin/env python3
"""Runs brokk's test suites one after another, each even when an earlier one failed.

`make test` calls this. Every suite is its own make target (make test-c, ...), run from the
repository's root with its output (stdout and stderr together) shown live and teed to
build/test-logs/SUITE.log. Its counts are then read from that output, the way its own runner
prints them (see the parse_* functions). At the end: one table (suite, passed, failed, skipped,
time in seconds, status) and, as the very last line, the total over every suite:

    N passed, N failed, N skipped

The table and that line are also written to build/test-logs/summary.txt. Exits 1 if anything
failed, 0 otherwise (130 or 143 when interrupted, 2 on a bad argument).

A suite whose command failed counts at least 1 failed, even if its output had no counts or
counted no failure. One whose output has no counts at all counts as 1 passed or 1 failed by
its exit status. One still running after SUITE_TIMEOUT seconds (default 1800; 0: no limit) is
stopped, with every process below it, and fails.

    tests/run_suites.py [--make CMD] [--list] [SUITE...]

SUITE is one of the names --list shows (or its make target, test-NAME); any other NAME runs
`make test-NAME` (e.g. c-static, python-pynenc); NAME=COMMAND runs COMMAND with sh. Without
SUITE, every suite of the test command. From make: make test SUITES="c examples".
Stdlib only: python3 is all it needs (.ci/run installs it where missing).
"""

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A suite still running after this many seconds (SUITE_TIMEOUT; 0: no limit) is stopped, with
# everything it started, and counts as failed: one that hangs must not hide the others either.
# The slowest suites take about 10 minutes from a clean build on two busy cores.
DEFAULT_TIMEOUT = 1800

# BROKK_TEST_LOGS=DIR puts the logs and summary.txt elsewhere (the runner's own tests do).
LOG_DIR = os.environ.get("BROKK_TEST_LOGS") or os.path.join("build", "test-logs")


class Counts:
    """What one suite's output says: passed, failed and skipped (never negative)."""

    def __init__(self, passed=0, failed=0, skipped=0):
        self.passed = max(passed, 0)
        self.failed = max(failed, 0)
        self.skipped = max(skipped, 0)

    def __add__(self, other):
        return Counts(self.passed + other.passed, self.failed + other.failed,
                      self.skipped + other.skipped)

    def __eq__(self, other):
        return isinstance(other, Counts) and self.as_tuple() == other.as_tuple()

    def as_tuple(self):
        return (self.passed, self.failed, self.skipped)

    def __repr__(self):
        return "Counts(passed=%d, failed=%d, skipped=%d)" % self.as_tuple()


def total(counts):
    out = Counts()
    for c in counts:
        out = out + c
    return out


# ---------------------------------------------------------------------------------------------
# Parsers: each takes a suite's whole output (text) and returns Counts, or None when the output
# has none of that runner's summary lines.

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def lines_of(text):
    """The output's lines, without colour codes, carriage-return progress or trailing blanks."""
    out = []
    for line in _ANSI.sub("", text).split("\n"):
        out.append(line.rstrip("\r").rsplit("\r", 1)[-1].rstrip())
    return out


_CARGO = re.compile(r"^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored;")


def parse_cargo(text):
    """cargo test: one "test result: ok. N passed; N failed; N ignored; ..." line per test binary
    (and per doctest run), summed. Ignored tests count as skipped. cargo stops at the first
    binary that fails, so the ones after it are in no count (the failure is)."""
    found = None
    for line in lines_of(text):
        m = _CARGO.match(line.strip())
        if m:
            found = (found or Counts()) + Counts(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return found


_CTEST = re.compile(r"^\d+% tests passed, (\d+) tests? failed out of (\d+)")
_CTEST_NOT_RUN = re.compile(r"^\d+ - .* \((Skipped|Disabled)\)$")


def parse_ctest(text):
    """ctest: "N% tests passed, F tests failed out of T". T counts the skipped tests (in the
    "The following tests did not run:" list as "(Skipped)") but not the disabled ones
    ("(Disabled)"); both count as skipped here, and passed = T - F - skipped."""
    found = None
    skipped = disabled = 0
    for line in lines_of(text):
        s = line.strip()
        m = _CTEST.match(s)
        if m:
            failed, out_of = int(m.group(1)), int(m.group(2))
            found = (found or Counts()) + Counts(out_of - failed, failed, 0)
            continue
        m = _CTEST_NOT_RUN.match(s)
        if m:
            if m.group(1) == "Skipped":
                skipped += 1
            else:
                disabled += 1
    if found is None:
        return None
    return Counts(found.passed - skipped, found.failed, skipped + disabled)


_GO_RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+) \(")


def parse_go(text):
    """go test -v (the runner sets GOFLAGS=-v for the go suite; go.mk's `go test` has no -v):
    the "--- PASS/FAIL/SKIP: Name (..s)" lines of every run, counting the leaves: a test with
    subtests (forEachBackend's memory/sqlite/redis) counts through them, not itself, except
    that one which failed while none of its subtests did counts one failure. Each `go test`
    run counts again (go.mk runs the tests twice: -race and -tags brokk_gc)."""
    results = []
    for line in lines_of(text):
        m = _GO_RESULT.match(line)
        if m:
            results.append((m.group(1), m.group(2)))
    if not results:
        return None
    passed = failed = skipped = 0
    for i, (status, name) in enumerate(results):
        # Go prints a test's result line, then its subtests' (indented) right below it.
        j = i + 1
        while j < len(results) and results[j][1].startswith(name + "/"):
            j += 1
        if j > i + 1:
            if status == "FAIL" and not any(s == "FAIL" for s, _ in results[i + 1:j]):
                failed += 1
            continue
        if status == "PASS":
            passed += 1
        elif status == "FAIL":
            failed += 1
        else:
            skipped += 1
    return Counts(passed, failed, skipped)


_PYTEST_DECORATED = re.compile(r"^=+ (.+?) in [\d.]+s(?: \([\d:.]+\))? =+$")
_PYTEST_PLAIN = re.compile(r"^((?:\d+ [a-z]+)(?:, \d+ [a-z]+)*|no tests ran) in [\d.]+s(?: \([\d:.]+\))?$")
_PYTEST_ITEM = re.compile(r"^(\d+) ([a-z]+)$")
_PYTEST_WORDS = {
    "passed": "passed", "xpassed": "passed",
    "failed": "failed", "error": "failed", "errors": "failed",
    "skipped": "skipped", "xfailed": "skipped",
    "deselected": None, "warning": None, "warnings": None, "rerun": None,
}


def _pytest_body(body):
    if body == "no tests ran":
        return Counts()
    c = {"passed": 0, "failed": 0, "skipped": 0}
    for item in body.split(", "):
        m = _PYTEST_ITEM.match(item)
        if not m or m.group(2) not in _PYTEST_WORDS:
            return None
        kind = _PYTEST_WORDS[m.group(2)]
        if kind:
            c[kind] += int(m.group(1))
    return Counts(c["passed"], c["failed"], c["skipped"])


def parse_pytest(text):
    """pytest: its final "==== 3 failed, 120 passed, 4 skipped, 1 error in 9.81s ====" line (or
    the undecorated one of -q), summed over every pytest run in the output (test-python runs
    two: the pynenc plugin's tests, then the main suite). Errors count as failed, xfailed as
    skipped, xpassed as passed."""
    found = None
    for line in lines_of(text):
        s = line.strip()
        m = _PYTEST_DECORATED.match(s) or _PYTEST_PLAIN.match(s)
        if m:
            c = _pytest_body(m.group(1))
            if c is not None:
                found = (found or Counts()) + c
    return found


_PLAIN = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")
_C_SKIP = re.compile(r"^ok - .* # SKIP\b")


def parse_c(text):
    """The C suite (tests/c): the total tests/c/sum.sh prints last, "N passed, N failed" after
    "C suite, every stage:"; for one stage run alone (make test-c-plain, ...), the
    "C tests (MODE) total:" lines that run.sh and static_checks.sh print, followed by
    "N passed, N failed", summed (they are also what is left when the make stops before
    sum.sh). A test that skipped itself prints "ok - name # SKIP why" and is in the passed
    count: it moves to skipped."""
    ls = [line.strip() for line in lines_of(text)]
    overall = None
    stages = None
    skipped = 0
    for i, line in enumerate(ls):
        if _C_SKIP.match(line):
            skipped += 1
        nxt = ls[i + 1] if i + 1 < len(ls) else ""
        m = _PLAIN.match(nxt)
        if not m:
            continue
        c = Counts(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
        if line == "C suite, every stage:":
            overall = c
        elif re.match(r"^C tests \(.*\) total:$", line):
            stages = (stages or Counts()) + c
    found = overall if overall is not None else stages
    if found is None:
        return None
    return Counts(found.passed - skipped, found.failed, found.skipped + skipped)


_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
_UNITTEST_END = re.compile(r"^(OK|FAILED)(?: \((.*)\))?$")


def parse_unittest(text):
    """Python's unittest (the runner's own tests): "Ran N tests in ...s", then "OK",
    "OK (skipped=1)" or "FAILED (failures=1, errors=2, skipped=3)". Errors and unexpected
    successes count as failed, expected failures as skipped."""
    ls = [line.strip() for line in lines_of(text)]
    found = None
    for i, line in enumerate(ls):
        m = _UNITTEST_RAN.match(line)
        if not m:
            continue
        ran = int(m.group(1))
        extra = {}
        for end in ls[i + 1:i + 4]:
            e = _UNITTEST_END.match(end)
            if e:
                for item in (e.group(2) or "").split(", "):
                    if "=" in item:
                        k, v = item.split("=", 1)
                        extra[k.strip()] = int(v)
                if e.group(1) == "FAILED" and not extra:
                    extra["failures"] = 1
                break
        failed = extra.get("failures", 0) + extra.get("errors", 0) + extra.get("unexpected successes", 0)
        skipped = extra.get("skipped", 0) + extra.get("expected failures", 0)
        found = (found or Counts()) + Counts(ran - failed - skipped, failed, skipped)
    return found


_SOAK_CHECK = re.compile(r"^soak: (.+): (ok|FAILED)$")


def parse_soak(text):
    """The soak smoke run (core/examples/soak.rs): one "soak: CHECK: ok" or "soak: CHECK: FAILED"
    line per check it makes at the end."""
    found = None
    for line in lines_of(text):
        m = _SOAK_CHECK.match(line.strip())
        if m:
            ok = m.group(2) == "ok"
            found = (found or Counts()) + Counts(int(ok), int(not ok), 0)
    return found


_EXAMPLE_PASSED = re.compile(r"^examples: (\S+) passed\b")


def parse_examples(text):
    """The C examples (examples/c/examples.mk): one "examples: NAME passed" line per example
    that passed. The recipe stops at the first one that fails (the exit status counts it)."""
    n = sum(1 for line in lines_of(text) if _EXAMPLE_PASSED.match(line.strip()))
    return Counts(n, 0, 0) if n else None


def parse_packaging(text):
    """The packaging suite (tests/packaging.sh): "N passed, N failed" after "Packaging, every
    step:"."""
    ls = [line.strip() for line in lines_of(text)]
    for line, nxt in zip(ls, ls[1:]):
        m = _PLAIN.match(nxt)
        if line == "Packaging, every step:" and m:
            return Counts(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    return None


_BENCH = re.compile(r"^bench: (\d+) results?, (\d+) skipped, (\d+) failed in ")


def parse_bench(text):
    """The benchmark smoke run (bench/run.py --smoke): its last line
    "bench: N results, N skipped, N failed in S s -> ...": a result per benchmark run that
    worked, a skip per peer that cannot run here (missing library or package), a failure per
    run that did not work."""
    found = None
    for line in lines_of(text):
        m = _BENCH.match(line.strip())
        if m:
            found = Counts(int(m.group(1)), int(m.group(3)), int(m.group(2)))
    return found


def parse_plain(text):
    """A last line of the form "N passed, N failed" (optionally ", N skipped"), as this runner
    and tests/c/sum.sh print."""
    found = None
    for line in lines_of(text):
        m = _PLAIN.match(line.strip())
        if m:
            found = Counts(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    return found


def parse_auto(text):
    """For a suite of unknown kind: the first of the parsers that finds its summary lines."""
    for parse in (parse_cargo, parse_ctest, parse_pytest, parse_go, parse_unittest, parse_c,
                  parse_bench, parse_soak, parse_examples, parse_plain):
        c = parse(text)
        if c is not None:
            return c
    return None


def judge(counts, rc):
    """The counts a suite is reported with, its status word and a note, from what its output
    said (counts, or None) and its command's exit status (rc)."""
    note = ""
    if counts is None:
        if rc == 0:
            return Counts(1, 0, 0), "ok", "no counts in its output: 1 passed by its exit status"
        return Counts(0, 1, 0), "FAILED", "exit status %d, no counts in its output" % rc
    counts = Counts(*counts.as_tuple())
    if rc != 0 and counts.failed == 0:
        counts.failed = 1
        note = "exit status %d with no failure counted: 1 failed added" % rc
    elif rc != 0:
        note = "exit status %d" % rc
    elif counts.failed:
        note = "exit status 0, but its output counts failures"
    return counts, ("FAILED" if counts.failed else "ok"), note


# ---------------------------------------------------------------------------------------------
# The suites of `make test`, in the order they run.

class Suite:
    def __init__(self, name, target=None, parse=parse_auto, env=None, command=None):
        self.name = name
        self.target = target
        self.parse = parse
        self.env = env or {}
        self.command = command  # a shell command instead of a make target

    def argv(self, make):
        if self.command is not None:
            return ["sh", "-c", self.command]
        return make + ["--no-print-directory", self.target]

    def shown(self, make):
        if self.command is not None:
            return self.command
        return " ".join([os.path.basename(make[0])] + make[1:] + [self.target])


SUITES = [
    Suite("runner", "test-runner", parse_unittest),
    Suite("rust", "test-rust", parse_cargo),
    Suite("loom", "test-loom", parse_cargo),
    Suite("soak-smoke", "test-soak-smoke", parse_soak),
    Suite("c", "test-c", parse_c),
    Suite("examples", "test-examples", parse_examples),
    Suite("cpp", "test-cpp", parse_ctest),
    # -v: go.mk's `go test` prints no result line for a test that passed or skipped.
    Suite("go", "test-go", parse_go, env={"GOFLAGS": "-v"}),
    Suite("python", "test-python", parse_pytest),
    Suite("python-wheel", "test-python-wheel", parse_pytest),
    # pynenc 0.4.0's and Tadween 0.1.0b3's own suites, unedited, on their brokers and on brokk's
    # (their counts add up every run: the peer's own broker and each brokk backend).
    Suite("pynenc-suite", "test-python-pynenc-suite", parse_pytest),
    Suite("tadween-suite", "test-tadween-suite", parse_pytest),
    Suite("packaging", "test-packaging", parse_packaging),
    Suite("bench-smoke", "test-bench-smoke", parse_bench),
]

# Make targets outside the list, by prefix: the parser of the suite they belong to.
_PREFIX_PARSERS = [("c-", parse_c), ("python", parse_pytest), ("go", parse_go), ("cpp", parse_ctest)]


def suite_for(arg):
    """The Suite an argument names: a known name or its make target, NAME=COMMAND, or any other
    NAME as make target test-NAME (NAME itself if it starts with test-)."""
    if "=" in arg:
        name, command = arg.split("=", 1)
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise ValueError("bad suite name %r (NAME=COMMAND)" % name)
        return Suite(name, parse=parse_auto, command=command)
    for s in SUITES:
        if arg in (s.name, s.target):
            return s
    if not re.match(r"^[A-Za-z0-9_.-]+$", arg):
        raise ValueError("bad suite name %r" % arg)
    name = arg[len("test-"):] if arg.startswith("test-") else arg
    parse = parse_auto
    for prefix, p in _PREFIX_PARSERS:
        if name.startswith(prefix):
            parse = p
            break
    env = {"GOFLAGS": "-v"} if parse is parse_go else {}
    return Suite(name, "test-" + name, parse, env=env)


# ---------------------------------------------------------------------------------------------
# Running.

def _out(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def say(text):
    _out((text + "\n").encode())


def _proc_stat(pid):
    """(parent pid, start time) of a process from /proc, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid):
    """The processes below pid, each as (pid, start time) (from /proc; none without it)."""
    try:
        entries = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return []
    children = {}
    for p in entries:
        st = _proc_stat(p)
        if st:
            children.setdefault(st[0], []).append((p, st[1]))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c[0])
    return out


def signal_tree(procs, sig):
    """Signals each (pid, start time) that is still that same process."""
    for p, started in procs:
        st = _proc_stat(p)
        if st is None or st[1] != started:
            continue
        try:
            os.kill(p, sig)
        except OSError:
            pass


def stop_suite(proc, grace=10):
    """Stops a suite: SIGTERM to its make and everything below it (a shell that dies would
    leave its children running otherwise), SIGKILL to what is still there after grace s."""
    if proc.poll() is not None:
        return
    procs = descendants(proc.pid)
    proc.terminate()
    signal_tree(procs, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
    signal_tree(procs, signal.SIGKILL)


def run_suite(suite, make, log_path, on_child, timeout=0):
    """Runs one suite with its output shown live and written to log_path; returns its exit
    status (or a negative signal number), its output, and whether it ran out of time (after
    timeout seconds, unless 0: then it and all below it are stopped)."""
    env = dict(os.environ)
    for k, v in suite.env.items():
        env[k] = (env[k] + " " + v) if env.get(k) else v
    timed_out = False
    start = time.monotonic()
    with open(log_path, "wb", buffering=0) as log:
        log.write(("# %s\n" % suite.shown(make)).encode())
        # close_fds=False: a make jobserver's descriptors (make -jN test) reach the sub-make.
        proc = subprocess.Popen(suite.argv(make), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, close_fds=False)
        on_child(proc)
        fd = proc.stdout.fileno()
        exited_at = None
        try:
            while True:
                if timeout and not timed_out and time.monotonic() - start > timeout and proc.poll() is None:
                    timed_out = True
                    msg = "\n===== %s: still running after %d s (SUITE_TIMEOUT): stopping it\n" % (
                        suite.name, timeout)
                    _out(msg.encode())
                    log.write(msg.encode())
                    stop_suite(proc)
                ready, _, _ = select.select([fd], [], [], 0.5)
                if ready:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    _out(chunk)
                    log.write(chunk)
                    continue
                if proc.poll() is not None:
                    # Exited, but something it left running may still hold the pipe: give it a
                    # moment to finish writing, then stop reading.
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 2:
                        break
        finally:
            proc.stdout.close()
            rc = proc.wait()
            on_child(None)
    with open(log_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return rc, text, timed_out


def table(rows):
    """rows: (suite, Counts, seconds or None, status, note). The summary's lines."""
    head = ("suite", "passed", "failed", "skipped", "time (s)", "status")
    body = []
    for name, c, secs, status, note in rows:
        body.append((name, str(c.passed), str(c.failed), str(c.skipped),
                     "-" if secs is None else "%.1f" % secs, status, note))
    width = [max([len(head[i])] + [len(r[i]) for r in body]) for i in range(6)]
    fmt = "%-*s  %*s  %*s  %*s  %*s  %-*s"

    def line(cells, note=""):
        args = []
        for i in range(6):
            args += [width[i], cells[i]]
        out = fmt % tuple(args)
        return (out + ("  " + note if note else "")).rstrip()

    out = [line(head), line(tuple("-" * w for w in width))]
    for r in body[:-1]:
        out.append(line(r[:6], r[6]))
    out.append(line(tuple("-" * w for w in width)))
    out.append(line(body[-1][:6], body[-1][6]))
    return out


def main(argv):
    args = list(argv)
    make = shlex.split(os.environ.get("MAKE") or "make")
    if args[:1] == ["--make"] and len(args) > 1:
        make = shlex.split(args[1])
        args = args[2:]
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if args[:1] == ["--list"]:
        for s in SUITES:
            print("%-12s make %s" % (s.name, s.target))
        return 0
    timeout = os.environ.get("SUITE_TIMEOUT") or str(DEFAULT_TIMEOUT)
    if not timeout.isdigit():
        print("run_suites: SUITE_TIMEOUT=%s is not a number of seconds" % timeout, file=sys.stderr)
        return 2
    timeout = int(timeout)
    try:
        chosen = [suite_for(a) for a in args] if args else list(SUITES)
    except ValueError as e:
        print("run_suites: %s" % e, file=sys.stderr)
        return 2
    seen = set()
    suites = []
    for s in chosen:
        if s.name not in seen:
            seen.add(s.name)
            suites.append(s)

    os.chdir(ROOT)
    os.makedirs(LOG_DIR, exist_ok=True)
    summary_path = os.path.join(LOG_DIR, "summary.txt")
    if os.path.exists(summary_path):
        os.remove(summary_path)

    child = [None]
    stopped = []

    def on_signal(signum, frame):
        # Finish the suite that runs, then run no other. SIGINT from a terminal reached the
        # suite too (same process group); SIGTERM, or a second signal, is passed on to it.
        if (signum == signal.SIGTERM or stopped) and child[0] is not None and child[0].poll() is None:
            procs = descendants(child[0].pid)
            child[0].terminate()
            signal_tree(procs, signal.SIGTERM)
        stopped.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def set_child(p):
        child[0] = p

    rows = []
    for n, suite in enumerate(suites, 1):
        if stopped:
            rows.append((suite.name, Counts(), None, "not run", ""))
            continue
        log_path = os.path.join(LOG_DIR, suite.name + ".log")
        say("\n===== [%d/%d] %s: %s  (log: %s)" % (n, len(suites), suite.name, suite.shown(make), log_path))
        start = time.monotonic()
        rc, text, timed_out = run_suite(suite, make, log_path, set_child, timeout)
        secs = time.monotonic() - start
        counts, status, note = judge(suite.parse(text), rc if not (stopped or timed_out) else (rc or 1))
        if stopped:
            status, note = "FAILED", "interrupted (%s)" % signal.Signals(stopped[0]).name
        elif timed_out:
            status, note = "FAILED", "timed out after %d s: stopped" % timeout
        rows.append((suite.name, counts, secs, status, note))
        say("===== %s: %s, %d passed, %d failed, %d skipped in %.1f s%s" % (
            suite.name, status, counts.passed, counts.failed, counts.skipped, secs,
            " (%s)" % note if note else ""))

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    all_counts = total(r[1] for r in rows)
    failed = all_counts.failed > 0 or any(r[3] != "ok" for r in rows)
    rows.append(("total", all_counts, sum(r[2] or 0 for r in rows), "FAILED" if failed else "ok", ""))
    last = "%d passed, %d failed, %d skipped" % all_counts.as_tuple()
    summary = ["", "===== test summary (logs in %s/)" % LOG_DIR] + table(rows) + ["", last]
    with open(summary_path, "w") as f:
        f.write("\n".join(summary[1:]) + "\n")
    say("\n".join(summary))
    if stopped:
        return 128 + stopped[0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
