# brokk's driver. `make demo` runs the C pipeline demo; `make test` runs every test.
# Everything builds from this checkout; nothing is installed system-wide.

CARGO   ?= cargo
CC      ?= cc
CFLAGS  ?= -std=c11 -O1 -g
WARN    := -Wall -Wextra -Werror -pedantic
BUILD   := build
DEBUG_LIB   := target/debug
RELEASE_LIB := target/release
# Tests link the debug library; the demo links the release one. rpath: no LD_LIBRARY_PATH needed.
LINK_DEBUG   := -L$(DEBUG_LIB) -Wl,-rpath,$(abspath $(DEBUG_LIB)) -lbrokk -lpthread
LINK_RELEASE := -L$(RELEASE_LIB) -Wl,-rpath,$(abspath $(RELEASE_LIB)) -lbrokk -lpthread

.PHONY: all lib lib-debug demo test test-runner test-rust test-c test-examples header install clean \
        api-docs test-packaging deb

all: lib

# The library, and the command-line tool (cli/, target/release/brokk; docs/cli.md).
lib:
	$(CARGO) build --release --lib
	$(CARGO) build --release -p brokk-cli --bin brokk

lib-debug:
	$(CARGO) build --lib

# Regenerates include/brokk.h from src/ (the header test fails until you do).
header:
	BROKK_WRITE_HEADER=1 $(CARGO) build --lib

$(BUILD):
	mkdir -p $(BUILD)

include examples/c/examples.mk
include tests/c/c-tests.mk
include bindings/cpp/cpp.mk
include bindings/go/go.mk
include bindings/python/python.mk
include bindings/python/tadween-suite.mk
include bench/bench.mk

demo: lib $(BUILD)/pipeline
	$(BUILD)/pipeline

# Every suite, one after another, each run even when an earlier one failed (tests/run_suites.py):
# live output, each suite's also in build/test-logs/SUITE.log, then a table and, as the last
# line, the total "N passed, N failed, N skipped". Fails if anything failed.
# SUITES="c examples" runs only those (tests/run_suites.py --list names them; any other NAME
# runs make test-NAME, NAME=COMMAND a shell command). Each suite also runs alone: make test-c.
SUITES ?=
TEST_PYTHON ?= python3
test:
	@sh tests/prerequisites.sh
	@$(TEST_PYTHON) tests/run_suites.py --make "$(MAKE)" $(SUITES)

# The runner's own tests (its parsers on sample outputs of each test runner): the suite "runner".
test-runner:
	$(TEST_PYTHON) tests/run_suites_test.py

test-rust:
	$(CARGO) test --workspace --all-targets --no-fail-fast
	@# The core with no backend but memory: it builds, and a SQLite or Redis URL names the
	@# cargo feature that would bring it back.
	$(CARGO) test -p brokk-core --no-default-features --lib config::

test-loom: loom

# Three seconds of the soak's mixed load, with its memory and count checks.
test-soak-smoke:
	SOAK_SECONDS=3 $(CARGO) run --release -p brokk-core --example soak

# Installs the library, brokk.h, brokk.hpp, pkg-config and CMake package files, and the brokk
# command-line tool (PREFIX/bin) under PREFIX (default /usr/local; DESTDIR honoured).
install: lib
	sh bindings/c/install.sh "$(PREFIX)"

# The API reference under build/api/: C from brokk.h's doc comments (Doxygen, warnings are
# errors), Rust (cargo doc of brokk-core, warnings are errors), Python (pydoc of each module of
# the binding), Go (go doc -all).
api-docs: lib
	rm -rf $(BUILD)/api && mkdir -p $(BUILD)/api/python $(BUILD)/api/go
	doxygen docs/api/Doxyfile
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p brokk-core --no-deps --target-dir $(BUILD)/api/rust
	cd $(BUILD)/api/python && PYTHONPATH=$(CURDIR)/bindings/python BROKK_LIBRARY=$(CURDIR)/target/release/libbrokk.so \
	    $(TEST_PYTHON) -m pydoc -w brokk brokk._broker brokk._message brokk._errors brokk._cancel brokk._peek brokk._log brokk.aio > pydoc.log
	cd bindings/go && go doc -all . > $(CURDIR)/$(BUILD)/api/go/brokk.txt
	@echo "api-docs: build/api/c/html/index.html, build/api/rust/doc/brokk_core/index.html, build/api/python/brokk.html, build/api/go/brokk.txt"

# The Debian packages libbrokk<ABI>, libbrokk-dev and brokk (the tool), into build/deb (bindings/c/debian).
deb: lib
	sh bindings/c/debian/build-debs.sh $(BUILD)/deb

# Installing outside the checkout (tests/packaging.sh): the API reference, the Debian packages.
test-packaging: lib
	sh tests/packaging.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD)

# Benchmarks side by side with peers (about twelve minutes): results in build/bench/results.json,
# docs/bench/results.md and docs/bench/results.png.
.PHONY: bench test-bench-smoke
bench: bench-all

# The test command only checks that every benchmark program builds and runs at a tiny size
# (without the PyPI peers' virtualenv); it never asserts on speed.
test-bench-smoke:
	BENCH_SMOKE_VENV=0 $(MAKE) bench-smoke

# Opt-in soak: SOAK_SECONDS of mixed load (default 120), then memory and count checks.
.PHONY: soak loom
soak:
	SOAK_SECONDS=$${SOAK_SECONDS:-120} $(CARGO) run --release -p brokk-core --example soak

# Exhaustive interleavings of the join/close accounting (about two minutes).
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release -p brokk-core --lib loom_tests
