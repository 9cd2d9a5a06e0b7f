"""The DuckDB warehouse as a Dagster resource.

Built on dagster-duckdb's ``DuckDBResource`` for its configuration, but opened through
``bemp_assets.domain.connection``: a lock held by another process is waited for at most
``BEMP_LOCK_WAIT`` seconds and then named (instead of dagster-duckdb's ~100 s of silent
retries), and a damaged file fails at once. Either way the step fails with a one-line
``Failure`` that says which file and what to do. Connections are opened only inside a step,
never at import time or in a sensor.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
from dagster import Failure
from dagster_duckdb import DuckDBResource

from bemp_assets.domain.connection import WarehouseError, connect, damaged
from bemp_assets.domain.warehouse import prepare


class WarehouseResource(DuckDBResource):
    """``database`` is an absolute path resolved once from BEMP_HOME / BEMP_WAREHOUSE."""

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # a fresh BEMP_HOME may not exist yet; DuckDB creates the file, not its folder
        path = Path(self.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = connect(path)
        except WarehouseError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        try:
            try:
                prepare(con)
            except duckdb.IOException as exc:
                raise Failure(description=str(damaged(path, str(exc))), allow_retries=False) from None
            yield con
        finally:
            con.close()
