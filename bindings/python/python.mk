# The Python binding (bindings/python): its pytest suite and the Python pipeline example.
#
# `make test-python` builds the release library, makes a venv under build/ (with the system's
# site-packages, so a preinstalled pytest is used), installs the package into it with pip (the
# build copies target/release/libbrokk.so into the package: bindings/python/setup.py), installs
# tadween-core from PyPI for the side-by-side Tadween tests (if PyPI cannot be reached those
# tests skip, saying why), runs pytest against the installed package, then runs
# examples/python/pipeline.py and checks that it tells the same story as the C demo.

PYTHON       ?= python3
# PYTHON=python3.12 (or a path) runs the suite on that interpreter, in a venv of its own.
PY_VENV      := $(BUILD)/python-venv$(if $(filter python3,$(PYTHON)),,-$(notdir $(PYTHON)))
PY           := $(PY_VENV)/bin/python
TADWEEN_PIN  := tadween-core==0.1.0b3

.PHONY: test-python python-venv

$(PY):
	$(PYTHON) -m venv --system-site-packages $(PY_VENV)

python-venv: lib $(PY)
	@# setuptools never removes stale files from its build dir: start clean, so what is
	@# packaged is exactly bindings/python/brokk.
	rm -rf bindings/python/build bindings/python/brokk.egg-info
	$(PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./bindings/python
	@$(PY) -c "import pytest" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check pytest
	@$(PY) -c "import importlib.metadata as m; assert m.version('tadween-core') == '$(TADWEEN_PIN:tadween-core==%=%)'" \
	  2>/dev/null || \
	  $(PY) -m pip install --quiet --disable-pip-version-check --timeout 30 "$(TADWEEN_PIN)" || \
	  echo "python: $(TADWEEN_PIN) could not be installed; the side-by-side Tadween tests will skip"

test-python: python-venv
	@# From build/, so that the brokk imported is the installed package, not bindings/python/brokk.
	cd $(BUILD) && BROKK_EXPECT_PACKAGED_LIBRARY=1 $(abspath $(PY)) -m pytest -p no:cacheprovider -rs \
	  $(abspath bindings/python/tests)
	$(PY) examples/python/pipeline.py > $(BUILD)/pipeline-python.out || \
	  { cat $(BUILD)/pipeline-python.out; exit 1; }
	$(call check_pipeline_output,$(BUILD)/pipeline-python.out)
	@echo "python: pipeline example passed"
