#!/bin/sh
# The install test (run by ctest from `make test-cpp`): installs brokk into a temporary prefix
# with bindings/c/install.sh, then builds the examples against the installed copy only:
#   1. examples/cpp/pipeline.cpp with `pkg-config --cflags --libs brokk`
#   2. examples/cpp with CMake find_package(brokk CONFIG REQUIRED) and brokk::brokk
#   3. examples/c/pipeline.c (C users) with pkg-config, and with CMake against brokk::brokk
#      and brokk::brokk_static
# checks that each binary loads the installed libbrokk.so, runs each, and checks the package's
# version rules. Usage: install_test.sh REPO_ROOT WORK_DIR (WORK_DIR is emptied first).
set -eu
root=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
CC=${CC:-cc}
CXX=${CXX:-c++}
WARN="-Wall -Wextra -Werror -pedantic"
generator=
if command -v ninja >/dev/null 2>&1; then generator="-G Ninja"; fi

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix
step() { echo "install test: $*"; }

step "installing into $prefix"
sh "$root/bindings/c/install.sh" "$prefix"
for f in lib/libbrokk.so lib/libbrokk.a include/brokk.h include/brokk.hpp lib/pkgconfig/brokk.pc \
         lib/pkgconfig/brokk-static.pc lib/cmake/brokk/brokkConfig.cmake lib/cmake/brokk/brokkConfigVersion.cmake; do
    [ -f "$prefix/$f" ] || { echo "install test: $prefix/$f was not installed" >&2; exit 1; }
done
# The command-line tool, runnable from the prefix alone.
"$prefix/bin/brokk" --url memory:// count > /dev/null ||
    { echo "install test: $prefix/bin/brokk was not installed or does not run" >&2; exit 1; }
# A system library's layout: the real file, its SONAME link and the dev link.
abi=$(sed -n 's/^#define BROKK_ABI_VERSION \([0-9]*\)$/\1/p' "$root/include/brokk.h")
[ "$(readlink "$prefix/lib/libbrokk.so")" = "libbrokk.so.$abi" ] ||
    { echo "install test: lib/libbrokk.so is not a link to libbrokk.so.$abi" >&2; ls -l "$prefix/lib" >&2; exit 1; }
real=$(readlink "$prefix/lib/libbrokk.so.$abi")
[ -f "$prefix/lib/$real" ] && [ ! -L "$prefix/lib/$real" ] ||
    { echo "install test: lib/libbrokk.so.$abi does not link to the real file" >&2; ls -l "$prefix/lib" >&2; exit 1; }
