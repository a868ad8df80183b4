# The C++ binding (bindings/cpp): the header-only brokk.hpp, its GoogleTest suite, the C++
# example and the install check. Included by the root Makefile, whose BUILD, WARN, CXX,
# DEBUG_LIB, LINK_RELEASE, lib and lib-debug it uses.
#
#   make test-cpp   configures CMake (Ninja) into build/cpp, builds, and runs ctest, whose summary
#                   line ends the output. ctest runs: the suite against the debug library (one
#                   ctest test per TEST), the same suite under AddressSanitizer + UBSan ("asan."),
#                   the plain suite under valgrind if installed ("valgrind.brokk_cpp_tests"),
#                   the header compiled as C++14, which must fail saying it needs C++17
#                   ("header.cxx14_says_it_needs_cxx17"), the C++ example with its expected
#                   facts ("example.pipeline"), and the install test
#                   ("install.pkgconfig_and_cmake": bindings/c/install.sh into
#                   build/cpp/install-test/prefix, then the C++ and C examples built against that
#                   copy with pkg-config and with find_package(brokk CONFIG), and run).
#                   The TEST_P(Backend, ...) tests run on memory://, SQLite and Redis: one
#                   redis-server for the ctest run (fixture tests "redis.start"/"redis.stop",
#                   core/src/store/redis/test-server.sh), a key prefix per test; needs redis-server installed.
#   make demo-cpp   builds examples/cpp/pipeline.cpp against the release library and runs it.
#
# Needs cmake, ninja, GoogleTest and pkg-config (Debian: cmake ninja-build libgtest-dev pkgconf).
# BROKK_TEST_TIMEOUT_SCALE multiplies the tests' wait bounds; CPP_SANITIZE=OFF skips the ASan build.

CPP_BUILD    := $(BUILD)/cpp
CMAKE        ?= cmake
CTEST        ?= ctest
CPP_JOBS     ?= 2
CPP_SANITIZE ?= ON

.PHONY: test-cpp cpp-build demo-cpp

# The tests link the debug library; the install test installs the release one.
cpp-build: lib lib-debug | $(BUILD)
	@for tool in $(CMAKE) $(CTEST) ninja pkg-config; do command -v $$tool >/dev/null 2>&1 || { \
	  echo "test-cpp: $$tool is missing (Debian: apt-get install -y cmake ninja-build libgtest-dev pkgconf)" >&2; \
	  exit 1; }; done
	$(CMAKE) -S bindings/cpp -B $(CPP_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DBROKK_LIB_DIR=$(abspath $(DEBUG_LIB)) -DBROKK_SANITIZE=$(CPP_SANITIZE) > $(CPP_BUILD).configure.log 2>&1 \
	  || { cat $(CPP_BUILD).configure.log >&2; exit 1; }
	$(CMAKE) --build $(CPP_BUILD) -j $(CPP_JOBS)

test-cpp: cpp-build
	cd $(CPP_BUILD) && $(CTEST) --output-on-failure -j $(CPP_JOBS)

$(BUILD)/pipeline-cpp: examples/cpp/pipeline.cpp bindings/cpp/include/brokk.hpp include/brokk.h | $(BUILD)
	$(CXX) -std=c++17 -O1 -g $(WARN) -Iinclude -Ibindings/cpp/include $< -o $@ $(LINK_RELEASE)

demo-cpp: lib $(BUILD)/pipeline-cpp
	$(BUILD)/pipeline-cpp
