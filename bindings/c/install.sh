#!/bin/sh
# Installs brokk for C and C++ users under PREFIX (default /usr/local):
#   PREFIX/lib/libbrokk.so, PREFIX/lib/libbrokk.a        the release library (`make lib` builds it)
#   PREFIX/include/brokk.h, PREFIX/include/brokk.hpp     the C API and the header-only C++ binding
#   PREFIX/lib/pkgconfig/brokk.pc                        for `pkg-config --cflags --libs brokk`
#   PREFIX/lib/cmake/brokk/brokkConfig.cmake (+ Version) for find_package(brokk CONFIG), which
#                                                        defines brokk::brokk and brokk::brokk_static
# DESTDIR, if set, is prepended to every path written (for staged packaging); the files still
# name PREFIX. Usage: sh bindings/c/install.sh PREFIX
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
prefix=${1:-/usr/local}
case $prefix in
    /*) ;;
    *) prefix=$(pwd)/$prefix ;;  # the .pc file needs an absolute path
esac
dest=${DESTDIR:-}$prefix
lib=$root/target/release

for f in "$lib/libbrokk.so" "$lib/libbrokk.a" "$root/include/brokk.h" "$root/bindings/cpp/include/brokk.hpp"; do
    [ -f "$f" ] || { echo "install: $f is missing (run \`make lib\` first)" >&2; exit 1; }
done

# The version, from the header that is installed with the library.
field() { sed -n "s/^#define BROKK_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/brokk.h"; }
version=$(field MAJOR).$(field MINOR).$(field PATCH)
case $version in
    *[0-9].*[0-9].*[0-9]) ;;
    *) echo "install: cannot read the version from include/brokk.h (got '$version')" >&2; exit 1 ;;
esac

mkdir -p "$dest/lib/pkgconfig" "$dest/lib/cmake/brokk" "$dest/include"
install -m 0755 "$lib/libbrokk.so" "$dest/lib/libbrokk.so"
install -m 0644 "$lib/libbrokk.a" "$dest/lib/libbrokk.a"
install -m 0644 "$root/include/brokk.h" "$dest/include/brokk.h"
install -m 0644 "$root/bindings/cpp/include/brokk.hpp" "$dest/include/brokk.hpp"

# Templates: @PREFIX@ and @VERSION@. The prefix goes into a sed replacement: escape its | and &.
escaped=$(printf '%s' "$prefix" | sed 's/[|&\\]/\\&/g')
fill() { sed -e "s|@PREFIX@|$escaped|g" -e "s|@VERSION@|$version|g" "$here/$1" > "$dest/$2"; }
fill brokk.pc.in lib/pkgconfig/brokk.pc
fill brokkConfig.cmake.in lib/cmake/brokk/brokkConfig.cmake
fill brokkConfigVersion.cmake.in lib/cmake/brokk/brokkConfigVersion.cmake

echo "install: brokk $version installed under $dest"
