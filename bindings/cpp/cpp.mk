# C++ binding tests and the install check (placeholder until bindings/cpp lands).
test-cpp:
	@echo "cpp: no tests yet"
