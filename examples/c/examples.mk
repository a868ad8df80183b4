# The C examples: built against the release library, run by `make test-examples`.
$(BUILD)/pipeline: examples/c/pipeline.c include/brokk.h | $(BUILD)
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< -o $@ $(LINK_RELEASE)

# Facts the pipeline demo must print whatever order its threads run in: six orders committed,
# order 3 requeued once with its reason, exact stats after join (19 dispatched = 18 processed
# + 1 requeued), eight prioritised jobs done by two competing workers, each in priority order,
# a clean close, and the listener's free_user_data run once.
PIPELINE_FACTS := \
	'invoiced 6 of 6 orders' \
	'listener: FAILED order-3 (delivery [0-9]*, attempt 1): inventory service timed out (simulated), requeued=true' \
	'order-3: transform attempts=2 audited=yes committed=yes' \
	'fan-out: order-1 went to transform as delivery [0-9]* and to audit as delivery [0-9]*, both with parent id order-1' \
	'listener saw 55 events: published=12 dispatched=19 processed=18 failed=1' \
	'stats: published=12 unrouted=0 dispatched=19 processed=18 failed=0 requeued=1 dropped=0 in_flight=0' \
	'stats: topics=2 subscriptions=3 listeners=1 workers=4 listener_events_dropped=0' \
	'jobs: 8 waiting, retained until the first worker' \
	'jobs: 8 of 8 done by 2 competing workers ([0-9] + [0-9]); each took its jobs highest priority first: yes' \
	'close: ok (0 deliveries left, 0 retained messages discarded)' \
	'listener released after [0-9]* events' \
	'pipeline done'

# Checks that one run's output ($1) has a line starting with each of PIPELINE_FACTS, and that
# the committer committed six invoices.
define check_pipeline_output
	@for fact in $(PIPELINE_FACTS); do \
	  grep -q -- "^$$fact" $(1) || { echo "examples: $(1) lacks the line: $$fact" >&2; exit 1; }; \
	done
	@test "$$(grep -c '^committer: committed invoice-' $(1))" = 6 || \
	  { echo "examples: $(1) does not show 6 commits" >&2; exit 1; }
endef

$(BUILD)/two_process: examples/c/two_process.c include/brokk.h | $(BUILD)
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< -o $@ $(LINK_RELEASE)

# two_process on a fresh SQLite file: publish then consume as two invocations (the publisher
# has exited before the consumer starts), then the forked demo; each consumer gets all 5.
TWO_PROCESS_DB := $(abspath $(BUILD))/two_process.db
define run_two_process
	@rm -f $(TWO_PROCESS_DB) $(TWO_PROCESS_DB)-wal $(TWO_PROCESS_DB)-shm
	$(BUILD)/two_process publish $(TWO_PROCESS_DB) > $(BUILD)/two_process.out
	$(BUILD)/two_process consume $(TWO_PROCESS_DB) >> $(BUILD)/two_process.out
	$(BUILD)/two_process demo $(TWO_PROCESS_DB) >> $(BUILD)/two_process.out
	@rm -f $(TWO_PROCESS_DB) $(TWO_PROCESS_DB)-wal $(TWO_PROCESS_DB)-shm
	@test "$$(grep -c 'consumed 5 of 5 orders' $(BUILD)/two_process.out)" = 2 && \
	  test "$$(grep -c '{"order":5} (attempt 1)' $(BUILD)/two_process.out)" = 2 && \
	  grep -q '^two_process: done' $(BUILD)/two_process.out || \
	  { cat $(BUILD)/two_process.out >&2; echo "examples: two_process failed" >&2; exit 1; }
	@echo "examples: two_process passed"
endef

VALGRIND := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite

test-examples: lib $(BUILD)/pipeline $(BUILD)/two_process
	$(call run_two_process)
	$(BUILD)/pipeline > $(BUILD)/pipeline.out
	$(call check_pipeline_output,$(BUILD)/pipeline.out)
	$(VALGRIND) --log-file=$(BUILD)/pipeline.valgrind.log $(BUILD)/pipeline > $(BUILD)/pipeline.valgrind.out \
	  || { tail -40 $(BUILD)/pipeline.valgrind.log >&2; exit 1; }
	$(call check_pipeline_output,$(BUILD)/pipeline.valgrind.out)
	@echo "examples: pipeline passed (natively and under valgrind)"
