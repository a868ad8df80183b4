# Python binding tests (placeholder until bindings/python lands).
test-python:
	@echo "python: no tests yet"
