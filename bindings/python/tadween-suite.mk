# Tadween's own test suite and broker examples, run unchanged, on Tadween's broker and on brokk's
# facade (brokk.compat.tadween).
#
# `make test-tadween-suite` fetches the pinned tadween-core sdist with pip into
# $(BUILD)/tadween-suite (once: a tarball already there is reused), unpacks it afresh, and runs
# in the Python binding's venv (python.mk: the installed brokk package, tadween-core and its
# dependencies; the suite's own test dependencies boto3 and moto are installed if missing):
#   1. Tadween's whole suite (tests/) and examples/broker/ex1.py..ex3.py on Tadween's own broker;
#   2. the same with the facade in place of tadween_core.broker: the start-up shim
#      bindings/python/tests/tadween_suite_shim.py, a pytest plugin (-p) and a script runner,
#      makes every import of tadween_core.broker resolve to brokk.compat.tadween.
# No test file is edited. Each pytest run prints its normal summary line; each examples run
# prints "N passed, N failed" in the same form. Any failure fails the target.

TADWEEN_SUITE_PIN  := tadween-core==0.1.0b3
TADWEEN_SUITE_VER  := $(patsubst tadween-core==%,%,$(TADWEEN_SUITE_PIN))
TADWEEN_SUITE_DIR  := $(BUILD)/tadween-suite
TADWEEN_SUITE_SRC  := $(TADWEEN_SUITE_DIR)/tadween_core-$(TADWEEN_SUITE_VER)
TADWEEN_SUITE_TGZ  := $(TADWEEN_SUITE_DIR)/tadween_core-$(TADWEEN_SUITE_VER).tar.gz
TADWEEN_SUITE_SHIM := $(TADWEEN_SUITE_DIR)/shim
TADWEEN_EXAMPLES   := ex1 ex2 ex3

.PHONY: test-tadween-suite tadween-suite-fetch

tadween-suite-fetch: python-venv
	@mkdir -p $(TADWEEN_SUITE_DIR)
	@test -f $(TADWEEN_SUITE_TGZ) || \
	  $(PY) -m pip download --quiet --disable-pip-version-check --timeout 30 --no-deps \
	    --no-binary :all: "$(TADWEEN_SUITE_PIN)" -d $(TADWEEN_SUITE_DIR) || \
	  { echo "tadween-suite: the $(TADWEEN_SUITE_PIN) sdist could not be downloaded (PyPI unreachable?)"; exit 1; }
	rm -rf $(TADWEEN_SUITE_SRC) $(TADWEEN_SUITE_SHIM)
	tar -xzf $(TADWEEN_SUITE_TGZ) -C $(TADWEEN_SUITE_DIR)
	mkdir -p $(TADWEEN_SUITE_SHIM) && cp bindings/python/tests/tadween_suite_shim.py $(TADWEEN_SUITE_SHIM)/
	@$(PY) -c "import boto3, moto" 2>/dev/null || \
	  $(PY) -m pip install --quiet --disable-pip-version-check --timeout 30 "boto3>=1.42.26" "moto>=5.1.22" || \
	  { echo "tadween-suite: boto3 and moto (Tadween's test dependencies) could not be installed"; exit 1; }

# $(1): the run's name; $(2): PYTHONPATH entries added before src; $(3): pytest's extra options;
# $(4): how a script is run.
define tadween_suite_run
	@echo "tadween-suite: Tadween's tests on $(1)"
	cd $(TADWEEN_SUITE_SRC) && TESTING=1 PYTHONPATH=$(2) $(abspath $(PY)) -m pytest -p no:cacheprovider $(3) tests
	@echo "tadween-suite: Tadween's broker examples on $(1)"
	@cd $(TADWEEN_SUITE_SRC) && passed=0; failed=0; \
	  for ex in $(TADWEEN_EXAMPLES); do \
	    if TESTING=1 PYTHONPATH=$(if $(2),$(2):)src timeout 120 $(abspath $(PY)) $(4) examples/broker/$$ex.py \
	         > ../$(1)-$$ex.out 2>&1; then \
	      passed=$$((passed + 1)); \
	    else \
	      failed=$$((failed + 1)); echo "examples/broker/$$ex.py failed:"; cat ../$(1)-$$ex.out; \
	    fi; \
	  done; \
	  echo "$$passed passed, $$failed failed (Tadween broker examples on $(1))"; \
	  test $$failed -eq 0
endef

test-tadween-suite: tadween-suite-fetch
	$(call tadween_suite_run,tadween,,,)
	$(call tadween_suite_run,brokk,$(abspath $(TADWEEN_SUITE_SHIM)),-p tadween_suite_shim,-m tadween_suite_shim)
