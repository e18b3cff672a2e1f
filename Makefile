# Two commands for a fresh machine: `make demo` and `make test`. Both build .venv from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
DEMO_DATA := data
DBT_SOURCES := $(shell find dbt -name '*.sql' -o -name '*.yml' 2>/dev/null | grep -v '^dbt/target/')

.PHONY: install demo test lint bench clean-data

$(UV):
	$(PYTHON) -m pip install --quiet --user uv || $(PYTHON) -m pip install --quiet uv

# Reinstall only when the lock or the project metadata changed.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(shell command -v uv 2>/dev/null || echo $(UV)) sync --frozen --extra dev --python $(PYTHON) --quiet
	touch $@

# The dbt manifest is prepared at build time, not at import (dagster-dbt reads it).
dbt/target/manifest.json: $(VENV)/.installed $(DBT_SOURCES)
	cd dbt && ../$(BIN)/dbt parse --quiet --profiles-dir . --target-path target
	touch $@

install: $(VENV)/.installed dbt/target/manifest.json

demo: install
	$(BIN)/meterhouse init --example tutorial --data-dir $(DEMO_DATA)
	$(BIN)/meterhouse generate --data-dir $(DEMO_DATA) --events 20000 --start 2026-10-01 --end 2026-11-01 \
		--seed 7 --bad-fraction 0.002 --duplicate-fraction 0.002
	$(BIN)/meterhouse bill --data-dir $(DEMO_DATA) --period 2026-10
	@echo "Invoices: $(DEMO_DATA)/invoices/   ·   explore: $(BIN)/meterhouse invoices --data-dir $(DEMO_DATA)"

lint: install
	$(BIN)/ruff check dagster_project contracts tests
	$(BIN)/python -m contracts --check

test: install lint
	$(BIN)/pytest -q

clean-data:
	rm -rf $(DEMO_DATA)/warehouse.duckdb* $(DEMO_DATA)/landing $(DEMO_DATA)/invoices $(DEMO_DATA)/outbox $(DEMO_DATA)/.dagster
