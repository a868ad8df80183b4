#!/bin/sh
# Where the time goes on brokk's hot paths: the data behind docs/bench/analysis.md.
#
#   sh bench/profile.sh OUT_DIR BROKK_BENCH PYTHON        (make bench-profile)
#
# - callgrind (instructions per function, exact, threads serialised) of the C 1->1 run and of
#   the pull run: this VM does not support `perf stat -e instructions`, so callgrind is the
#   instruction-level profile;
# - perf record -e cpu-clock (time samples, kernel included: futex waits and wakes), when perf
#   works here;
# - strace -c -f: system calls per message (thread hand-offs are futex calls);
# - cProfile of the Python binding's publish loop and of its fetch + ack loop.
# Every step is optional: a missing tool is reported and skipped.
set -u
out=$1
bin=$2
py=${3:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
N=100000

step() { echo "bench-profile: $*" >&2; }

if command -v valgrind >/dev/null 2>&1; then
    for scenario in 1to1 pull; do
        step "callgrind $scenario ($N messages)"
        valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$scenario.out" \
            "$bin" "$scenario" --messages $N --warmup 10000 --seconds 600 \
            >"$out/callgrind.$scenario.log" 2>&1
        {
            echo "# callgrind, brokk_bench $scenario --messages $N: exclusive instructions per function"
            callgrind_annotate --threshold=98 "$out/callgrind.$scenario.out" 2>/dev/null | sed -n '1,70p'
            echo
            echo "# inclusive"
            callgrind_annotate --inclusive=yes --threshold=98 "$out/callgrind.$scenario.out" 2>/dev/null | sed -n '1,80p'
        } >"$out/callgrind-$scenario.txt"
    done
else
    step "valgrind not installed (apt-get install -y valgrind): no callgrind profile"
fi

if command -v perf >/dev/null 2>&1 &&
    perf record -q -e cpu-clock -o "$out/perf.test" -- true >/dev/null 2>&1; then
    step "perf record -e cpu-clock, 1to1"
    perf record -q -e cpu-clock -g -o "$out/perf.1to1.data" -- \
        "$bin" 1to1 --messages 2000000 --warmup 100000 >/dev/null 2>&1
    perf report -i "$out/perf.1to1.data" --stdio --no-children --sort comm,dso,sym -g none \
        2>/dev/null | grep -v '^$' | sed -n '1,70p' >"$out/perf-1to1.txt"
    perf report -i "$out/perf.1to1.data" --stdio --no-children --sort comm -g none \
        2>/dev/null | grep -v '^$' | sed -n '1,30p' >"$out/perf-1to1-threads.txt"
    rm -f "$out/perf.test"
else
    step "perf record does not work here: no time profile"
fi

if command -v strace >/dev/null 2>&1; then
    step "strace -c -f, 1to1 and latency"
    strace -f -c -o "$out/strace-1to1.txt" "$bin" 1to1 --messages 200000 --warmup 1000 >/dev/null 2>&1
    strace -f -c -o "$out/strace-latency.txt" "$bin" latency --rate 50000 --seconds 2 >/dev/null 2>&1
else
    step "strace not installed: no system call counts"
fi

step "cProfile of the Python binding"
PYTHONPATH="$root/bindings/python${PYTHONPATH:+:$PYTHONPATH}" "$py" "$root/bench/python/profile_py.py" "$out" ||
    step "the Python profile failed (is bindings/python importable?)"
step "done: $out"
