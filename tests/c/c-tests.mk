# The C suite (tests/c). Included by the root Makefile, whose CC, CFLAGS, WARN, BUILD,
# LINK_DEBUG and lib-debug it uses.
#
# What it checks is the ABI contract: statuses and last-error text, ownership and lifetimes,
# outputs written only on success, every option field reaching the core, callbacks and their
# threads, and bad input from C. The broker's semantics (priorities, groups, fan-out,
# retention, dead letters, delays) are core/tests/broker.rs's, run on every backend; a C test
# of one is kept only where it also checks something of the ABI.
#
#   make test-c           static checks, every program plainly on memory://, again plainly on
#                         SQLite (a temp file per broker, plus the multi-process test), again on
#                         Redis (a prefix per broker, plus the multi-process test), under
#                         valgrind memcheck and the AddressSanitizer build (test-c-asan; both on
#                         memory:// only); the last line is the total "N passed, N failed" over
#                         all of them. Fails if anything failed.
#   make test-c-plain     just the plain run          make test-c-valgrind   just valgrind
#   make test-c-sqlite    the plain run on SQLite (BROKK_TEST_URL=sqlite; see check.h)
#   make test-c-redis     the plain run on a redis-server of its own (core/src/store/redis/test-server.sh, started
#                         and stopped by run.sh; BROKK_TEST_URL=redis://...; needs redis-server)
#   make test-c-asan      just the ASan/UBSan build   make test-c-static     header/symbol checks
#   make c-tests          build the programs only; run one with build/c-tests/test_x [name filter]
#
# BROKK_TEST_TIMEOUT_SCALE multiplies every wait bound (the valgrind run sets 20).

CXX      ?= g++
CT_SRC   := tests/c
CT_OUT   := $(BUILD)/c-tests
CT_PROGS := test_basics test_lifecycle test_publish test_delivery test_ack test_listeners \
            test_stats test_close test_reentry test_threads test_consumer test_batch test_reliability test_cancel \
            test_peek test_ready test_log \
            test_symbols header_cpp
# Programs only the SQLite and Redis stages run (they need a store shared between processes).
CT_SQLITE_PROGS := test_processes
CT_BINS      := $(addprefix $(CT_OUT)/,$(CT_PROGS))
CT_SQLITE_BINS := $(CT_BINS) $(addprefix $(CT_OUT)/,$(CT_SQLITE_PROGS))
CT_ASAN_BINS := $(addprefix $(CT_OUT)/asan/,$(CT_PROGS))
CT_DEPS      := $(CT_SRC)/check.h $(CT_SRC)/recorder.h include/brokk.h
CT_SAN       := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
CT_VALGRIND  := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
                --show-leak-kinds=definite --num-callers=40 --fair-sched=yes

.PHONY: c-tests test-c test-c-plain test-c-sqlite test-c-redis test-c-valgrind test-c-asan test-c-static

# Under `make test-c` each stage records its counts and carries on, so the final summing step
# can print the total; it then fails if any stage failed. A stage run on its own fails at once.
test-c: CT_KEEP_GOING := 1
test-c: test-c-static test-c-plain test-c-sqlite test-c-redis test-c-valgrind test-c-asan
	@sh $(CT_SRC)/sum.sh $(CT_OUT)/static.counts $(CT_OUT)/plain.counts \
	    $(CT_OUT)/sqlite.counts $(CT_OUT)/redis.counts $(CT_OUT)/valgrind.counts $(CT_OUT)/asan.counts

c-tests: $(CT_SQLITE_BINS) $(CT_ASAN_BINS)

$(CT_OUT) $(CT_OUT)/asan: | $(BUILD)
	mkdir -p $@

# The programs link the debug library: build it first (lib-debug is phony, so order-only).
$(CT_OUT)/%: $(CT_SRC)/%.c $(CT_DEPS) | lib-debug $(CT_OUT)
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< -o $@ $(LINK_DEBUG)

$(CT_OUT)/header_cpp: $(CT_SRC)/header_cpp.cpp include/brokk.h | lib-debug $(CT_OUT)
	$(CXX) -std=c++17 -O1 -g $(WARN) -Iinclude $< -o $@ $(LINK_DEBUG)

# ASan/UBSan builds of the same programs, linked against the same uninstrumented library.
$(CT_OUT)/asan/%: $(CT_SRC)/%.c $(CT_DEPS) | lib-debug $(CT_OUT)/asan
	$(CC) $(CFLAGS) $(WARN) $(CT_SAN) -Iinclude $< -o $@ $(LINK_DEBUG)

$(CT_OUT)/asan/header_cpp: $(CT_SRC)/header_cpp.cpp include/brokk.h | lib-debug $(CT_OUT)/asan
	$(CXX) -std=c++17 -O1 -g $(WARN) $(CT_SAN) -Iinclude $< -o $@ $(LINK_DEBUG)

# The header alone as C11 and C++17, the symbol test against the header's declarations, and
# the library's exports against the header.
test-c-static: lib-debug | $(CT_OUT)
	@CC="$(CC)" CXX="$(CXX)" WARN="$(WARN)" CT_KEEP_GOING="$(CT_KEEP_GOING)" \
	    sh $(CT_SRC)/static_checks.sh $(CT_OUT) target/debug/libbrokk.so

test-c-plain: lib-debug $(CT_BINS)
	@CT_KEEP_GOING="$(CT_KEEP_GOING)" sh $(CT_SRC)/run.sh plain $(CT_OUT) $(CT_BINS)

test-c-sqlite: lib-debug $(CT_SQLITE_BINS)
	@CT_KEEP_GOING="$(CT_KEEP_GOING)" sh $(CT_SRC)/run.sh sqlite $(CT_OUT) $(CT_SQLITE_BINS)

test-c-redis: lib-debug $(CT_SQLITE_BINS)
	@CT_KEEP_GOING="$(CT_KEEP_GOING)" sh $(CT_SRC)/run.sh redis $(CT_OUT) $(CT_SQLITE_BINS)

test-c-valgrind: lib-debug $(CT_BINS)
	@CT_KEEP_GOING="$(CT_KEEP_GOING)" CT_VALGRIND="$(CT_VALGRIND)" \
	    sh $(CT_SRC)/run.sh valgrind $(CT_OUT) $(CT_BINS)

test-c-asan: lib-debug $(CT_ASAN_BINS)
	@CT_KEEP_GOING="$(CT_KEEP_GOING)" sh $(CT_SRC)/run.sh asan $(CT_OUT) $(CT_ASAN_BINS)
