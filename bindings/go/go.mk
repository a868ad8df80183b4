# Go binding tests (placeholder until bindings/go lands).
test-go:
	@echo "go: no tests yet"
