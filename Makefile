# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install as needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clinfm demo --out $(DEMO_OUT)

test: $(STAMP)
	@bash scripts/install-system-test-deps.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/omop_ingest.py
	$(PY) benchmarks/store_access.py
	$(PY) benchmarks/fhir_ingest.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
