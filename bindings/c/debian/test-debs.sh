#!/bin/sh
# The Debian packages' test (packaging suite, step debian): builds them (build-debs.sh), checks
# them with lintian, then extracts them into a scratch root and builds the C and C++
# quickstarts against its contents alone: with pkg-config (shared and static) and with CMake,
# and runs each; runs the brokk tool from there and checks that its manual page describes
# every command it lists.
#
# lintian must report nothing but initial-upload-closes-no-bugs: the changelog of a first
# upload to Debian names the "intent to package" bug it closes, and brokk has none (it is not
# in Debian's archive; the packages are built for direct installation).
# Usage: sh bindings/c/debian/test-debs.sh WORK_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=${1:?usage: test-debs.sh WORK_DIR}
case $work in /*) ;; *) work=$(pwd)/$work ;; esac
rm -rf "$work"
mkdir -p "$work"
step() { echo "debian: $*"; }
CC=${CC:-cc}
CXX=${CXX:-c++}
WARN="-Wall -Wextra -Werror -pedantic"

sh "$here/build-debs.sh" "$work/debs"
command -v lintian >/dev/null 2>&1 || { echo "debian: lintian is missing (apt-get install -y lintian)" >&2; exit 1; }
step "lintian"
lintian --tag-display-limit 0 "$work"/debs/*.deb > "$work/lintian.log" 2>&1 || true
if grep -E '^[EWX]: ' "$work/lintian.log" | grep -v ': initial-upload-closes-no-bugs ' >&2; then
    echo "debian: lintian reports the lines above" >&2
    exit 1
fi

step "extracting into $work/root"
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir=$work/root/usr/lib/$multiarch
export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$work/root" PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
flags=$(pkg-config --cflags --libs brokk)
static_flags=$(pkg-config --static --cflags --libs brokk-static)
for word in $flags $static_flags; do
    case $word in
        -I"$work/root"/* | -L"$work/root"/* | "$work/root"/* | -l*) ;;
        -I* | -L* | /*) echo "debian: pkg-config names a path outside the packages: $word" >&2; exit 1 ;;
    esac
done
step "C and C++ quickstarts with pkg-config: $flags"
# shellcheck disable=SC2086 # lists of words
$CC -std=c11 $WARN "$root/examples/c/pipeline.c" -o "$work/c-shared" $flags -lpthread
# shellcheck disable=SC2086
$CC -std=c11 $WARN "$root/examples/c/pipeline.c" -o "$work/c-static" $static_flags -lpthread
# shellcheck disable=SC2086
$CXX -std=c++17 $WARN "$root/examples/cpp/pipeline.cpp" -o "$work/cpp-shared" $flags -pthread
step "C quickstart with CMake find_package(brokk) from the extracted root"
mkdir -p "$work/cmake-project"
cat > "$work/cmake-project/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(brokk_deb_check LANGUAGES C)
find_package(brokk 0.1 CONFIG REQUIRED)
find_package(Threads REQUIRED)
add_executable(c-cmake "$root/examples/c/pipeline.c")
target_link_libraries(c-cmake PRIVATE brokk::brokk Threads::Threads)
CMAKE
cmake -S "$work/cmake-project" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$work/root/usr" > "$work/cmake.log" 2>&1 ||
    { cat "$work/cmake.log" >&2; exit 1; }
cmake --build "$work/cmake" > "$work/cmake-build.log" 2>&1 || { cat "$work/cmake-build.log" >&2; exit 1; }

# The programs find the library in the scratch root (a real install puts it where the dynamic
# linker looks), never in the checkout.
export LD_LIBRARY_PATH="$libdir"
for bin in "$work/c-shared" "$work/cpp-shared" "$work/cmake/c-cmake"; do
    resolved=$(ldd "$bin" | sed -n 's/^[[:space:]]*libbrokk\.so\.[0-9]* => \([^ ]*\) .*/\1/p')
    case $resolved in
        "$libdir"/*) ;;
        *) echo "debian: $bin loads libbrokk from '$resolved'" >&2; exit 1 ;;
    esac
done
if ldd "$work/c-static" | grep -q libbrokk; then echo "debian: c-static links libbrokk.so" >&2; exit 1; fi
for bin in "$work/c-shared" "$work/c-static" "$work/cpp-shared" "$work/cmake/c-cmake"; do
    sh "$root/bindings/cpp/tests/check_pipeline.sh" "$bin"
done
step "the brokk tool from the extracted root, and its manual page"
"$work/root/usr/bin/brokk" --version
if ldd "$work/root/usr/bin/brokk" | grep -q libbrokk; then echo "debian: brokk links libbrokk.so" >&2; exit 1; fi
man=$work/root/usr/share/man/man1/brokk.1.gz
# Every command the tool lists is described in the manual page.
for cmd in $("$work/root/usr/bin/brokk" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p' | grep -v '^help$'); do
    pattern=$(echo "$cmd" | sed 's/-/\\\\-/g')
    gzip -dc "$man" | grep -q "^\.BR $pattern " || { echo "debian: the manual page lacks the command $cmd" >&2; exit 1; }
done
step "passed: $(cd "$work/debs" && ls | tr '\n' ' ')lintian-clean but for initial-upload-closes-no-bugs; quickstarts built and ran"
