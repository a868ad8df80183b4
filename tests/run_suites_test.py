#!/usr/bin/env python3
"""Tests of tests/run_suites.py: its parsers, fed with sample outputs of each runner, its
verdict rules, and whole runs of ad-hoc suites (a failing one among them). `make test-runner`;
the test command runs it as the suite "runner". Stdlib unittest only."""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_suites as rs  # noqa: E402
from run_suites import Counts  # noqa: E402


def sample(text):
    return textwrap.dedent(text).lstrip("\n")


CARGO_PASS = sample("""
       Compiling r v0.1.0 (/tmp/r)
        Finished `test` profile [unoptimized + debuginfo] target(s) in 0.28s
         Running unittests src/lib.rs (target/debug/deps/r-2eeb798e46b18181)

    running 3 tests
    test t::b ... ok
    test t::c ... ignored
    test t::a ... ok

    test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

         Running tests/it.rs (target/debug/deps/it-798cfd2e897ea8d2)

    running 1 test
    test z ... ok

    test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

       Doc-tests r

    running 1 test
    test src/lib.rs - f (line 1) ... ok

    test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

    all doctests ran in 0.33s; merged doctests compilation took 0.33s
""")

CARGO_FAIL = sample("""
         Running unittests src/lib.rs (target/debug/deps/r-2eeb798e46b18181)

    running 3 tests
    test t::a ... ok
    test t::c ... ignored
    test t::b ... FAILED

    failures:

    ---- t::b stdout ----

    thread 't::b' (23997) panicked at src/lib.rs:8:22:
    boom

    failures:
        t::b

    test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.09s

    error: test failed, to rerun pass `--lib`
""")

CARGO_COMPILE_ERROR = sample("""
       Compiling brokk v0.1.0 (/work/main)
    error[E0425]: cannot find value `x` in this scope
     --> src/lib.rs:3:5
    error: could not compile `brokk` (lib test) due to 1 previous error
""")

CTEST_PASS = sample("""
    Test project /work/main/build/cpp
          Start  1: redis.start
     1/57 Test  #1: redis.start ......................   Passed    0.05 sec
          Start  2: Broker.PublishFetchAck
     2/57 Test  #2: Broker.PublishFetchAck ...........   Passed    0.01 sec
    57/57 Test #57: install.pkgconfig_and_cmake ......   Passed   12.40 sec

    100% tests passed, 0 tests failed out of 57

    Total Test time (real) =  95.31 sec
""")

CTEST_MIXED = sample("""
    Test project /tmp/ct/b
        Start 1: a
        Start 2: b
    1/5 Test #1: a ................................   Passed    0.01 sec
        Start 3: c
    2/5 Test #2: b ................................***Failed    0.01 sec

        Start 4: d
    3/5 Test #4: d ................................***Not Run (Disabled)   0.00 sec
        Start 5: e
    4/5 Test #3: c ................................***Skipped   0.01 sec
    5/5 Test #5: e ................................   Passed    0.00 sec

    75% tests passed, 1 tests failed out of 4

    Total Test time (real) =   0.02 sec

    The following tests did not run:
    \t  3 - c (Skipped)
    \t  4 - d (Disabled)

    The following tests FAILED:
    \t  2 - b (Failed)
    Errors while running CTest
""")

GO_FAIL = sample("""
    === RUN   TestA
        a_test.go:3: hello
    --- PASS: TestA (0.00s)
    === RUN   TestB
    === RUN   TestB/memory
    === RUN   TestB/sqlite
        a_test.go:8: boom
    === RUN   TestB/redis
        a_test.go:7: no redis-server
    --- FAIL: TestB (0.00s)
        --- PASS: TestB/memory (0.00s)
        --- FAIL: TestB/sqlite (0.00s)
        --- SKIP: TestB/redis (0.00s)
    === RUN   TestC
    === RUN   TestC/x
    === NAME  TestC
        a_test.go:12: parent fails
    --- FAIL: TestC (0.00s)
        --- PASS: TestC/x (0.00s)
    === RUN   TestD
    === PAUSE TestD
    === CONT  TestD
        a_test.go:13: skipped
    --- SKIP: TestD (0.00s)
    FAIL
    FAIL\tgt\t0.004s
    FAIL
""")

