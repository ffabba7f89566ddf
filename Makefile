# HQ: `make run` starts everything, `make test` runs the suite. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-django61 install services lint typecheck bench soak rss-soak chaos fuzz lock audit system-deps clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps -e clients/python
	@touch $@

.env:
	cp .env.example .env

install: $(STAMP) .env

## run: set everything up and start the API, the admin, the worker and the scheduler
run: install
	$(PY) scripts/run.py

## system-deps: Debian's chromium and chromium-driver for the browser tests (installed when absent)
system-deps:
	bash scripts/system-deps.sh

## test: set everything up (PostgreSQL, Redis, chromium) and run the suite on 2 cores
test: install system-deps
	bash scripts/ensure-services.sh
	$(PY) -m pytest -n 2 -m "not soak" $(PYTEST_ARGS)

## test-django61: the task backends' and client's tests on Django 6.1 (own venv under .run/, Python 3.12/3.13)
test-django61: install
	bash scripts/ensure-services.sh
	bash scripts/test-django61.sh $(PYTEST_ARGS)

services:
	bash scripts/ensure-services.sh

## lint: ruff (style, unused noqa, complexity), then typecheck
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(MAKE) --no-print-directory typecheck

## typecheck: mypy with django-stubs and DRF stubs, strict (see [tool.mypy] in pyproject.toml)
typecheck: install
	$(VENV)/bin/mypy

## bench: benchmarks with their baselines in the same run (not tests); writes bench/RESULTS-*.md
bench: install
	bash scripts/ensure-services.sh
	$(PY) bench/run.py --profile
	set -o pipefail; $(PY) bench/summary_bench.py | tee bench/RESULTS-summary.txt
	$(PY) bench/scheduler_bench.py
	$(PY) bench/tasks_bench.py
	set -o pipefail; $(PY) bench/limits_bench.py | tee bench/RESULTS-limits.txt
	{ echo "# HQ benchmark report"; echo; echo "Written by make bench on $$(date -u +%F). Machine: $$(nproc) cores."; \
	  echo; cat bench/RESULTS-queue.md; echo; echo '## Observability summary'; echo; echo '```'; \
	  grep -E 'summary,|Result' bench/RESULTS-summary.txt; echo '```'; echo; \
	  cat bench/RESULTS-scheduler.md; echo; cat bench/RESULTS-tasks.md; echo; \
	  echo '## Drain under concurrency limits (bench/limits_bench.py)'; echo; echo '```'; \
	  grep -E 'keys limited' bench/RESULTS-limits.txt; echo '```'; echo; \
	  echo '## Admin jobs list over 1,000,000 jobs (bench/admin_bench.py)'; echo; echo '```'; \
	  grep -E 'admin jobs list|Admin result|queries, a page of|unbounded' bench/RESULTS-summary.txt; echo '```'; } > bench/RESULTS.md

## soak: steady submits, approvals and schedule changes for SOAK_MINUTES; prints lost/duplicated
soak: install
	bash scripts/ensure-services.sh
	$(PY) bench/soak.py --minutes $(or $(SOAK_MINUTES),5)

## rss-soak: worker memory under RSS_RATE (1,000) jobs/s for RSS_MINUTES (10); prints FLAT or NOT FLAT
rss-soak: install
	bash scripts/ensure-services.sh
	@mkdir -p .run
	$(PY) bench/rss_soak.py --minutes $(or $(RSS_MINUTES),10) --rate $(or $(RSS_RATE),1000)

## chaos: only the fault tests (they also run in make test)
chaos: install
	bash scripts/ensure-services.sh
	$(PY) -m pytest -m chaos -p no:randomly tests/chaos -v

## audit: known vulnerabilities in the locked dependencies (pip-audit in its own venv)
audit:
	@test -x .run/audit/bin/pip-audit || ($(PYTHON) -m venv .run/audit && .run/audit/bin/pip install -q pip-audit)
	.run/audit/bin/pip-audit -r requirements.lock

## fuzz: schemathesis against the OpenAPI schema with many examples per operation (make test runs 5)
fuzz: install
	bash scripts/ensure-services.sh
	HQ_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),200) HQ_FUZZ_PROFILE=fuzz $(PY) -m pytest -n 2 -p no:randomly tests/fuzz $(PYTEST_ARGS)

## lock: re-resolve dependencies from pyproject.toml into requirements.lock
lock:
	rm -rf /tmp/hq-lock && $(PYTHON) -m venv /tmp/hq-lock
	/tmp/hq-lock/bin/pip install -q --upgrade pip && /tmp/hq-lock/bin/pip install -q ".[dev]"
	/tmp/hq-lock/bin/pip freeze --exclude-editable | grep -v '^hq[= @]' > requirements.lock

clean:
	rm -rf $(VENV) .run .pytest_cache test-artifacts
