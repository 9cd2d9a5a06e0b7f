# BEMP: `make run` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export BEMP_HOME ?= $(CURDIR)/data

.PHONY: install run test dev bench clean

$(BIN)/bemp: pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BIN)/bemp

install: $(BIN)/bemp

run: install
	$(BIN)/bemp seed-sample
	$(BIN)/bemp run --with-reference-servers

test: install
	$(BIN)/python -m pytest -q

dev: install
	$(BIN)/dg dev --port 3000

bench: install
	$(BIN)/python bench/bench_pipeline.py

clean:
	rm -rf $(BEMP_HOME)/inbox $(BEMP_HOME)/warehouse.duckdb $(BEMP_HOME)/warehouse.duckdb.wal
	find $(DAGSTER_HOME) -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
