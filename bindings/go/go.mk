# The Go binding (bindings/go) and its example (examples/go). Included by the root Makefile,
# whose BUILD, `lib` and check_pipeline_output (examples/c/examples.mk) it uses.
#
#   make test-go   gofmt and go vet; go test -race under GODEBUG=cgocheck=1; go test again with
#                  -tags brokk_gc, which forces a GC each time a wrapper hands out its C pointer
#                  so that a missing runtime.KeepAlive becomes a use after free; then the Go
#                  pipeline example (with -race), its output checked for the same facts as the
#                  C demo's.
#                  The tests that call forEachBackend run on memory://, SQLite and Redis (one
#                  redis-server per test binary, started through core/src/store/redis/test-server.sh on first
#                  use and stopped by TestMain; needs redis-server installed).
#   make demo-go   runs the Go pipeline example.
#
# Needs Go 1.24 or later on PATH, and nothing from the network: the binding uses only the
# standard library and the example finds it through a `replace` in examples/go/go.mod. The
# package links target/release/libbrokk.so with an rpath (bindings/go/cgo.go), which `lib`
# builds. BROKK_TEST_TIMEOUT_SCALE multiplies the tests' wait bounds.

GO       ?= go
GO_DIR   := bindings/go
GO_EX    := examples/go
# Offline and reproducible: never fetch a module or a toolchain.
GO_ENV   := CGO_ENABLED=1 GOPROXY=off GOTOOLCHAIN=local GODEBUG=cgocheck=1
GO_TEST  := $(GO_ENV) $(GO) test -count=1 -timeout 300s

.PHONY: test-go demo-go

test-go: lib | $(BUILD)
	@test -z "$$(gofmt -l $(GO_DIR) $(GO_EX))" || { echo "go: gofmt needed:"; gofmt -l $(GO_DIR) $(GO_EX); exit 1; }
	cd $(GO_DIR) && $(GO_ENV) $(GO) vet ./...
	cd $(GO_EX) && $(GO_ENV) $(GO) vet ./...
	cd $(GO_DIR) && $(GO_TEST) -race ./...
	cd $(GO_DIR) && $(GO_TEST) -tags brokk_gc ./...
	cd $(GO_EX) && $(GO_ENV) $(GO) run -race ./pipeline > $(abspath $(BUILD))/go-pipeline.out
	$(call check_pipeline_output,$(BUILD)/go-pipeline.out)
	@echo "go: vet, tests ($$(cd $(GO_DIR) && $(GO_ENV) $(GO) test -list . | grep -c '^Test') tests, -race and -tags brokk_gc) and the pipeline example passed"

demo-go: lib
	cd $(GO_EX) && $(GO_ENV) $(GO) run ./pipeline
