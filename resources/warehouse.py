"""The DuckDB warehouse as a Dagster resource.

Built on dagster-duckdb's ``DuckDBResource`` (which retries while another process holds the
file lock); ``session()`` adds the settings and schema every BEMP step relies on. Connections
are opened only inside a step, never at import time or in a sensor.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
from dagster_duckdb import DuckDBResource

from bemp_assets.domain.warehouse import prepare


class WarehouseResource(DuckDBResource):
    """``database`` is an absolute path resolved once from BEMP_HOME / BEMP_WAREHOUSE."""

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # a fresh BEMP_HOME may not exist yet; DuckDB creates the file, not its folder
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            yield prepare(con)
