#!/bin/sh
# Creates the bench venv at $1 (build/bench/venv) from bench/python/requirements.txt, with a
# Python 3.12 (pynenc needs it): python3.12 on PATH, else pyenv's newest 3.12, else python3.
# Never fails the build: what cannot be installed is written to $2/<impl> (the skip reasons
# that bench/run.py reports) and the bench goes on without it.
#
#   venv.sh --redis DIR SKIPDIR   the second venv (build/bench/venv-redis) from
#                                 bench/python/requirements-redis.txt: pynenc-redis 0.3.0 needs
#                                 pynenc 0.3.1; what fails is written to SKIPDIR/pynenc-redis
set -u
redis=0
if [ "${1:-}" = --redis ]; then redis=1; shift; fi
venv=$1
skip=$2
req=$(dirname "$0")/python/requirements.txt
[ $redis = 1 ] && req=$(dirname "$0")/python/requirements-redis.txt
mkdir -p "$skip"

if [ -x "$venv/bin/python" ] && cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
    exit 0 # up to date
fi

runs() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }
py=""
if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$'); do
        py="$(pyenv root)/versions/$v/bin/python3.12"
    done
fi
runs "$py" || py=$(command -v python3.12 2>/dev/null || true)
runs "$py" || py=""
if [ -z "$py" ]; then
    py=$(command -v python3 || true)
    echo "bench-venv: no Python 3.12 found (pynenc needs it): using $py; install one with" \
         "'pyenv install 3.12' or 'apt-get install -y python3.12-venv'" >&2
fi
if [ -z "$py" ]; then
    for impl in tadween pynenc; do echo "no python3 to create the bench venv" > "$skip/$impl"; done
    exit 0
fi

if [ $redis = 1 ]; then
    # Both pins in one pip call: pynenc-redis's own requirement must resolve to pynenc 0.3.1.
    rm -rf "$venv"
    specs=$(grep -v '^#' "$req" | tr '\n' ' ')
    echo "bench-venv: installing ${specs}into $venv with $py" >&2
    if "$py" -m venv "$venv" >"$skip/venv-redis.log" 2>&1 &&
        "$venv/bin/python" -m pip install -q $specs >>"$skip/venv-redis.log" 2>&1; then
        rm -f "$skip/pynenc-redis"
        cp "$req" "$venv/.requirements"
    else
        echo "pip install $specs failed under $("$py" --version 2>&1) (PyPI unreachable?" \
             "see build/bench/skip/venv-redis.log)" > "$skip/pynenc-redis"
    fi
    exit 0
fi

rm -rf "$venv"
if ! "$py" -m venv "$venv" >"$skip/venv.log" 2>&1; then
    for impl in tadween pynenc; do
        echo "could not create the bench venv with $py (see build/bench/skip/venv.log;" \
             "Debian: apt-get install -y python3-venv)" > "$skip/$impl"
    done
    exit 0
fi
echo "bench-venv: installing $(grep -v '^#' "$req" | tr '\n' ' ')into $venv with $py" >&2
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# One package at a time, so that one failing (pynenc on an old Python) does not stop the others.
ok=1
for spec in $(grep -v '^#' "$req"); do
    name=${spec%%=*}
    if "$venv/bin/python" -m pip install -q "$spec" >>"$skip/venv.log" 2>&1; then
        case $name in tadween-core) rm -f "$skip/tadween" ;; pynenc) rm -f "$skip/pynenc" ;; esac
    else
        ok=0
        reason="pip install $spec failed under $($venv/bin/python --version 2>&1) (see build/bench/skip/venv.log)"
        case $name in
            tadween-core) echo "$reason" > "$skip/tadween" ;;
            pynenc) echo "$reason; pynenc needs Python >= 3.12" > "$skip/pynenc" ;;
            *) echo "bench-venv: $reason; the chart needs matplotlib" >&2 ;;
        esac
    fi
done
[ $ok = 1 ] && cp "$req" "$venv/.requirements"
exit 0
