# BEMP: `make run` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# the project's venv is the active one for every command (dg warns when they differ)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export BEMP_HOME ?= $(CURDIR)/data
# where `make dev` looks for the HTTP sources; `make serve` starts local reference servers there
export BEMP_GATEWAY_URL ?= http://127.0.0.1:8701
export BEMP_GATEWAY_TOKEN ?= dev-gateway-token
export BEMP_IPANEL_URL ?= http://127.0.0.1:8702
export BEMP_IPANEL_TOKEN ?= dev-ipanel-token

.PHONY: install run test dev serve bench clean api

$(BIN)/bemp: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/bemp

install: $(BIN)/bemp

# the CSV sample through the inbox, then the gateway and iPanel sample through reference
# servers on free localhost ports (started and stopped by the command itself)
run: install
	$(BIN)/bemp seed-sample
	$(BIN)/bemp run --with-reference-servers
	$(BIN)/bemp models train

test: install
	$(BIN)/python -m pytest -q

dev: install
	$(BIN)/dg dev --port 3000

# both reference servers in replay mode (data shifted to now, arriving as time passes), on
# the ports `make dev` polls; Ctrl-C stops both and exits 0
serve: install
	$(BIN)/bemp serve both --replay

# the HTTP API on http://127.0.0.1:8710/api/v1 (docs/api.md); `make dev` runs without it, and
# its api_landing_sensor ingests what is pushed here. Tokens: bemp api token create --name N --scope push
api: install
	$(BIN)/bemp api serve

bench: install
	$(BIN)/python bench/bench_pipeline.py

clean:
	rm -rf $(BEMP_HOME)/inbox $(BEMP_HOME)/artifacts $(BEMP_HOME)/warehouse.duckdb $(BEMP_HOME)/warehouse.duckdb.wal
	find $(DAGSTER_HOME) -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
