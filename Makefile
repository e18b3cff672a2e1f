# Two commands for a fresh machine: `make demo` and `make test`. Both build .venv from uv.lock.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# uv as a module of the interpreter: no PATH or shim to depend on
UV := $(PYTHON) -m uv
DEMO_DATA := data
DBT_SOURCES := $(shell find dbt -name '*.sql' -o -name '*.yml' 2>/dev/null | grep -v '^dbt/target/')

.PHONY: install demo test lint clean-data audit reliability bench browser

# Reinstall only when the lock or the project metadata changed. Bytecode is compiled at install:
# where PYTHONDONTWRITEBYTECODE is set (this sandbox and its CI), every process would otherwise
# compile dagster, dbt and great_expectations from source, seconds per process.
$(VENV)/.installed: pyproject.toml uv.lock
	$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet --compile-bytecode
	touch $@

# The dbt manifest is prepared at build time, not at import (dagster-dbt reads it), and so are
# the partial-parse state and the parsed manifest a new data dir's in-process dbt starts from
# (billing/dbt_inprocess.py, whose file format is a prerequisite too), and the dbt selections of
# the definitions, so that a billing run's own process need not import dbt (billing/dbt_selection.py).
dbt/target/manifest.json: $(VENV)/.installed $(DBT_SOURCES) dagster_project/billing/dbt_inprocess.py \
		dagster_project/billing/dbt_selection.py
	cd dbt && ../$(BIN)/dbt parse --quiet --profiles-dir . --target-path target
	$(BIN)/python -m dagster_project.billing.dbt_inprocess
	$(BIN)/python -m dagster_project.billing.dbt_selection
	touch $@

install: $(VENV)/.installed dbt/target/manifest.json

# The demo starts from a clean data/ every time (only generated files live there), and runs
# localstripe, a fake Stripe server on loopback, so the Stripe-paid product shows a paid and a
# declined charge. Emails land in data/outbox/ as .eml files.
demo: install clean-data
	$(BIN)/meterhouse init --example tutorial --data-dir $(DEMO_DATA)
	$(BIN)/meterhouse generate --data-dir $(DEMO_DATA) --events 20000 --start 2026-10-01 --end 2026-11-01 \
		--seed 7 --bad-fraction 0.002 --duplicate-fraction 0.002
	@port=$$($(BIN)/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	$(BIN)/localstripe --port $$port > $(DEMO_DATA)/localstripe.log 2>&1 & pid=$$!; \
	trap "kill $$pid" EXIT; \
	for i in $$(seq 50); do curl -s -o /dev/null http://127.0.0.1:$$port/v1/customers -u sk_test_demo: && break; sleep 0.2; done; \
	export STRIPE_API_KEY=sk_test_demo STRIPE_API_BASE=http://127.0.0.1:$$port; \
	$(BIN)/python -m dagster_project.payments.demo --data-dir $(DEMO_DATA) acme-labs=visa initech-finance=declined && \
	$(BIN)/meterhouse bill --data-dir $(DEMO_DATA) --period 2026-10
	@echo "Dashboard: file://$(abspath $(DEMO_DATA))/dashboards/finance.html   invoices: $(DEMO_DATA)/invoices/   emails: $(DEMO_DATA)/outbox/   explore: $(BIN)/meterhouse invoices --data-dir $(DEMO_DATA)"

lint: install
	$(BIN)/ruff check dagster_project contracts tests
	cd dbt && ../$(BIN)/sqlfluff lint models tests --processes 2 --disable-progress-bar --nocolor
	$(BIN)/python -m contracts --check

# Headless Chromium for the dashboard's browser test (Debian packages; Playwright's download does not work here).
browser:
	@test -x /usr/bin/chromedriver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

test: install lint browser
	# two workers for the two cores; a file (or an xdist_group, see tests/conftest.py) stays on one worker
	$(BIN)/pytest -q -n 2 --dist loadgroup --durations=25

# Known vulnerabilities in every package pinned in uv.lock (pip-audit); see docs/reliability.md.
# An unreachable vulnerability service warns and passes, unless AUDIT_REQUIRE_NETWORK=1.
audit: install
	PYTHON=$(PYTHON) $(BIN)/python tests/security/audit_lock.py

# The full fault-injection matrix: kill -9 at every fault point and at random times, then rerun
# (about 25-40 minutes on 2 cores); `make test` runs a representative subset.
reliability: install
	METERHOUSE_RELIABILITY=1 HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -q tests/reliability tests/security

# Speed targets are checked here, never by timed tests. BENCH_SIZES=1000,1000000,5000000,20000000
# for the full ladder (20 M events are ~11 GB of JSONL under data/bench/, generated once).
BENCH_SIZES ?= 1000,1000000
BENCH_REPEATS ?= 3
bench: install
	$(BIN)/meterhouse bench --sizes $(BENCH_SIZES) --repeats $(BENCH_REPEATS) --cache data/bench

clean-data:
	rm -rf $(DEMO_DATA)/catalog $(DEMO_DATA)/warehouse.duckdb* $(DEMO_DATA)/landing $(DEMO_DATA)/invoices \
		$(DEMO_DATA)/outbox $(DEMO_DATA)/dashboards $(DEMO_DATA)/.dagster $(DEMO_DATA)/localstripe.log
