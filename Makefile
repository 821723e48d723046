# cst_bayes: two commands for a fresh machine.
#   make reproduce   bootstrap .venv, run the whole reanalysis on the embedded data -> reports/
#   make test        bootstrap .venv, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cst-bayes-installed
PROFILE ?= standard
# Debian packages the project uses: OpenBLAS so PyTensor's C backend links a BLAS (faster, no
# warning on every fit); Chromium for the report's browser test.
SYSDEPS := libopenblas-dev chromium chromium-driver

.PHONY: reproduce test lint sysdeps bench clean-venv sweep

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

# Installs the Debian packages above when we are root with apt-get and they are missing.
# Never fatal: without them PyTensor falls back to numpy BLAS and the browser test says why it fails.
sysdeps:
	@missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "WARNING: could not install$$missing"; \
	  else echo "WARNING: missing Debian packages:$$missing (install them for BLAS speed and the browser test)"; fi; \
	fi

reproduce: $(STAMP) sysdeps
	$(VENV)/bin/cst-bayes reproduce --profile $(PROFILE) --out reports

# A sensitivity grid on a dask LocalCluster into reports/sweep (the report of reports/ shows it).
GRID ?= sweeps/quick.toml
sweep: $(STAMP)
	$(VENV)/bin/cst-bayes sweep $(GRID) --out reports/sweep
	$(VENV)/bin/cst-bayes report reports

test: $(STAMP) sysdeps
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup

# Static checks: lint and format, the import layers contract, types against a baseline that only shrinks.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	PYTHONPATH=src $(VENV)/bin/lint-imports
	$(VENV)/bin/mypy | $(VENV)/bin/mypy-baseline filter

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