soname=$(readelf -d "$prefix/lib/$real" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libbrokk.so.$abi" ] || { echo "install test: SONAME is '$soname'" >&2; exit 1; }
if readelf -S "$prefix/lib/$real" | grep -q '\.debug_info'; then
    echo "install test: the installed library carries debug info" >&2
    exit 1
fi

# Fails unless binary $1 resolves libbrokk.so.ABI to the installed copy (not target/ of the
# checkout), with nothing in the environment to help.
uses_installed() {
    resolved=$(env -u LD_LIBRARY_PATH ldd "$1" | sed -n "s/^[[:space:]]*libbrokk\\.so\\.$abi => \\([^ ]*\\) .*/\\1/p")
    if [ "$resolved" != "$prefix/lib/libbrokk.so.$abi" ]; then
        echo "install test: $1 loads libbrokk.so from '$resolved', not $prefix/lib" >&2
        ldd "$1" >&2
        exit 1
    fi
}

# ---- pkg-config ----------------------------------------------------------------------------
command -v pkg-config >/dev/null 2>&1 || {
    echo "install test: pkg-config is missing (Debian: apt-get install -y pkgconf)" >&2
    exit 1
}
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
header_version=$(sed -n 's/^#define BROKK_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' "$root/include/brokk.h" | paste -sd. -)
[ "$(pkg-config --modversion brokk)" = "$header_version" ] ||
    { echo "install test: pkg-config says $(pkg-config --modversion brokk), brokk.h $header_version" >&2; exit 1; }
flags=$(pkg-config --cflags --libs brokk)
step "pkg-config --cflags --libs brokk: $flags"

# Nothing but pkg-config's flags: brokk.pc carries the rpath of a prefix the dynamic linker does
# not search by itself.
step "building examples/cpp/pipeline.cpp with pkg-config"
# shellcheck disable=SC2086 # $flags and $WARN are lists of words
$CXX -std=c++17 $WARN "$root/examples/cpp/pipeline.cpp" -o "$work/pipeline-cpp-pkgconfig" $flags -pthread
step "building examples/c/pipeline.c with pkg-config"
# shellcheck disable=SC2086
$CC -std=c11 $WARN "$root/examples/c/pipeline.c" -o "$work/pipeline-c-pkgconfig" $flags -lpthread
step "building examples/c/pipeline.c with pkg-config --static brokk-static"
static_flags=$(pkg-config --static --cflags --libs brokk-static)
# shellcheck disable=SC2086
$CC -std=c11 $WARN "$root/examples/c/pipeline.c" -o "$work/pipeline-c-pkgconfig-static" $static_flags -lpthread
if ldd "$work/pipeline-c-pkgconfig-static" | grep -q libbrokk; then
    echo "install test: pipeline-c-pkgconfig-static links libbrokk.so dynamically" >&2
    exit 1
fi

# ---- CMake ---------------------------------------------------------------------------------
step "building examples/cpp with find_package(brokk CONFIG REQUIRED)"
# shellcheck disable=SC2086
cmake -S "$root/examples/cpp" -B "$work/cmake-cpp" $generator -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_BUILD_TYPE=Release > "$work/cmake-cpp.log" 2>&1 || { cat "$work/cmake-cpp.log" >&2; exit 1; }
found=$(sed -n 's/^brokk_DIR:PATH=//p' "$work/cmake-cpp/CMakeCache.txt")
[ "$found" = "$prefix/lib/cmake/brokk" ] ||
    { echo "install test: CMake found brokk in '$found', not $prefix/lib/cmake/brokk" >&2; exit 1; }
cmake --build "$work/cmake-cpp" > "$work/cmake-cpp-build.log" 2>&1 || { cat "$work/cmake-cpp-build.log" >&2; exit 1; }

step "building examples/c/pipeline.c with brokk::brokk and brokk::brokk_static"
mkdir -p "$work/c-project"
cat > "$work/c-project/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project(brokk_c_install_check LANGUAGES C)
find_package(brokk 0.1 CONFIG REQUIRED)
find_package(Threads REQUIRED)
foreach(kind shared static)
  add_executable(pipeline-c-\${kind} "$root/examples/c/pipeline.c")
  set_target_properties(pipeline-c-\${kind} PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
  target_compile_options(pipeline-c-\${kind} PRIVATE $WARN)
endforeach()
target_link_libraries(pipeline-c-shared PRIVATE brokk::brokk Threads::Threads)
target_link_libraries(pipeline-c-static PRIVATE brokk::brokk_static Threads::Threads)
CMAKE
# shellcheck disable=SC2086
cmake -S "$work/c-project" -B "$work/cmake-c" $generator -DCMAKE_PREFIX_PATH="$prefix" \
    > "$work/cmake-c.log" 2>&1 || { cat "$work/cmake-c.log" >&2; exit 1; }
cmake --build "$work/cmake-c" > "$work/cmake-c-build.log" 2>&1 || { cat "$work/cmake-c-build.log" >&2; exit 1; }
if ldd "$work/cmake-c/pipeline-c-static" | grep -q libbrokk; then
    echo "install test: pipeline-c-static links libbrokk.so dynamically" >&2
    exit 1
fi

# ---- the package's version rules -----------------------------------------------------------
# 0.x: a request for the same major and minor, or the major alone, is satisfied; a newer minor,
# another major, or an older minor is not.
major=${header_version%%.*}
rest=${header_version#*.}
minor=${rest%%.*}
version_case() {  # $1: requested version, $2: 1 if it must be found
    dir="$work/version-$1"
    mkdir -p "$dir"
    printf 'cmake_minimum_required(VERSION 3.16)\nproject(v LANGUAGES NONE)\nfind_package(brokk %s CONFIG REQUIRED)\n' "$1" \
        > "$dir/CMakeLists.txt"
    if cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$prefix" > "$dir/log" 2>&1; then got=1; else got=0; fi
    [ "$got" = "$2" ] || { cat "$dir/log" >&2; echo "install test: find_package(brokk $1) found=$got, expected $2" >&2; exit 1; }
}
version_case "$major.$minor" 1
version_case "$header_version" 1
version_case "$major.$((minor + 1))" 0
version_case "$((major + 1)).0" 0
if [ "$major" = 0 ] && [ "$minor" -gt 0 ]; then
    version_case "0" 1
    version_case "0.$((minor - 1))" 0
fi

# ---- run everything built ------------------------------------------------------------------
for bin in "$work/pipeline-cpp-pkgconfig" "$work/cmake-cpp/pipeline_cpp" "$work/pipeline-c-pkgconfig" \
           "$work/cmake-c/pipeline-c-shared"; do
    uses_installed "$bin"
done
for bin in "$work/pipeline-cpp-pkgconfig" "$work/cmake-cpp/pipeline_cpp" "$work/pipeline-c-pkgconfig" \
           "$work/pipeline-c-pkgconfig-static" "$work/cmake-c/pipeline-c-shared" "$work/cmake-c/pipeline-c-static"; do
    sh "$here/check_pipeline.sh" "$bin"
done
step "passed: C++ and C examples built against $prefix with pkg-config and CMake, and ran"
