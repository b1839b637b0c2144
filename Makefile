# Invario build entry points (GNU make).
#
#   make run     install into .venv (once per pyproject.toml change) and serve
#   make test    install with the test extra, check import contracts, run pytest
#                (extra pytest arguments: make test PYTEST_ARGS='-k ledger -x'; in 3 processes,
#                PYTEST_WORKERS=0 for one)
#   make test-long  the fuzzing, load and benchmark-smoke tests (marked 'long'), which make test leaves
#                out; CI runs both (.ci/run)
#   make bench   install with the test extra and run the benchmarks (one table, ~10 min on 2 cores;
#                needs PostgreSQL, see docs/performance.md; e.g. BENCH_ARGS='--only http' or '--skip import')
#   make bench-import  the 1,000,000-line import benchmark alone (several minutes; `make bench` imports 100,000)
#   make bench-smoke  the same at tiny sizes, in about a minute: checks they run, numbers mean nothing
#   make soak    install with the test extra and run the fault-injection soak on PostgreSQL (docs/soak.md):
#                real serve and worker processes, faults drawn from a seed, invariants checked at the end;
#                prints its seed first; SOAK_SEED=N replays a run, SOAK_SECONDS (default 60) sets its length
#   make clean   remove .venv, var/ and caches
#
# The venv is built with the first of $(PYTHON_CANDIDATES) that is Python >= 3.11,
# or with $(PYTHON) if you set it: make test PYTHON=/opt/python3.12/bin/python3

SHELL := /bin/sh
.DEFAULT_GOAL := test

VENV := .venv
VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip -q --disable-pip-version-check
PYTHON ?=
PYTHON_CANDIDATES := python3 python3.13 python3.12 python3.11
PYTEST_ARGS ?=
# Processes the suite runs in (pytest-xdist); 0 runs it in this one process (make test PYTEST_WORKERS=0).
PYTEST_WORKERS ?= 3
BENCH_ARGS ?=
SOAK_SEED ?=
SOAK_SECONDS ?= 60

# Stamps record what is installed; they are older than pyproject.toml after it
# changes, which triggers a reinstall. Removing .venv removes them too.
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

PY_OK := import sys; sys.exit(sys.version_info < (3, 11))

.PHONY: run test test-long bench bench-import bench-smoke soak clean

# A development signing key in var/ unless INVARIO_SIGNING_KEY is set, so that checkpoints
# are signed and proofs can be fetched and verified from the first run (docs/proofs.md).
run: $(RUN_STAMP)
	mkdir -p var
	test -s var/dev-signing-key || (umask 077 && $(VENV)/bin/invario generate-signing-key > var/dev-signing-key)
	export INVARIO_SIGNING_KEY="$${INVARIO_SIGNING_KEY:-$$(cat var/dev-signing-key)}"; exec $(VENV)/bin/invario serve

XDIST = $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist worksteal)

test: $(TEST_STAMP)
	$(VENV)/bin/lint-imports --config pyproject.toml
	$(VENV)/bin/pytest $(XDIST) -m 'not long' $(PYTEST_ARGS)

test-long: $(TEST_STAMP)
	$(VENV)/bin/pytest $(XDIST) -m long $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(VENV_PY) -m tests.bench $(BENCH_ARGS)

bench-import: $(TEST_STAMP)
	INVARIO_BENCH_IMPORT_LINES=1000000 $(VENV_PY) -m tests.bench --only import $(BENCH_ARGS)

bench-smoke: $(TEST_STAMP)
	$(VENV_PY) -m tests.bench --smoke $(BENCH_ARGS)

soak: $(TEST_STAMP)
	@$(VENV_PY) -m tests.soak --seconds $(SOAK_SECONDS) $(if $(SOAK_SEED),--seed $(SOAK_SEED))

clean:
	rm -rf $(VENV) var build dist *.egg-info .pytest_cache .hypothesis .import_linter_cache .coverage htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

$(RUN_STAMP): pyproject.toml | $(VENV_PY)
	@$(VENV_PY) -c '$(PY_OK)' || { echo "error: $(VENV) uses $$($(VENV_PY) --version 2>&1); Python >= 3.11 is required. Run 'make clean'." >&2; exit 1; }
	$(PIP) install -e .
	@touch $@

$(TEST_STAMP): pyproject.toml | $(VENV_PY)
	@$(VENV_PY) -c '$(PY_OK)' || { echo "error: $(VENV) uses $$($(VENV_PY) --version 2>&1); Python >= 3.11 is required. Run 'make clean'." >&2; exit 1; }
	$(PIP) install -e '.[test]'
	$(VENV_PY) -m tests.support.codegen  # openapi-python-client into $(VENV)/codegen, apart (pyproject: codegen)
	@touch $@

$(VENV_PY):
	@py='$(PYTHON)'; \
	if [ -n "$$py" ]; then \
		if ! "$$py" -c '$(PY_OK)' >/dev/null 2>&1; then \
			echo "error: PYTHON=$$py is not Python >= 3.11 ($$("$$py" --version 2>&1 | head -n 1))." >&2; \
			exit 1; \
		fi; \
	else \
		for candidate in $(PYTHON_CANDIDATES); do \
			if "$$candidate" -c '$(PY_OK)' >/dev/null 2>&1; then py=$$candidate; break; fi; \
		done; \
		if [ -z "$$py" ]; then \
			echo "error: Python >= 3.11 is required to create $(VENV); none of [$(PYTHON_CANDIDATES)] on PATH is." >&2; \
			echo "       python3 is: $$(python3 --version 2>&1 | head -n 1)" >&2; \
			echo "       Install Python 3.11+ or point at one: make PYTHON=/path/to/python3.11" >&2; \
			exit 1; \
		fi; \
	fi; \
	echo "Creating $(VENV) with $$py ($$("$$py" --version 2>&1))"; \
	"$$py" -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
