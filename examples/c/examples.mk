# The C examples: built against the release library, run by `make test-examples`.
$(BUILD)/pipeline: examples/c/pipeline.c include/brokk.h | $(BUILD)
	$(CC) $(CFLAGS) $(WARN) -Iinclude $< -o $@ $(LINK_RELEASE)

test-examples: lib $(BUILD)/pipeline
	$(BUILD)/pipeline > $(BUILD)/pipeline.out
	@echo "examples: pipeline ran"
