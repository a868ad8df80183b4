#!/bin/sh
# The packaging suite (make test-packaging): every way brokk is installed outside this
# checkout, each step run even when an earlier one failed, then "Packaging, every step:" and
# "N passed, N failed" (tests/run_suites.py reads those two lines). The C and C++ install test
# (a make install prefix, pkg-config and CMake) runs in the cpp suite.
#   api-docs    the API reference: Doxygen of brokk.h (warnings are errors), cargo doc, pydoc, go doc
#   debian      the Debian packages: built, lintian, the quickstarts built and run against them
#   go-module   the Go module from a file GOPROXY, in a module outside the checkout, against a
#               make install prefix with nothing but PKG_CONFIG_PATH (bindings/go/packaging)
# Usage: sh tests/packaging.sh [STEP...]   (no STEP: every step)
set -u
cd "$(dirname "$0")/.."
log=${BROKK_PACKAGING_LOGS:-build/test-logs/packaging}
mkdir -p "$log"
passed=0
failed=0

step() {  # step NAME COMMAND...: runs COMMAND, its output in $log/NAME.log
    name=$1
    shift
    if "$@" > "$log/$name.log" 2>&1; then
        passed=$((passed + 1))
        echo "ok - $name"
    else
        failed=$((failed + 1))
        echo "not ok - $name (last lines of $log/$name.log:)"
        tail -n 20 "$log/$name.log" | sed 's/^/#   /'
    fi
}

steps=${*:-api-docs debian go-module}
for s in $steps; do
    case $s in
        api-docs) step api-docs make api-docs ;;
        debian) step debian sh bindings/c/debian/test-debs.sh build/packaging/debian ;;
        go-module) step go-module make test-go-module ;;
        *) echo "packaging: unknown step $s" >&2; failed=$((failed + 1)) ;;
    esac
done
echo "Packaging, every step:"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
