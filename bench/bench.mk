# Benchmarks (bench/README.md). Included by the root Makefile, which provides CARGO, CC, BUILD
# and `lib` (target/release/libbrokk.so).
#
#   make bench-all      release build, every program, every scenario, 3 rounds (~12 min on 2
#                       cores), then build/bench/results.json, docs/bench/results.md and
#                       docs/bench/results.png
#   make bench-smoke    the same programs at tiny sizes (seconds): checks only that each builds
#                       and runs; results in build/bench/smoke/, never a timed assertion
#   make bench-report   redraws docs/bench/ from build/bench/results.json
#   make bench-profile  callgrind of the C 1->1 hot path and cProfile of the Python binding,
#                       into build/bench/profile/ (the data behind docs/bench/analysis.md)
#
# Peers that cannot be built here are skipped with the reason (and what to install), never
# failed: ZeroMQ needs Debian's libzmq3-dev, the raw channel needs crates.io (crossbeam-channel),
# the hand-written SQLite peer needs crates.io (rusqlite, SQLite bundled: a C compiler),
# the Go program needs go and bindings/go, the Python peers need PyPI (tadween-core, pynenc,
# matplotlib) and a Python 3.12 for pynenc, the pynenc-redis peer a second venv
# (build/bench/venv-redis: pynenc-redis 0.3.0 with pynenc 0.3.1). The Redis rows need Debian's
# redis-server (run.py starts one through core/src/store/redis/test-server.sh) and redis-tools (redis-benchmark). BENCH_REPEAT=N (default 3) runs every scenario N
# times, round after round, and keeps the median run.

CARGO ?= cargo
BUILD ?= build
BENCH_DIR   := $(BUILD)/bench
BENCH_BIN   := $(BENCH_DIR)/bin
BENCH_SKIP  := $(BENCH_DIR)/skip
BENCH_VENV  := $(BENCH_DIR)/venv
BENCH_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -pthread
BENCH_LINK  := -Ltarget/release -Wl,-rpath,$(abspath target/release) -lbrokk -lpthread
# The venv's interpreter runs everything once it exists (it has matplotlib for the chart).
BENCH_PY = $$( [ -x $(BENCH_VENV)/bin/python ] && echo $(BENCH_VENV)/bin/python || echo python3 )
BENCH_REPEAT ?= 3

.PHONY: bench-all bench-smoke bench-build bench-build-c bench-build-zmq bench-build-channel \
        bench-build-sqlite bench-build-go bench-venv bench-report bench-profile bench-clean

bench-all: lib bench-build bench-venv
	BENCH_REPEAT=$(BENCH_REPEAT) $(BENCH_PY) bench/run.py --report

# BENCH_SMOKE_VENV=0 skips creating the venv (the Python peers are then skipped if absent).
bench-smoke: lib bench-build $(if $(filter 0,$(BENCH_SMOKE_VENV)),,bench-venv)
	$(BENCH_PY) bench/run.py --smoke --repeat 1 --report

bench-build: bench-build-c bench-build-zmq bench-build-channel bench-build-sqlite bench-build-go

$(BENCH_BIN) $(BENCH_SKIP):
	mkdir -p $@

# brokk itself: always required.
bench-build-c: lib | $(BENCH_BIN)
	$(CC) $(BENCH_CFLAGS) -Iinclude -Ibench/c bench/c/brokk_bench.c -o $(BENCH_BIN)/brokk_bench $(BENCH_LINK)

bench-build-zmq: | $(BENCH_BIN) $(BENCH_SKIP)
	@rm -f $(BENCH_SKIP)/zmq-pushpull $(BENCH_SKIP)/zmq-pubsub
	@if pkg-config --exists libzmq 2>/dev/null; then \
	    echo "$(CC) ... bench/c/zmq_bench.c -lzmq"; \
	    $(CC) $(BENCH_CFLAGS) -Ibench/c bench/c/zmq_bench.c -o $(BENCH_BIN)/zmq_bench \
	        $$(pkg-config --cflags --libs libzmq) -lpthread; \
	else \
	    msg="libzmq not found: apt-get install -y libzmq3-dev"; \
	    echo "bench: SKIP ZeroMQ peers: $$msg"; \
	    echo "$$msg" > $(BENCH_SKIP)/zmq-pushpull; echo "$$msg" > $(BENCH_SKIP)/zmq-pubsub; \
	fi

