# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= .run
CONFIG ?= config/routes.yaml
# make run's settings (scripts/run-local.sh): GATEWAY_PORT ISSUER_PORT UPSTREAM_PORT ADMIN_PORT CONFIG UPSTREAM RUN_DIR
export GATEWAY_PORT ISSUER_PORT UPSTREAM_PORT ADMIN_PORT CONFIG UPSTREAM RUN_DIR

.PHONY: run test bench check stop clean redis-server

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	touch $(STAMP)

# The DPoP replay-store tests run a real Redis (Debian's redis-server), started by a fixture on a free port.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; \
		else echo "the tests need redis-server: run 'sudo apt-get install -y redis-server'" >&2; exit 1; fi; }

run: $(STAMP)
	@$(PY) -m gateway check --offline --config $(CONFIG) >/dev/null
	@bash scripts/run-local.sh

test: $(STAMP) redis-server
	@command -v curl >/dev/null || (apt-get update -qq && apt-get install -y -qq curl)  # make run, the README's lines, the TLS walk-through
	$(VENV)/bin/lint-imports
	$(PY) -m gateway test --config config/routes.yaml config/routes.test.yaml
	$(PY) -m pytest -q

check: $(STAMP)
	$(PY) -m gateway check --config $(CONFIG)

bench: $(STAMP)
	bash bench/run.sh

stop:
	@bash scripts/run-local.sh stop

clean:
	rm -rf $(VENV) $(RUN_DIR) .pytest_cache
