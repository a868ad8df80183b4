# The C suite (placeholder until tests/c lands).
test-c:
	@echo "no C tests yet"