# Its own Cargo project and target directory: the main crate's manifest and target/ are untouched.
bench-build-channel: | $(BENCH_BIN) $(BENCH_SKIP)
	@rm -f $(BENCH_SKIP)/crossbeam
	@if $(CARGO) build --release --quiet --manifest-path bench/rust/Cargo.toml \
	        --target-dir $(BENCH_DIR)/rust-target --bin brokk-bench-channel 2>$(BENCH_SKIP)/crossbeam.log; then \
	    cp $(BENCH_DIR)/rust-target/release/brokk-bench-channel $(BENCH_BIN)/channel_bench; \
	else \
	    cat $(BENCH_SKIP)/crossbeam.log; \
	    echo "cargo build of bench/rust failed (crossbeam-channel from crates.io; see build/bench/skip/crossbeam.log)" \
	        | tee $(BENCH_SKIP)/crossbeam; \
	fi

# The hand-written SQLite peer: the same Cargo project, its binary behind the "sqlite" feature so
# that a failure to get or build rusqlite leaves the channel peer alone.
bench-build-sqlite: | $(BENCH_BIN) $(BENCH_SKIP)
	@rm -f $(BENCH_SKIP)/rusqlite
	@if $(CARGO) build --release --quiet --manifest-path bench/rust/Cargo.toml \
	        --target-dir $(BENCH_DIR)/rust-target --features sqlite --bin brokk-bench-sqlite \
	        2>$(BENCH_SKIP)/rusqlite.log; then \
	    cp $(BENCH_DIR)/rust-target/release/brokk-bench-sqlite $(BENCH_BIN)/sqlite_bench; \
	else \
	    cat $(BENCH_SKIP)/rusqlite.log; \
	    echo "cargo build of bench/rust --features sqlite failed (rusqlite from crates.io, SQLite bundled; see build/bench/skip/rusqlite.log)" \
	        | tee $(BENCH_SKIP)/rusqlite; \
	fi

# The Go binding is built from bindings/go (a replace directive); skipped while it does not build.
bench-build-go: lib go-pkgconfig | $(BENCH_BIN) $(BENCH_SKIP)
	@rm -f $(BENCH_SKIP)/brokk-go
	@if ! command -v go >/dev/null 2>&1; then \
	    echo "go not installed" | tee $(BENCH_SKIP)/brokk-go; \
	elif (cd bench/go && PKG_CONFIG_PATH=$(abspath $(GO_PC_DIR)) go build -o $(abspath $(BENCH_BIN))/gobench .) 2>$(BENCH_SKIP)/go.log; then \
	    echo "go build bench/go -> $(BENCH_BIN)/gobench"; \
	else \
	    echo "bench: SKIP Go: bindings/go does not build yet:"; sed -n 1,10p $(BENCH_SKIP)/go.log; \
	    echo "bindings/go does not build: $$(head -c 300 $(BENCH_SKIP)/go.log | tr '\n' ' ')" > $(BENCH_SKIP)/brokk-go; \
	fi

bench-venv: | $(BENCH_SKIP)
	@sh bench/venv.sh $(BENCH_VENV) $(BENCH_SKIP)
	@sh bench/venv.sh --redis $(BENCH_VENV)-redis $(BENCH_SKIP)

bench-report:
	$(BENCH_PY) bench/report.py $(BENCH_DIR)/results.json

# Where the time goes (docs/bench/analysis.md). `perf stat -e instructions` is not supported in
# this VM, so the C hot path goes through callgrind on a smaller run.
bench-profile: lib bench-build-c bench-venv
	sh bench/profile.sh $(BENCH_DIR)/profile $(BENCH_BIN)/brokk_bench "$(BENCH_PY)"

bench-clean:
	rm -rf $(BENCH_DIR)