GO_PASS_TWICE = sample("""
    cd bindings/go && CGO_ENABLED=1 go test -count=1 -timeout 300s -race ./...
    === RUN   TestOpen
    --- PASS: TestOpen (0.01s)
    === RUN   TestPublish
    === RUN   TestPublish/memory
    === RUN   TestPublish/sqlite
    === RUN   TestPublish/redis
    --- PASS: TestPublish (0.20s)
        --- PASS: TestPublish/memory (0.01s)
        --- PASS: TestPublish/sqlite (0.10s)
        --- PASS: TestPublish/redis (0.09s)
    PASS
    ok  \tgithub.com/brokk/bindings/go\t1.503s
    cd bindings/go && CGO_ENABLED=1 go test -count=1 -timeout 300s -tags brokk_gc ./...
    === RUN   TestOpen
    --- PASS: TestOpen (0.01s)
    === RUN   TestPublish
    === RUN   TestPublish/memory
    === RUN   TestPublish/sqlite
    === RUN   TestPublish/redis
    --- PASS: TestPublish (0.20s)
        --- PASS: TestPublish/memory (0.01s)
        --- PASS: TestPublish/sqlite (0.10s)
        --- SKIP: TestPublish/redis (0.00s)
    PASS
    ok  \tgithub.com/brokk/bindings/go\t1.212s
    go: vet, tests (2 tests, -race and -tags brokk_gc) and the pipeline example passed
""")

GO_VET_FAIL = sample("""
    cd bindings/go && go vet ./...
    # github.com/brokk/bindings/go
    ./broker.go:10:2: undefined: foo
    make: *** [bindings/go/go.mk:30: test-go] Error 1
""")

PYTEST_TWO_RUNS = sample("""
    cd build && BROKK_PYNENC_REQUIRED=1 python -m pytest -p no:cacheprovider -rs /work/main/bindings/python/tests/pynenc_plugin
    ============================= test session starts ==============================
    collected 14 items

    ../bindings/python/tests/pynenc_plugin/test_plugin.py ..............     [100%]

    ============================== 14 passed in 3.21s ==============================
    cd build && BROKK_EXPECT_PACKAGED_LIBRARY=1 python -m pytest -p no:cacheprovider -rs /work/main/bindings/python/tests
    ============================= test session starts ==============================
    collected 230 items / 14 deselected / 216 selected

    ../bindings/python/tests/test_broker.py ....s.............F...........  [ 40%]
    =========================== short test summary info ============================
    SKIPPED [1] ../bindings/python/tests/test_tadween.py:12: tadween-core is not installed
    FAILED ../bindings/python/tests/test_broker.py::test_close - AssertionError
    ===== 1 failed, 200 passed, 3 skipped, 14 deselected, 2 warnings in 61.03s (0:01:01) =====
    python: pipeline example passed
""")

PYTEST_ONLY_FAILED = sample("""
    test_a.py:1: AssertionError
    ============================== 1 failed in 0.02s ===============================
""")

PYTEST_EVERY_KIND = sample("""
    =========================== short test summary info ============================
    SKIPPED [1] test_a.py:4: no redis
    ========== 1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error in 0.03s ==========
""")

PYTEST_QUIET_AND_COLOUR = (
    "..F\n"
    "\x1b[31m\x1b[1m2 passed\x1b[0m, \x1b[31m1 failed\x1b[0m in 0.10s\x1b[0m\n"
)

C_SUITE = sample("""
    == C tests (static)
    ok - brokk.h compiles alone as C11
    C tests (static) total:
    9 passed, 0 failed
    == C tests (plain)
    test_basics: 40 passed, 0 failed
    ok - redis_only_thing # SKIP needs BROKK_TEST_URL=redis
    test_publish: 31 passed, 1 failed
    not ok - publish_rejects_bad_json
    C tests (plain) total:
    71 passed, 1 failed
    == C tests (asan)
    test_basics: 40 passed, 0 failed
    C tests (asan) total:
    40 passed, 0 failed
      static: 9 passed, 0 failed
      plain: 71 passed, 1 failed
      sqlite: no results (stage did not run)
      asan: 40 passed, 0 failed
    C suite, every stage:
    120 passed, 2 failed
    make: *** [tests/c/c-tests.mk:41: test-c] Error 1
""")

C_STAGE_ONLY = sample("""
    == C tests (static)
    ok - brokk.h compiles alone as C11
    not ok - libbrokk.so exports what brokk.h declares
    #   not exported: brokk_foo
    C tests (static) total:
    8 passed, 1 failed
""")

UNITTEST_OK = sample("""
    test_a (run_suites_test.T.test_a) ... ok

    ----------------------------------------------------------------------
    Ran 31 tests in 0.412s

    OK (skipped=1)
""")

UNITTEST_FAILED = sample("""
    ----------------------------------------------------------------------
    Ran 10 tests in 0.012s

    FAILED (failures=2, errors=1, skipped=3, expected failures=1)
""")

