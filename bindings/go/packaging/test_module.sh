#!/bin/sh
# Tests the Go module the way a user outside this checkout gets it: `go get` from a module proxy,
# brokk found through pkg-config in an installed prefix, nothing else set.
#
#   1. installs brokk with `make install PREFIX=<tmp>/prefix`, unless PREFIX is given as $1
#      (an existing `make install` prefix, reused as is);
#   2. makes a file-based GOPROXY holding this tree's bindings/go as MODULE@vVERSION (the module
#      path from bindings/go/go.mod, VERSION from include/brokk.h: the tag a release gets is
#      bindings/go/vVERSION), laid out as a proxy serves it: MODULE/@v/list, .info, .mod, .zip;
#   3. in a fresh module under a temporary folder outside the checkout, with the quickstart
#      below as main.go, runs `go get MODULE@vVERSION` and `go run .`, then builds it twice
#      (default: libbrokk.so; -tags brokk_static: libbrokk.a), runs both binaries and checks
#      their output, that they need no LD_LIBRARY_PATH, that ldd, the RUNPATH and
#      `go version -m` name nothing in this checkout, and that the static one needs no
#      libbrokk.so.
# Go runs under `env -i`: only PATH, HOME, the Go settings that a local proxy needs
# (GOPROXY=file://..., GONOSUMDB=MODULE since the checksum database cannot know an unpublished
# module, GOFLAGS=-mod=mod, GOTOOLCHAIN=local, GOPATH/GOMODCACHE/GOCACHE in the temporary
# folder) and PKG_CONFIG_PATH=PREFIX/lib/pkgconfig (PREFIX/LIBDIR/pkgconfig for an install made
# with LIBDIR=lib/<triplet>). No network is used.
# Prints one summary line; exits non-zero on the first failure (the temporary folder is then
# kept and named). BROKK_GO_CACHE=shared uses the caller's GOCACHE instead of a fresh one.
# Usage: sh bindings/go/packaging/test_module.sh [PREFIX]
set -eu

here=$(cd "$(dirname "$0")" && pwd)
moddir=$(cd "$here/.." && pwd)
root=$(cd "$moddir/../.." && pwd)
start=$(date +%s)
GO=${GO:-go}
gobin=$(command -v "$GO") || { echo "go-module: FAIL: $GO not on PATH"; exit 1; }
gopath_dir=$(dirname "$gobin")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/brokk-go-module.XXXXXX")
case $tmp in "$root"/*) echo "go-module: FAIL: temporary folder $tmp is inside the checkout"; exit 1 ;; esac
ok=0
cleanup() {
    if [ "$ok" = 1 ]; then
        chmod -R u+w "$tmp" 2>/dev/null || true
        rm -rf "$tmp"
    else
        echo "go-module: kept $tmp" >&2
    fi
}
trap cleanup EXIT
fail() { printf 'go-module: FAIL: %s\n' "$*"; exit 1; }

# 1. The installed prefix.
if [ $# -ge 1 ] && [ -n "$1" ]; then
    prefix=$(cd "$1" && pwd) || fail "no such prefix: $1"
else
    prefix=$tmp/prefix
    ${MAKE:-make} -s -C "$root" install PREFIX="$prefix" > "$tmp/install.log" 2>&1 \
        || { cat "$tmp/install.log"; fail "make install PREFIX=$prefix"; }
fi
# PREFIX/lib/pkgconfig, or PREFIX/LIBDIR/pkgconfig for an install with LIBDIR=lib/<triplet>.
pcdir=
for d in "$prefix/lib/pkgconfig" "$prefix"/lib/*/pkgconfig "$prefix/lib64/pkgconfig"; do
    if [ -f "$d/brokk.pc" ]; then pcdir=$d; break; fi
done
[ -n "$pcdir" ] || fail "no brokk.pc under $prefix/lib (not a make install prefix)"
[ -f "$pcdir/brokk-static.pc" ] || fail "$pcdir/brokk-static.pc is missing"
libdir=$(dirname "$pcdir")

# 2. The proxy.
module=$(sed -n 's/^module[[:space:]]*\([^[:space:]]*\).*/\1/p' "$moddir/go.mod")
[ -n "$module" ] || fail "no module line in $moddir/go.mod"
field() { sed -n "s/^#define BROKK_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/brokk.h"; }
version=v$(field MAJOR).$(field MINOR).$(field PATCH)
# A proxy's paths escape each capital letter as ! and its lower case.
escaped=$(printf '%s' "$module" | sed 's/[A-Z]/!&/g' | tr 'A-Z' 'a-z')
at=$tmp/proxy/$escaped/@v
stage=$tmp/stage/$module@$version
mkdir -p "$at" "$stage"
# The files a tag would hold: tracked ones plus new ones not ignored (the working tree's
# content); without git, every file.
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$moddir" && git ls-files -co --exclude-standard -- . ) > "$tmp/files"
else
    (cd "$moddir" && find . -type f | sed 's|^\./||') > "$tmp/files"
fi
while IFS= read -r f; do
    [ -f "$moddir/$f" ] || continue              # deleted but still in the index
    mkdir -p "$stage/$(dirname "$f")"
    cp "$moddir/$f" "$stage/$f"
done < "$tmp/files"
[ -f "$stage/go.mod" ] || fail "go.mod did not make it into the module zip"
(cd "$tmp/stage" && zip -qrXD "$at/$version.zip" "$module@$version") || fail "zip"
cp "$moddir/go.mod" "$at/$version.mod"
printf '{"Version":"%s","Time":"%s"}\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$at/$version.info"
echo "$version" > "$at/list"

