#!/bin/sh
# Installs brokk for C and C++ users under PREFIX (default /usr/local):
#   PREFIX/lib/libbrokk.so.ABI.VERSION                   the release library (`make lib` builds
#                                                        it), SONAME libbrokk.so.ABI (the ABI
#                                                        version: brokk_abi_version())
#   PREFIX/lib/libbrokk.so.ABI -> ..., libbrokk.so -> libbrokk.so.ABI   the runtime and dev links
#   PREFIX/lib/libbrokk.a                                for static linking, debug info stripped
#   PREFIX/include/brokk.h, PREFIX/include/brokk.hpp     the C API and the header-only C++ binding
#   PREFIX/lib/pkgconfig/brokk.pc                        for `pkg-config --cflags --libs brokk`
#   PREFIX/lib/pkgconfig/brokk-static.pc                 for `pkg-config --static --libs brokk-static`
#   PREFIX/lib/cmake/brokk/brokkConfig.cmake (+ Version) for find_package(brokk CONFIG), which
#                                                        defines brokk::brokk and brokk::brokk_static
#   PREFIX/bin/brokk                                     the command-line tool (cli/, docs/cli.md;
#                                                        `make lib` builds it too)
#   PREFIX/share/man/man1/brokk.1                        its manual page (cli/man/brokk.1)
# DESTDIR, if set, is prepended to every path written (for staged packaging); the files still
# name PREFIX. A prefix whose lib/ the dynamic linker does not search by default (anything but
# /usr and /usr/local) gets an rpath in brokk.pc, so that a program built with
# `pkg-config --libs brokk` runs without LD_LIBRARY_PATH; under /usr/local run `ldconfig` once
# after installing (this script does, when it installs there as root without DESTDIR).
# LIBDIR (a directory under PREFIX, default lib) is where the libraries, pkgconfig/ and cmake/
# go: lib/x86_64-linux-gnu for a Debian multiarch layout.
# Usage: [LIBDIR=lib/...] sh bindings/c/install.sh PREFIX
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${1:-/usr/local}
case $prefix in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;  # the .pc file needs an absolute path
esac
dest=${DESTDIR:-}$prefix
libdir=${LIBDIR:-lib}
case $libdir in
    /* | ../* | */../* | *//*) echo "install: LIBDIR must be a relative path under PREFIX (got $libdir)" >&2; exit 1 ;;
esac
# From LIBDIR back to PREFIX, for the relocatable CMake package: lib -> .., lib/x -> ../..
up=$(printf '%s' "$libdir" | sed 's|[^/][^/]*|..|g')
lib=$root/target/release

for f in "$lib/libbrokk.so" "$lib/libbrokk.a" "$lib/brokk" "$root/include/brokk.h" "$root/bindings/cpp/include/brokk.hpp"; do
    [ -f "$f" ] || { echo "install: $f is missing (run \`make lib\` first)" >&2; exit 1; }
done

# The version, from the header that is installed with the library.
field() { sed -n "s/^#define BROKK_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/brokk.h"; }
version=$(field MAJOR).$(field MINOR).$(field PATCH)
case $version in
    *[0-9].*[0-9].*[0-9]) ;;
    *) echo "install: cannot read the version from include/brokk.h (got '$version')" >&2; exit 1 ;;
esac

# The SONAME's number is the ABI version, which the library was built with.
abi=$(sed -n 's/^#define BROKK_ABI_VERSION \([0-9][0-9]*\)$/\1/p' "$root/include/brokk.h")
[ -n "$abi" ] || { echo "install: cannot read BROKK_ABI_VERSION from include/brokk.h" >&2; exit 1; }
soname=libbrokk.so.$abi
if command -v readelf >/dev/null 2>&1; then
    built=$(readelf -d "$lib/libbrokk.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$built" = "$soname" ] || { echo "install: $lib/libbrokk.so has SONAME '$built', not $soname (rebuild with \`make lib\`)" >&2; exit 1; }
fi
real=$soname.$version

L=$dest/$libdir
mkdir -p "$L/pkgconfig" "$L/cmake/brokk" "$dest/include"
rm -f "$L/libbrokk.so" "$L/$soname"
# 0644, as Debian policy has shared libraries: nothing executes it.
install -m 0644 "$lib/libbrokk.so" "$L/$real"
ln -s "$real" "$L/$soname"
ln -s "$soname" "$L/libbrokk.so"
install -m 0644 "$lib/libbrokk.a" "$L/libbrokk.a"
# The Rust standard library's objects in the archive carry debug info (the release profile
# leaves out only brokk's own): strip it, as a distribution's packaging would.
if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$L/libbrokk.a"
fi
install -m 0644 "$root/include/brokk.h" "$dest/include/brokk.h"
install -m 0644 "$root/bindings/cpp/include/brokk.hpp" "$dest/include/brokk.hpp"
# The command-line tool links the core statically: it needs no libbrokk.so.
mkdir -p "$dest/bin"
install -m 0755 "$lib/brokk" "$dest/bin/brokk"
mkdir -p "$dest/share/man/man1"
install -m 0644 "$root/cli/man/brokk.1" "$dest/share/man/man1/brokk.1"

# Templates: @PREFIX@ and @VERSION@. The prefix goes into a sed replacement: escape its | and &.
escaped=$(printf '%s' "$prefix" | sed 's/[|&\\]/\\&/g')
case $prefix in
    /usr | /usr/local) rpath= ;;  # searched by the dynamic linker (its multiarch lib/ too)
    *) rpath='-Wl,-rpath,${libdir} ' ;;
esac
fill() {
    sed -e "s|@PREFIX@|$escaped|g" -e "s|@VERSION@|$version|g" -e "s|@SOVERSION@|$abi.$version|g" \
        -e "s|@ABI@|$abi|g" -e "s|@RPATH@|$rpath|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@UP@|$up|g" \
        "$here/$1" > "$L/$2"
}
fill brokk.pc.in pkgconfig/brokk.pc
fill brokk-static.pc.in pkgconfig/brokk-static.pc
fill brokkConfig.cmake.in cmake/brokk/brokkConfig.cmake
fill brokkConfigVersion.cmake.in cmake/brokk/brokkConfigVersion.cmake

if [ -z "${DESTDIR:-}" ] && [ "$prefix" = /usr/local ] && [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then
    ldconfig
fi
echo "install: brokk $version ($real, SONAME $soname) installed under $dest"
