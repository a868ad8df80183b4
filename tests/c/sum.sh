#!/bin/sh
# Adds up the "passed failed" count files the stages of `make test-c` wrote and prints the
# total as the last line, "N passed, N failed". Exits non-zero if any stage failed or is missing.
set -u
pass=0
fail=0
for f in "$@"; do
    if [ -r "$f" ]; then
        read -r p q <"$f"
        echo "  $(basename "$f" .counts): $p passed, $q failed"
    else
        p=0
        q=1
        echo "  $(basename "$f" .counts): no results (stage did not run)"
    fi
    pass=$((pass + p))
    fail=$((fail + q))
done
echo "C suite, every stage:"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
