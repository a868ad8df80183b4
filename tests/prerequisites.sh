#!/bin/sh
# What the test command needs from the machine, in one place: `make test` runs this first and
# stops at once, printing the one command that installs what is missing; .ci/run installs the
# Debian packages it lists. Everything else a suite needs (Python virtualenvs and packages,
# tadween-core and pynenc from PyPI, the peers' suites, Redis servers, FerretDB) the suites
# fetch, build or start themselves.
#   sh tests/prerequisites.sh              checks; exit 1 with the install command if anything is missing
#   sh tests/prerequisites.sh --apt        prints the missing Debian packages (none: nothing)
set -u
apt=""
other=""
need() {  # need PACKAGE TEST...: PACKAGE is missing unless TEST succeeds
    pkg=$1
    shift
    "$@" >/dev/null 2>&1 || apt="$apt $pkg"
}
have() { command -v "$1"; }
need gcc have cc
need g++ have c++
need make have make
need valgrind have valgrind
need cmake have cmake
need ninja-build have ninja
need pkgconf have pkg-config
need libgtest-dev test -f /usr/include/gtest/gtest.h
need libzmq3-dev test -f /usr/include/zmq.h
need python3 have python3
need python3-venv python3 -c 'import ensurepip, venv'
# The Redis store's tests start their own servers (and a three-node cluster with redis-cli).
need redis-server have redis-server
need redis-tools have redis-cli
# The Redis TLS tests make their CA and certificates (core/src/store/redis/test-certs.sh).
need openssl have openssl
# The packaging suite: the C API reference and the Debian packages' check.
need doxygen have doxygen
need lintian have lintian
need dpkg-dev have dpkg-shlibdeps

if [ "${1:-}" = --apt ]; then
    echo $apt
    exit 0
fi

have cargo >/dev/null || other="$other
  Rust (cargo, 1.89 or later):  curl https://sh.rustup.rs -sSf | sh"
have go >/dev/null || other="$other
  Go (1.24 or later):            https://go.dev/dl/"
# pynenc 0.4.0 needs Python 3.12 for the plugin's tests (bindings/python/python.mk).
py312=no
for p in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 && py312=yes && break
done
[ $py312 = yes ] || other="$other
  Python 3.12 (pynenc's tests):  pyenv install 3.12   (or set PYNENC_PYTHON=/path/to/python3.12)"

if [ -z "$apt" ] && [ -z "$other" ]; then
    exit 0
fi
echo "make test: this machine lacks what the tests need. Install it, then run make test again:" >&2
[ -n "$apt" ] && echo "  sudo apt-get install -y$apt" >&2
[ -n "$other" ] && echo "$other" | sed '1d' >&2
exit 1
