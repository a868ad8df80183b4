#!/bin/sh
# Builds brokk's Debian packages from the release library (`make deb`):
#   libbrokk<ABI>   the shared library: /usr/lib/<multiarch>/libbrokk.so.<ABI>.<version> and its
#                   SONAME link (stripped of its symbol table, as Debian ships libraries)
#   libbrokk-dev    what a program is built with: brokk.h, brokk.hpp, the libbrokk.so dev link,
#                   libbrokk.a, brokk.pc, brokk-static.pc and the CMake package
#   brokk           the command-line tool: /usr/bin/brokk (the core is linked in statically, so
#                   it needs no libbrokk) and its manual page
# into OUT_DIR (default build/deb), by staging `bindings/c/install.sh /usr` under a DESTDIR and
# packing each half with dpkg-deb. Dependencies come from dpkg-shlibdeps; the library's
# shlibs file lets packages built against it depend on libbrokk<ABI> in turn.
# Usage: sh bindings/c/debian/build-debs.sh [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/build/deb}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac

field() { sed -n "s/^#define BROKK_$1 \([0-9][0-9]*\)$/\1/p" "$root/include/brokk.h"; }
version=$(field VERSION_MAJOR).$(field VERSION_MINOR).$(field VERSION_PATCH)
abi=$(field ABI_VERSION)
debversion=$version-1
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
lib=libbrokk$abi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/stage
DESTDIR=$stage LIBDIR=lib/$multiarch sh "$root/bindings/c/install.sh" /usr > "$work/install.log"
L=usr/lib/$multiarch
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/$L/libbrokk.so.$abi.$version"
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/brokk"
gzip -9n "$stage/usr/share/man/man1/brokk.1"

# Splits the staged tree into the three packages' roots.
runtime=$work/$lib
dev=$work/libbrokk-dev
tool=$work/brokk
mkdir -p "$runtime/$L" "$dev/$L" "$tool/usr"
mv "$stage/$L/libbrokk.so.$abi".* "$stage/$L/libbrokk.so.$abi" "$runtime/$L/"
mv "$stage/$L/"* "$dev/$L/"
mv "$stage/usr/include" "$dev/usr/"
mv "$stage/usr/bin" "$stage/usr/share" "$tool/usr/"

# Documentation every package carries: the copyright (machine-readable) and the changelog.
for pkg in "$runtime" "$dev" "$tool"; do
    name=$(basename "$pkg")
    doc=$pkg/usr/share/doc/$name
    mkdir -p "$doc"
    sed "s/@YEAR@/$(date -u +%Y)/" "$here/copyright" > "$doc/copyright"
    sed -e "s/@PACKAGE@/$name/" -e "s/@DEBVERSION@/$debversion/" \
        -e "s/@DATE@/$(date -u -R)/" "$here/changelog.in" | gzip -9n > "$doc/changelog.Debian.gz"
    chmod 0644 "$doc/copyright" "$doc/changelog.Debian.gz"
done

# The runtime package: its shlibs (for packages built against it) and ldconfig trigger.
mkdir -p "$runtime/DEBIAN"
echo "libbrokk $abi $lib (>= $version)" > "$runtime/DEBIAN/shlibs"
echo "activate-noawait ldconfig" > "$runtime/DEBIAN/triggers"
chmod 0644 "$runtime/DEBIAN/shlibs" "$runtime/DEBIAN/triggers"
# dpkg-shlibdeps wants a debian/control of a source package to exist where it runs.
mkdir -p "$work/src/debian"
printf 'Source: brokk\n\nPackage: %s\nArchitecture: any\n' "$lib" > "$work/src/debian/control"
deps=$(cd "$work/src" && dpkg-shlibdeps -O "$runtime/$L/libbrokk.so.$abi.$version" 2>"$work/shlibdeps.log" |
       sed -n 's/^shlibs:Depends=//p')
tool_deps=$(cd "$work/src" && dpkg-shlibdeps -O "$tool/usr/bin/brokk" 2>>"$work/shlibdeps.log" |
       sed -n 's/^shlibs:Depends=//p')
strip_size() { du -k -s "$1/usr" | cut -f1; }

control() {  # control PKG_ROOT NAME DEPENDS SECTION SHORT LONG...
    dir=$1/DEBIAN
    mkdir -p "$dir"
    {
        echo "Package: $2"
        echo "Source: brokk"
        echo "Version: $debversion"
        echo "Architecture: $arch"
        echo "Maintainer: The brokk authors <brokk@brokk.dev>"
        echo "Installed-Size: $(strip_size "$1")"
        [ -n "$3" ] && echo "Depends: $3"
        [ "$2" = "$lib" ] && echo "Multi-Arch: same"
        echo "Section: $4"
        echo "Priority: optional"
        echo "Homepage: https://brokk.dev"
        echo "Description: $5"
        shift 5
        for line in "$@"; do echo " $line"; done
    } > "$dir/control"
}
control "$runtime" "$lib" "$deps" libs "embeddable message broker (shared library)" \
    "brokk is a message broker that a program embeds: JSON messages on topics," \
    "push subscriptions and pull consumers, acks and retries, priorities," \
    "consumer groups, listeners and statistics, kept in memory, in a SQLite file" \
    "or on a Redis server." \
    "." \
    "This package contains the shared library."
control "$dev" libbrokk-dev "$lib (= $debversion)" libdevel "embeddable message broker (development files)" \
    "brokk is a message broker that a program embeds: JSON messages on topics," \
    "push subscriptions and pull consumers, acks and retries, priorities," \
    "consumer groups, listeners and statistics, kept in memory, in a SQLite file" \
    "or on a Redis server." \
    "." \
    "This package contains the C header, the header-only C++17 binding, the" \
    "static library, and the pkg-config and CMake files."

control "$tool" brokk "$tool_deps" utils "embeddable message broker (command-line tool)" \
    "brokk is a message broker that a program embeds: JSON messages on topics," \
    "push subscriptions and pull consumers, acks and retries, priorities," \
    "consumer groups, listeners and statistics, kept in memory, in a SQLite file" \
    "or on a Redis server." \
    "." \
    "This package contains the brokk tool, which shows a store's statistics in a" \
    "table, as JSON or for Prometheus, counts and purges topics, shows the next" \
    "messages of a consumer group without taking them, publishes, follows a" \
    "topic, and lists and requeues dead letters."

mkdir -p "$out"
for pkg in "$runtime" "$dev" "$tool"; do
    find "$pkg" -type d -exec chmod 0755 {} +
    dpkg-deb --root-owner-group --build "$pkg" "$out" > /dev/null
done
echo "deb: built $(cd "$out" && ls ${lib}_${debversion}_$arch.deb libbrokk-dev_${debversion}_$arch.deb brokk_${debversion}_$arch.deb | tr '\n' ' ')in $out"
