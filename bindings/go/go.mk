# The Go binding (bindings/go) and its example (examples/go). Included by the root Makefile,
# whose BUILD, `lib` and check_pipeline_output (examples/c/examples.mk) it uses.
#
#   make test-go   gofmt and go vet; go test -race under GODEBUG=cgocheck=1; go test again with
#                  -tags brokk_gc, which forces a GC each time a wrapper hands out its C pointer
#                  so that a missing runtime.KeepAlive becomes a use after free; the examples
#                  once more with -tags brokk_static (libbrokk.a linked in); then the Go
#                  pipeline example (with -race), its output checked for the same facts as the
#                  C demo's.
#                  The tests that call forEachBackend run on memory://, SQLite and Redis (one
#                  redis-server per test binary, started through core/src/store/redis/test-server.sh on first
#                  use and stopped by TestMain; needs redis-server installed).
#   make demo-go   runs the Go pipeline example.
#   make test-go-module
#                  the module as users get it (packaging/test_module.sh): `make install` into a
#                  temporary prefix (or GO_MODULE_PREFIX, an existing one), a file GOPROXY made
#                  from this tree, and a fresh module outside the checkout that `go get`s it and
#                  runs the quickstart, linked dynamically and with -tags brokk_static, with only
#                  PKG_CONFIG_PATH set for brokk. About 35 s (a fresh GOCACHE).
#   make go-pkgconfig
#                  writes build/go-pkgconfig/brokk.pc and brokk-static.pc, pkg-config files for
#                  this checkout (target/release, include/), which the others use.
#
# Needs Go 1.24 or later on PATH, pkg-config, and nothing from the network: the binding uses
# only the standard library and the example finds it through a `replace` in examples/go/go.mod.
# The package finds brokk through pkg-config (`#cgo pkg-config: brokk`, bindings/go/cgo.go);
# here PKG_CONFIG_PATH names build/go-pkgconfig, whose brokk.pc links target/release/libbrokk.so
# (which `lib` builds) with an rpath, so nothing is installed. By hand, in bindings/go or
# examples/go: `make lib go-pkgconfig`, then PKG_CONFIG_PATH=$PWD/../../build/go-pkgconfig.
# BROKK_TEST_TIMEOUT_SCALE multiplies the tests' wait bounds.
#
# Go's build cache does not notice a different pkg-config answer (golang/go#24544): after
# building bindings/go against an installed brokk by hand, `go clean -cache` (or -a) before
# coming back here.

GO       ?= go
GO_DIR   := bindings/go
GO_EX    := examples/go
# This checkout's pkg-config files (packaging/dev-pkgconfig.sh).
GO_PC_DIR := $(BUILD)/go-pkgconfig
# Offline and reproducible: never fetch a module or a toolchain.
GO_ENV   := CGO_ENABLED=1 GOPROXY=off GOTOOLCHAIN=local GODEBUG=cgocheck=1 \
            PKG_CONFIG_PATH=$(abspath $(GO_PC_DIR))
# An existing `make install` prefix for test-go-module; empty: a fresh one in a temporary folder.
GO_MODULE_PREFIX ?=
GO_TEST  := $(GO_ENV) $(GO) test -count=1 -timeout 300s

.PHONY: test-go demo-go test-go-module go-pkgconfig

# Rewritten every time (cheap): the checkout may have moved, or brokk.h's version changed.
go-pkgconfig: | $(BUILD)
	@sh $(GO_DIR)/packaging/dev-pkgconfig.sh $(GO_PC_DIR)

test-go: lib go-pkgconfig | $(BUILD)
	@test -z "$$(gofmt -l $(GO_DIR) $(GO_EX))" || { echo "go: gofmt needed:"; gofmt -l $(GO_DIR) $(GO_EX); exit 1; }
	cd $(GO_DIR) && $(GO_ENV) $(GO) vet ./...
	cd $(GO_EX) && $(GO_ENV) $(GO) vet ./...
	cd $(GO_DIR) && $(GO_TEST) -race ./...
	cd $(GO_DIR) && $(GO_TEST) -tags brokk_gc ./...
	cd $(GO_DIR) && $(GO_TEST) -tags brokk_static -run '^Example' ./...
	cd $(GO_EX) && $(GO_ENV) $(GO) run -race ./pipeline > $(abspath $(BUILD))/go-pipeline.out
	$(call check_pipeline_output,$(BUILD)/go-pipeline.out)
	@echo "go: vet, tests ($$(cd $(GO_DIR) && $(GO_ENV) $(GO) test -list . | grep -c '^Test') tests, -race and -tags brokk_gc; the examples with -tags brokk_static) and the pipeline example passed"

demo-go: lib go-pkgconfig
	cd $(GO_EX) && $(GO_ENV) $(GO) run ./pipeline

test-go-module: lib
	sh $(GO_DIR)/packaging/test_module.sh $(GO_MODULE_PREFIX)
