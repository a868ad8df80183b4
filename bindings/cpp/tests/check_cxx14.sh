#!/bin/sh
# Compiles a file that only includes brokk.hpp as C++14 and checks that it fails with the
# header's own message saying it needs C++17, and nothing else from the header (no error about
# std::string_view or std::optional); then as C++17, to show that the check is not what fails.
#   $1  the C++ compiler    $2  include/ (brokk.h)    $3  bindings/cpp/include/ (brokk.hpp)
set -eu
cxx=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <brokk.hpp>\nint main() { return 0; }\n' > "$tmp/uses_brokk.cpp"

if "$cxx" -std=c++14 -fsyntax-only -I"$2" -I"$3" "$tmp/uses_brokk.cpp" > "$tmp/out" 2>&1; then
    echo "brokk.hpp compiled as C++14: expected its #error" >&2
    exit 1
fi
if ! grep -q 'brokk.hpp needs C++17' "$tmp/out"; then
    echo "compiling brokk.hpp as C++14 failed without saying it needs C++17 (first lines):" >&2
    head -n 20 "$tmp/out" >&2
    exit 1
fi
errors=$(grep -c ': error' "$tmp/out" || true)
if [ "$errors" -ne 1 ] || grep -q 'string_view\|optional' "$tmp/out"; then
    echo "compiling brokk.hpp as C++14 gave more than the one error saying it needs C++17 (first lines):" >&2
    head -n 20 "$tmp/out" >&2
    exit 1
fi
"$cxx" -std=c++17 -fsyntax-only -I"$2" -I"$3" "$tmp/uses_brokk.cpp"
echo "brokk.hpp as C++14: $(grep 'needs C++17' "$tmp/out" | head -n 1)"
