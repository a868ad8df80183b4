#!/bin/sh
# Static checks of the C API, counted like tests:
#   - include/brokk.h compiles on its own as C11 and as C++17 with -Wall -Wextra -Werror -pedantic;
#   - tests/c/test_symbols.c references (SYM(...)) every function brokk.h declares;
#   - the library exports every function brokk.h declares.
#   static_checks.sh OUTDIR LIBRARY     (env: CC, CXX, WARN, CT_KEEP_GOING)
set -u
out=$1
lib=$2
CC=${CC:-cc}
CXX=${CXX:-g++}
WARN=${WARN:--Wall -Wextra -Werror -pedantic}
mkdir -p "$out"
pass=0
fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }

echo "== C tests (static)"
# The header alone (the .c/.cpp files include nothing before it).
# shellcheck disable=SC2086
if $CC -std=c11 $WARN -Iinclude -c tests/c/header_c11.c -o "$out/header_c11.o"; then
    ok "brokk.h compiles alone as C11"
else
    notok "brokk.h compiles alone as C11"
fi
# shellcheck disable=SC2086
if $CC -std=c17 $WARN -Iinclude -c tests/c/header_c11.c -o "$out/header_c17.o"; then
    ok "brokk.h compiles alone as C17"
else
    notok "brokk.h compiles alone as C17"
fi
# shellcheck disable=SC2086
if $CXX -std=c++17 $WARN -Iinclude -x c++ -c tests/c/header_c11.c -o "$out/header_cxx17.o"; then
    ok "brokk.h compiles alone as C++17"
else
    notok "brokk.h compiles alone as C++17"
fi

# Every function the header declares: preprocess (drops comments), one declaration per line,
# no typedefs (the callback types), then the identifier before "(".
$CC -E -P -x c -Iinclude include/brokk.h | tr '\n' ' ' | tr ';' '\n' | grep -v typedef |
    grep -oE 'brokk_[a-z0-9_]+ *\(' | sed 's/ *($//' | sort -u >"$out/declared.txt"
grep -oE 'SYM\(brokk_[a-z0-9_]+\)' tests/c/test_symbols.c | sed 's/^SYM(//; s/)$//' |
    sort -u >"$out/referenced.txt"
ndecl=$(wc -l <"$out/declared.txt")
if [ "$ndecl" -lt 20 ] || ! grep -qx brokk_broker_new "$out/declared.txt"; then
    notok "found the header's functions (only $ndecl; the extraction is broken)"
else
    ok "found the header's $ndecl functions"
fi
missing=$(comm -23 "$out/declared.txt" "$out/referenced.txt")
extra=$(comm -13 "$out/declared.txt" "$out/referenced.txt")
if [ -z "$missing" ] && [ -z "$extra" ]; then
    ok "test_symbols.c references every function declared in brokk.h"
else
    notok "test_symbols.c references every function declared in brokk.h"
    [ -n "$missing" ] && echo "#   declared but not referenced: $(echo $missing)"
    [ -n "$extra" ] && echo "#   referenced but not declared: $(echo $extra)"
fi
nm -D --defined-only "$lib" | awk '$2 == "T" { print $3 }' | sort -u >"$out/exported.txt"
unexported=$(comm -23 "$out/declared.txt" "$out/exported.txt")
if [ -z "$unexported" ]; then
    ok "$(basename "$lib") exports every function declared in brokk.h"
else
    notok "$(basename "$lib") exports every function declared in brokk.h"
    echo "#   not exported: $(echo $unexported)"
fi
undeclared=$(grep '^brokk_' "$out/exported.txt" | comm -23 - "$out/declared.txt")
if [ -z "$undeclared" ]; then
    ok "every brokk_* function the library exports is declared in brokk.h"
else
    notok "every brokk_* function the library exports is declared in brokk.h"
    echo "#   exported but not declared: $(echo $undeclared)"
fi

# Every name the header puts in the global namespace carries the brokk prefix (STYLE.md §2):
# macros BROKK_*, types and functions brokk_*.
unprefixed=$(grep -oE '^#define +[A-Za-z_][A-Za-z0-9_]*' include/brokk.h | awk '{ print $2 }' |
    grep -vE '^BROKK_' || true)
if [ -z "$unprefixed" ]; then
    ok "every macro brokk.h defines starts with BROKK_"
else
    notok "every macro brokk.h defines starts with BROKK_"
    echo "#   unprefixed: $(echo $unprefixed)"
fi
untyped=$({
    grep -oE '^typedef [^(]* [A-Za-z_][A-Za-z0-9_]*;' include/brokk.h | grep -oE '[A-Za-z_][A-Za-z0-9_]*;$'
    grep -oE '^typedef [^(]*\(\*[A-Za-z_][A-Za-z0-9_]*\)' include/brokk.h | grep -oE '[A-Za-z_][A-Za-z0-9_]*\)$'
    grep -oE '^(typedef )?(struct|enum) [A-Za-z_][A-Za-z0-9_]*' include/brokk.h | awk '{ print $NF }'
} | tr -d ';)' | grep -vE '^brokk_' || true)
if [ -z "$untyped" ]; then
    ok "every type brokk.h declares starts with brokk_"
else
    notok "every type brokk.h declares starts with brokk_"
    echo "#   unprefixed: $(echo $untyped)"
fi

echo "$pass $fail" >"$out/static.counts"
echo "C tests (static) total:"
echo "$pass passed, $fail failed"
if [ "$fail" -ne 0 ] && [ -z "${CT_KEEP_GOING:-}" ]; then
    exit 1
fi
exit 0