SOAK = sample("""
    soak: 3 s, 120345 messages published (40115/s)
    soak: dispatched=1 processed=1 failed=0 requeued=0 expired=0 dead_lettered=0 dropped=0 unrouted=0
    soak: rss after warm-up 20480 KiB, peak 30000 KiB, after drain 21000 KiB
    soak: every publish counted: ok
    soak: nothing left queued, in flight or delayed: ok
    soak: dispatched = processed + failed + requeued: ok
    soak: dead letters all delivered: ok
    soak: memory flat after warm-up (under +32 MiB): FAILED
""")

EXAMPLES = sample("""
    build/two_process publish /work/main/build/two_process.db > build/two_process.out
    examples: two_process passed
    build/pipeline > build/pipeline.out
    examples: pipeline passed (natively and under valgrind)
""")

EXAMPLES_FAIL = sample("""
    examples: two_process passed
    build/pipeline > build/pipeline.out
    examples: build/pipeline.out lacks the line: pipeline done
    make: *** [examples/c/examples.mk:60: test-examples] Error 1
""")

BENCH = sample("""
    bench: smoke run, 1 round(s); results in build/bench/smoke/results.json
      SKIP pushpull/zmq: libzmq not found: apt-get install -y libzmq3-dev
    bench: 21 results, 4 skipped, 0 failed in 38.2 s -> build/bench/smoke/results.json
""")


class Parsers(unittest.TestCase):
    def test_cargo_sums_every_binary_and_the_doctests(self):
        self.assertEqual(rs.parse_cargo(CARGO_PASS), Counts(4, 0, 1))

    def test_cargo_failing(self):
        self.assertEqual(rs.parse_cargo(CARGO_FAIL), Counts(1, 1, 1))

    def test_cargo_compile_error_has_no_counts(self):
        self.assertIsNone(rs.parse_cargo(CARGO_COMPILE_ERROR))

    def test_ctest_all_pass(self):
        self.assertEqual(rs.parse_ctest(CTEST_PASS), Counts(57, 0, 0))

    def test_ctest_failed_skipped_and_disabled(self):
        # out of 4 = a, b, c (skipped), e; d (disabled) is outside the count.
        self.assertEqual(rs.parse_ctest(CTEST_MIXED), Counts(2, 1, 2))

    def test_go_failing_counts_leaves_and_a_parent_failing_alone(self):
        # TestA, TestB/memory, TestC/x passed; TestB/sqlite and TestC itself failed;
        # TestB/redis and TestD skipped.
        self.assertEqual(rs.parse_go(GO_FAIL), Counts(3, 2, 2))

    def test_go_two_runs_both_count(self):
        self.assertEqual(rs.parse_go(GO_PASS_TWICE), Counts(7, 0, 1))

    def test_go_vet_failure_has_no_counts(self):
        self.assertIsNone(rs.parse_go(GO_VET_FAIL))

    def test_pytest_two_runs_are_summed(self):
        self.assertEqual(rs.parse_pytest(PYTEST_TWO_RUNS), Counts(214, 1, 3))

    def test_pytest_only_failed(self):
        self.assertEqual(rs.parse_pytest(PYTEST_ONLY_FAILED), Counts(0, 1, 0))

    def test_pytest_every_kind(self):
        self.assertEqual(rs.parse_pytest(PYTEST_EVERY_KIND), Counts(1, 2, 2))

    def test_pytest_quiet_line_with_colour_codes(self):
        self.assertEqual(rs.parse_pytest(PYTEST_QUIET_AND_COLOUR), Counts(2, 1, 0))

    def test_pytest_no_tests_ran(self):
        self.assertEqual(rs.parse_pytest("======= no tests ran in 0.01s =======\n"), Counts())

    def test_pytest_ignores_other_banners(self):
        self.assertIsNone(rs.parse_pytest("===== test session starts =====\n=== 3 workers in 1s ===\n"))

    def test_c_suite_total_from_sum_sh_with_skips_moved(self):
        self.assertEqual(rs.parse_c(C_SUITE), Counts(119, 2, 1))

    def test_c_single_stage(self):
        self.assertEqual(rs.parse_c(C_STAGE_ONLY), Counts(8, 1, 0))

    def test_c_stages_summed_when_sum_sh_did_not_run(self):
        text = C_SUITE.split("  static: 9 passed")[0]
        self.assertEqual(rs.parse_c(text), Counts(119, 1, 1))

    def test_c_per_program_lines_alone_are_not_a_total(self):
        self.assertIsNone(rs.parse_c("test_basics: 40 passed, 0 failed\n"))

    def test_unittest(self):
        self.assertEqual(rs.parse_unittest(UNITTEST_OK), Counts(30, 0, 1))
        self.assertEqual(rs.parse_unittest(UNITTEST_FAILED), Counts(3, 3, 4))

    def test_soak_checks(self):
        self.assertEqual(rs.parse_soak(SOAK), Counts(4, 1, 0))

    def test_packaging(self):
        text = "ok - api-docs\nnot ok - wheel (last lines:)\n#   boom\nPackaging, every step:\n1 passed, 1 failed\n"
        self.assertEqual(rs.parse_packaging(text), Counts(1, 1, 0))
        self.assertIsNone(rs.parse_packaging("ok - api-docs\n1 passed, 0 failed\n"))

    def test_examples(self):
        self.assertEqual(rs.parse_examples(EXAMPLES), Counts(2, 0, 0))
        self.assertEqual(rs.parse_examples(EXAMPLES_FAIL), Counts(1, 0, 0))
        self.assertIsNone(rs.parse_examples("cc -o build/pipeline\n"))

    def test_bench(self):
        self.assertEqual(rs.parse_bench(BENCH), Counts(21, 0, 4))

    def test_plain(self):
        self.assertEqual(rs.parse_plain("x\n3 passed, 1 failed\n5 passed, 0 failed, 2 skipped\n"), Counts(5, 0, 2))
        self.assertIsNone(rs.parse_plain("test_x: 3 passed, 1 failed\n"))

    def test_auto_picks_the_runner(self):
        self.assertEqual(rs.parse_auto(CARGO_FAIL), Counts(1, 1, 1))
        self.assertEqual(rs.parse_auto(CTEST_MIXED), Counts(2, 1, 2))
        self.assertEqual(rs.parse_auto(PYTEST_ONLY_FAILED), Counts(0, 1, 0))
        self.assertEqual(rs.parse_auto(GO_FAIL), Counts(3, 2, 2))
        self.assertEqual(rs.parse_auto(C_STAGE_ONLY), Counts(8, 1, 0))
        self.assertEqual(rs.parse_auto("2 passed, 1 failed\n"), Counts(2, 1, 0))
        self.assertIsNone(rs.parse_auto("nothing to see\n"))

    def test_carriage_return_progress_and_crlf(self):
        self.assertEqual(rs.parse_cargo("building 1/3\rtest result: ok. 2 passed; 0 failed; 0 ignored;\r\n"),
                         Counts(2, 0, 0))