# 3. A fresh module outside the checkout.
app=$tmp/app
mkdir -p "$app" "$tmp/home"
cat > "$app/main.go" <<GO
// The Go quickstart: publish three orders, consume them in a group, print what arrived.
package main

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	brokk "$module"
)

func main() {
	b, err := brokk.Open("memory://", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer b.Close(ctx)

	var got atomic.Int32
	_, err = b.Subscribe("orders", func(m *brokk.Message) brokk.Verdict {
		fmt.Printf("consumed %s: %s\n", m.ParentID(), m.Payload())
		got.Add(1)
		return brokk.Ack
	}, &brokk.SubscribeOptions{Group: "billing"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "subscribe:", err)
		os.Exit(1)
	}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("order-%d", i)
		if _, err := b.Publish("orders", []byte(fmt.Sprintf(\`{"qty": %d}\`, i)), &brokk.PublishOptions{ID: id}); err != nil {
			fmt.Fprintln(os.Stderr, "publish:", err)
			os.Exit(1)
		}
	}
	if _, err := b.Join(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		os.Exit(1)
	}
	fmt.Printf("quickstart: published 3, consumed %d\n", got.Load())
}
GO

if [ "${BROKK_GO_CACHE:-}" = shared ]; then
    gocache=$("$GO" env GOCACHE)
else
    gocache=$tmp/gocache
fi
# Only what a user of a local proxy sets, and PKG_CONFIG_PATH for brokk.
gorun() {
    (cd "$app" && env -i PATH="$gopath_dir:/usr/local/bin:/usr/bin:/bin" HOME="$tmp/home" \
        GOPATH="$tmp/gopath" GOMODCACHE="$tmp/gopath/pkg/mod" GOCACHE="$gocache" \
        GOPROXY="file://$tmp/proxy" GONOSUMDB="$module" GOFLAGS=-mod=mod GOTOOLCHAIN=local \
        PKG_CONFIG_PATH="$pcdir" \
        "$@")
}
gorun "$GO" mod init example.com/quickstart > "$tmp/go.log" 2>&1 || { cat "$tmp/go.log"; fail "go mod init"; }
gorun "$GO" get "$module@$version" > "$tmp/go.log" 2>&1 || { cat "$tmp/go.log"; fail "go get $module@$version"; }
grep -q "$module $version" "$app/go.mod" || { cat "$app/go.mod"; fail "go.mod does not require $module $version"; }

check_output() { # FILE WHAT
    for n in 1 2 3; do
        grep -q "^consumed order-$n: {\"qty\": $n}\$" "$1" || { cat "$1"; fail "$2: order-$n not consumed"; }
    done
    grep -q '^quickstart: published 3, consumed 3$' "$1" || { cat "$1"; fail "$2: no summary line"; }
}

gorun "$GO" run . > "$tmp/run.out" 2>&1 || { cat "$tmp/run.out"; fail "go run ."; }
check_output "$tmp/run.out" "go run ."

inspect() { # BINARY WHAT
    gorun "$GO" version -m "$1" > "$tmp/version-m" 2>&1 || { cat "$tmp/version-m"; fail "$2: go version -m"; }
    grep -q "dep[[:space:]]*$module[[:space:]]*$version" "$tmp/version-m" || { cat "$tmp/version-m"; fail "$2: go version -m does not list $module $version"; }
    ldd "$1" > "$tmp/ldd" 2>&1 || true
    readelf -d "$1" > "$tmp/dynamic" 2>&1 || true
    for f in "$tmp/version-m" "$tmp/ldd" "$tmp/dynamic"; do
        if grep -q "$root" "$f"; then cat "$f"; fail "$2: $(basename "$f") names $root"; fi
    done
}

gorun "$GO" build -o "$tmp/quickstart" . > "$tmp/go.log" 2>&1 || { cat "$tmp/go.log"; fail "go build"; }
env -i PATH=/usr/bin:/bin "$tmp/quickstart" > "$tmp/dyn.out" 2>&1 || { cat "$tmp/dyn.out"; fail "the dynamic binary does not run without LD_LIBRARY_PATH"; }
check_output "$tmp/dyn.out" "dynamic binary"
inspect "$tmp/quickstart" "dynamic binary"
cp "$tmp/ldd" "$tmp/ldd.dyn"
grep -q "libbrokk.so.[0-9]* => $libdir/libbrokk.so.[0-9]* " "$tmp/ldd" || { cat "$tmp/ldd"; fail "dynamic binary: libbrokk.so is not found in $libdir"; }

gorun "$GO" build -tags brokk_static -o "$tmp/quickstart-static" . > "$tmp/go.log" 2>&1 || { cat "$tmp/go.log"; fail "go build -tags brokk_static"; }
env -i PATH=/usr/bin:/bin "$tmp/quickstart-static" > "$tmp/static.out" 2>&1 || { cat "$tmp/static.out"; fail "the static binary does not run"; }
check_output "$tmp/static.out" "static binary"
inspect "$tmp/quickstart-static" "static binary"
if grep -q libbrokk "$tmp/ldd"; then cat "$tmp/ldd"; fail "static binary: ldd lists libbrokk"; fi
gorun "$GO" version -m "$tmp/quickstart-static" | grep -q 'build[[:space:]]*-tags=brokk_static' || fail "static binary: built without -tags brokk_static"

ok=1
echo "go-module: OK: $module@$version from a file GOPROXY, in a module outside the checkout with only PKG_CONFIG_PATH=$pcdir: go run, dynamic binary ($(sed -n 's/^[[:space:]]*\(libbrokk[^ ]*\) => .*/\1/p' "$tmp/ldd.dyn") from $libdir by rpath) and -tags brokk_static binary (no libbrokk.so) ran the quickstart ($(( $(date +%s) - start ))s)"
