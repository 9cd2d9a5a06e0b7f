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

.PHONY: install run run-lake test dev serve bench bench-lake clean api

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
	$(BIN)/bemp planner run
	$(BIN)/bemp models train
	$(BIN)/bemp report refresh

# the scale-out profile on this machine: a PostgreSQL server from pip (started and stopped by
# the command) holds the DuckLake catalog and the Dagster instance; data as Parquet under
# $(BEMP_HOME)/lake; the days run as 2 runs at once (docs/deploy.md)
run-lake: install
	$(BIN)/bemp seed-sample
	$(BIN)/bemp --backend lake run --workers 2 --with-reference-servers
	$(BIN)/bemp --backend lake planner run
	$(BIN)/bemp --backend lake models train
	$(BIN)/bemp --backend lake report refresh

# two workers (this machine has two cores); a module's tests stay on one worker so its
# module-scoped warehouse is built once; the slowest tests are listed for CI's record
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=15

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

bench-lake: install
	$(BIN)/python bench/bench_lake.py

clean:
	rm -rf $(BEMP_HOME)/inbox $(BEMP_HOME)/artifacts $(BEMP_HOME)/warehouse.duckdb $(BEMP_HOME)/warehouse.duckdb.wal $(BEMP_HOME)/lake \
		$(BEMP_HOME)/warehouse.duckdb.tmp $(BEMP_HOME)/bi $(BEMP_HOME)/reports $(BEMP_HOME)/cache
	find $(DAGSTER_HOME) -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