class Verdict(unittest.TestCase):
    def test_passing(self):
        self.assertEqual(rs.judge(Counts(5, 0, 1), 0), (Counts(5, 0, 1), "ok", ""))

    def test_failing_with_counts(self):
        c, status, _ = rs.judge(Counts(5, 2, 0), 2)
        self.assertEqual((c, status), (Counts(5, 2, 0), "FAILED"))

    def test_failed_command_without_counts_is_one_failure(self):
        c, status, note = rs.judge(None, 2)
        self.assertEqual((c, status), (Counts(0, 1, 0), "FAILED"))
        self.assertIn("exit status 2", note)

    def test_failed_command_that_counted_no_failure_gets_one(self):
        c, status, _ = rs.judge(Counts(7, 0, 0), 1)
        self.assertEqual((c, status), (Counts(7, 1, 0), "FAILED"))

    def test_passing_command_without_counts_is_one_pass(self):
        self.assertEqual(rs.judge(None, 0)[:2], (Counts(1, 0, 0), "ok"))

    def test_counted_failures_fail_even_with_exit_0(self):
        self.assertEqual(rs.judge(Counts(1, 1, 0), 0)[1], "FAILED")

    def test_judge_does_not_change_its_argument(self):
        c = Counts(7, 0, 0)
        rs.judge(c, 1)
        self.assertEqual(c, Counts(7, 0, 0))


class Selection(unittest.TestCase):
    def test_known_names_and_targets(self):
        self.assertEqual(rs.suite_for("c").target, "test-c")
        self.assertEqual(rs.suite_for("test-go").name, "go")
        self.assertEqual(rs.suite_for("go").env, {"GOFLAGS": "-v"})

    def test_other_targets_get_their_suites_parser(self):
        s = rs.suite_for("c-static")
        self.assertEqual((s.name, s.target, s.parse), ("c-static", "test-c-static", rs.parse_c))
        self.assertIs(rs.suite_for("test-python-pynenc").parse, rs.parse_pytest)

    def test_ad_hoc_command(self):
        s = rs.suite_for("fake=echo hi; exit 3")
        self.assertEqual((s.name, s.argv(["make"])), ("fake", ["sh", "-c", "echo hi; exit 3"]))

    def test_bad_name(self):
        with self.assertRaises(ValueError):
            rs.suite_for("a b")

    def test_every_suite_of_the_test_command(self):
        self.assertEqual([s.target for s in rs.SUITES],
                         ["test-runner", "test-rust", "test-loom", "test-soak-smoke", "test-c",
                          "test-examples", "test-cpp", "test-go", "test-python", "test-python-wheel",
                          "test-python-pynenc-suite", "test-tadween-suite", "test-packaging",
                          "test-bench-smoke"])


