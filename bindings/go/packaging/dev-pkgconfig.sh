#!/bin/sh
# Writes brokk.pc and brokk-static.pc for this checkout's build tree into OUTDIR, so that the Go
# binding (whose cgo.go asks `#cgo pkg-config: brokk`) builds against target/release and
# include/ without `make install`:
#   sh bindings/go/packaging/dev-pkgconfig.sh build/go-pkgconfig
#   PKG_CONFIG_PATH=$PWD/build/go-pkgconfig go test ./...      (in bindings/go)
# The files are the installed ones (bindings/c/brokk.pc.in, brokk-static.pc.in, so Libs.private
# stays the same) with libdir = ROOT/target/release and includedir = ROOT/include, and the rpath
# that install.sh gives any prefix but /usr and /usr/local. `make test-go` runs this (go.mk).
# Usage: sh dev-pkgconfig.sh OUTDIR
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:?usage: dev-pkgconfig.sh OUTDIR}
tmpl=$root/bindings/c

field() { sed -n "s/^#define BROKK_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/brokk.h"; }
version=$(field MAJOR).$(field MINOR).$(field PATCH)
case $version in
    *[0-9].*[0-9].*[0-9]) ;;
    *) echo "dev-pkgconfig: cannot read the version from $root/include/brokk.h" >&2; exit 1 ;;
esac

escaped=$(printf '%s' "$root" | sed 's/[|&\\]/\\&/g')
mkdir -p "$out"
for name in brokk brokk-static; do
    sed -e "s|@PREFIX@|$escaped|g" -e "s|@VERSION@|$version|g" \
        -e 's|@RPATH@|-Wl,-rpath,${libdir} |g' \
        -e 's|^libdir=.*|libdir=${prefix}/target/release|' \
        -e 's|^includedir=.*|includedir=${prefix}/include|' \
        -e "s|written by bindings/c/install.sh|for this checkout's build tree, written by bindings/go/packaging/dev-pkgconfig.sh|" \
        "$tmpl/$name.pc.in" > "$out/$name.pc.tmp"
    if grep -q '@[A-Z_]*@' "$out/$name.pc.tmp"; then
        echo "dev-pkgconfig: $tmpl/$name.pc.in has a placeholder this script does not fill:" >&2
        grep '@[A-Z_]*@' "$out/$name.pc.tmp" >&2
        exit 1
    fi
    mv "$out/$name.pc.tmp" "$out/$name.pc"
done
