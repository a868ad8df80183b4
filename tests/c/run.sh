#!/bin/sh
# Runs C test programs in one mode and adds up their results.
#   run.sh MODE OUTDIR PROGRAM...     MODE: plain | sqlite | redis | valgrind | asan
# "sqlite" is the plain run with BROKK_TEST_URL=sqlite: every broker the suite creates is on
# its own temporary SQLite file (see check.h). "redis" is the plain run on a redis-server this
# script starts for the run (core/src/store/redis/test-server.sh, files in OUTDIR/redis-server, owned by this
# shell: a watchdog kills it if the script dies) and stops at the end, however it ends, with
# BROKK_TEST_URL=redis://127.0.0.1:PORT/0: every broker gets its own key prefix (see check.h).
# Without redis-server the stage fails, saying why. The other modes use memory:// unless
# BROKK_TEST_URL is set in the environment.
# Each program prints "ok - x" / "not ok - x" lines and ends with "<name>: N passed, N failed".
# A program that crashes, hangs (killed by timeout), or exits non-zero although it reported no
# failure (valgrind errors or definite leaks, sanitizer reports) counts one more failure.
# Writes "passed failed" to OUTDIR/MODE.counts and prints, last, "N passed, N failed".
# Exits non-zero on any failure unless CT_KEEP_GOING is set (make test-c sums the stages).
# VERBOSE=1 also prints the "ok" lines.
set -u
mode=$1
out=$2
shift 2
logdir=$out/logs/$mode
mkdir -p "$logdir"

case $mode in
plain)
    scale=${BROKK_TEST_TIMEOUT_SCALE:-1}
    limit=120
    ;;
sqlite | redis)
    scale=${BROKK_TEST_TIMEOUT_SCALE:-1}
    limit=120
    ;;
valgrind)
    scale=20
    limit=400
    ;;
asan)
    scale=${BROKK_TEST_TIMEOUT_SCALE:-3}
    limit=200
    ;;
*)
    echo "run.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac

total_pass=0
total_fail=0
echo "== C tests ($mode)"

if [ "$mode" = redis ]; then
    server="$(dirname "$0")/../../core/src/store/redis/test-server.sh"
    mkdir -p "$out"
    sdir=$(cd "$out" && pwd)/redis-server # absolute: redis-server resolves paths after --dir
    # Stopped on every way out; the server's watchdog covers a kill -9 of this shell.
    trap 'sh "$server" stop "$sdir"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if ! port=$(sh "$server" start "$sdir" $$); then
        echo "not ok - the redis stage could not start redis-server (see above)"
        echo "0 1" >"$out/$mode.counts"
        echo "C tests ($mode) total:"
        echo "0 passed, 1 failed"
        [ -n "${CT_KEEP_GOING:-}" ] && exit 0
        exit 1
    fi
    echo "# redis-server on 127.0.0.1:$port (files in $sdir)"
    redis_url=redis://127.0.0.1:$port/0
fi
for prog in "$@"; do
    name=$(basename "$prog")
    log=$logdir/$name.out
    case $mode in
    plain)
        BROKK_TEST_TIMEOUT_SCALE=$scale BROKK_TEST_TOOL=none \
            timeout -k 10 $limit "$prog" >"$log" 2>&1
        rc=$?
        ;;
    sqlite)
        BROKK_TEST_URL=sqlite BROKK_TEST_TIMEOUT_SCALE=$scale BROKK_TEST_TOOL=none \
            timeout -k 10 $limit "$prog" >"$log" 2>&1
        rc=$?
        ;;
    redis)
        BROKK_TEST_URL=$redis_url BROKK_TEST_TIMEOUT_SCALE=$scale BROKK_TEST_TOOL=none \
            timeout -k 10 $limit "$prog" >"$log" 2>&1
        rc=$?
        ;;
    valgrind)
        vlog=$logdir/$name.valgrind
        # shellcheck disable=SC2086
        BROKK_TEST_TIMEOUT_SCALE=$scale BROKK_TEST_TOOL=valgrind \
            timeout -k 10 $limit ${CT_VALGRIND:-valgrind --error-exitcode=99} \
            --log-file="$vlog" "$prog" >"$log" 2>&1
        rc=$?
        ;;
    asan)
        BROKK_TEST_TIMEOUT_SCALE=$scale BROKK_TEST_TOOL=asan \
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=98:strict_string_checks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=97 \
            timeout -k 10 $limit "$prog" >"$log" 2>&1
        rc=$?
        ;;
    esac
    summary=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed\$" "$log" | tail -n 1)
    if [ -n "$summary" ]; then
        pass=$(echo "$summary" | sed -E 's/^.*: ([0-9]+) passed, ([0-9]+) failed$/\1/')
        fail=$(echo "$summary" | sed -E 's/^.*: ([0-9]+) passed, ([0-9]+) failed$/\2/')
    else
        pass=$(grep -c '^ok - ' "$log")
        fail=$(($(grep -c '^not ok - ' "$log") + 1))
        echo "not ok - $name did not finish (exit status $rc; 124 or 137 = timeout)"
        tail -n 30 "$log" | sed 's/^/#   /'
    fi
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        fail=1
        echo "not ok - $name exited with status $rc after reporting no failure"
    fi
    # Failures, diagnostics, skips and the per-program summary; "ok" lines only when asked.
    if [ "${VERBOSE:-0}" = 1 ]; then
        cat "$log"
    else
        grep -v '^ok - ' "$log" | grep -vE '^# [A-Za-z0-9_]+( \((memory|sqlite|redis)\))?$' | grep -vE "^$name: [0-9]+ passed" || true
        grep '^ok - .* # SKIP' "$log" || true
        echo "$name: $pass passed, $fail failed"
    fi
    # valgrind's own report when it found something (exit 99) or the program died.
    if [ "$mode" = valgrind ] && { [ "$rc" -eq 99 ] || [ -z "$summary" ]; }; then
        echo "#   valgrind log ($vlog):"
        grep -v '^==[0-9]*== *$' "$vlog" | tail -n 80 | sed 's/^/#   /'
    fi
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
done

echo "$total_pass $total_fail" >"$out/$mode.counts"
echo "C tests ($mode) total:"
echo "$total_pass passed, $total_fail failed"
if [ "$total_fail" -ne 0 ] && [ -z "${CT_KEEP_GOING:-}" ]; then
    exit 1
fi
exit 0