class WholeRun(unittest.TestCase):
    """The runner itself on ad-hoc suites, its logs in a temporary directory."""

    def run_suites(self, *suites, **env_extra):
        with tempfile.TemporaryDirectory() as logs:
            env = dict(os.environ, BROKK_TEST_LOGS=logs, **env_extra)
            p = subprocess.run([sys.executable, os.path.join(HERE, "run_suites.py")] + list(suites),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = p.stdout.decode()
            with open(os.path.join(logs, "summary.txt")) as f:
                summary = f.read()
            with open(os.path.join(logs, "one.log")) as f:
                log = f.read()
        return p.returncode, out, summary, log

    def test_a_failing_suite_does_not_stop_the_others(self):
        rc, out, summary, log = self.run_suites(
            "one=echo 'test result: ok. 3 passed; 0 failed; 1 ignored;'",
            "broken=echo compiling; echo 'error: could not compile' >&2; exit 2",
            "three=echo '2 passed, 1 failed'; exit 1",
            "four=echo '=== 5 passed in 0.1s ==='")
        self.assertEqual(rc, 1)
        lines = out.rstrip("\n").split("\n")
        self.assertEqual(lines[-1], "10 passed, 2 failed, 1 skipped")
        self.assertIn("error: could not compile", out)  # stderr shown live too
        self.assertIn("5 passed in 0.1s", out)  # the suite after the failures ran
        rows = {ln.split()[0]: ln.split() for ln in summary.split("\n") if ln.split()}
        self.assertEqual(rows["one"][1:4] + rows["one"][5:6], ["3", "0", "1", "ok"])
        self.assertEqual(rows["broken"][1:4] + rows["broken"][5:6], ["0", "1", "0", "FAILED"])
        self.assertEqual(rows["three"][1:4] + rows["three"][5:6], ["2", "1", "0", "FAILED"])
        self.assertEqual(rows["four"][1:4] + rows["four"][5:6], ["5", "0", "0", "ok"])
        self.assertEqual(rows["total"][1:4] + rows["total"][5:6], ["10", "2", "1", "FAILED"])
        self.assertEqual(summary.rstrip("\n").split("\n")[-1], lines[-1])
        self.assertIn("test result: ok. 3 passed", log)

    def test_all_passing_exits_0(self):
        rc, out, _, _ = self.run_suites("one=echo '1 passed, 0 failed'", "two=true")
        self.assertEqual(rc, 0)
        self.assertEqual(out.rstrip("\n").split("\n")[-1], "2 passed, 0 failed, 0 skipped")

    def test_a_hanging_suite_is_stopped_with_its_children_and_the_next_one_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            pidfile = os.path.join(tmp, "pid")
            started = time.monotonic()
            # The shell's child (sleep) is what hangs: it must be stopped too.
            rc, out, summary, _ = self.run_suites(
                "one=echo '1 passed, 0 failed'",
                "slow=echo going; sleep 60 & echo $! > %s; wait; echo never" % pidfile,
                "after=echo '2 passed, 0 failed'",
                SUITE_TIMEOUT="2")
            elapsed = time.monotonic() - started
            with open(pidfile) as f:
                sleeper = int(f.read())
        self.assertLess(elapsed, 30)
        self.assertEqual(rc, 1)
        self.assertNotIn("\nnever\n", out)
        self.assertIn("timed out after 2 s", summary)
        self.assertEqual(out.rstrip("\n").split("\n")[-1], "3 passed, 1 failed, 0 skipped")
        time.sleep(0.2)
        self.assertFalse(os.path.exists("/proc/%d" % sleeper) and "sleep" in open("/proc/%d/cmdline" % sleeper).read(),
                         "the hanging suite's child is still running")

    def test_bad_timeout_is_refused(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "run_suites.py"), "one=true"],
                           env=dict(os.environ, SUITE_TIMEOUT="soon"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 2)

    def test_unknown_option_like_name_is_refused(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "run_suites.py"), "a b"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
