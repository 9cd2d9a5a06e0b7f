"""The warehouse as a Dagster resource: the embedded DuckDB file or a DuckLake.

Built on dagster-duckdb's ``DuckDBResource`` for its configuration, but opened through
``bemp_assets.domain.connection``: a lock held by another process is waited for at most
``BEMP_LOCK_WAIT`` seconds and then named (instead of dagster-duckdb's ~100 s of silent
retries), and a damaged file fails at once. Either way the step fails with a one-line
``Failure`` that says which file and what to do. Connections are opened only inside a step,
never at import time or in a sensor.

With ``database`` a ``ducklake:postgres:...`` catalog URL and ``lake_data_path`` set, the
session is the lake attached and selected (bemp_assets/domain/lake.py): the same SQL runs,
many steps write at once; a step that loses a write-write conflict is retried whole
(``bemp_assets.assets.common.warehouse_asset``), as is a session's first schema set-up.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
from dagster import Failure
from dagster_duckdb import DuckDBResource
from pydantic import Field

from bemp_assets.domain.connection import WarehouseError, connect, damaged, describe, warehouse_target
from bemp_assets.domain.lake import DATA_PATH_ENV, is_lake, retrying
from bemp_assets.domain.warehouse import prepare


class WarehouseResource(DuckDBResource):
    """``database`` is an absolute path resolved once from BEMP_HOME / BEMP_WAREHOUSE, or a
    DuckLake catalog URL (``ducklake:postgres:dbname=... host=...``; keep the password in
    PGPASSWORD, which the PostgreSQL client reads, not in the URL)."""

    lake_data_path: str = Field("", description="Parquet data path of a DuckLake (BEMP_LAKE_DATA_PATH)")

    @property
    def is_lake(self) -> bool:
        return is_lake(self.database)

    def target(self):
        return warehouse_target(self.database, {DATA_PATH_ENV: self.lake_data_path})

    @contextmanager
    def session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            target = self.target()
            if not self.is_lake:  # a fresh BEMP_HOME may not exist yet; DuckDB creates the file, not its folder
                target.parent.mkdir(parents=True, exist_ok=True)
            con = retrying(lambda: _prepared(target), what="open and prepare the warehouse")
        except WarehouseError as exc:
            raise Failure(description=str(exc), allow_retries=False) from None
        except duckdb.IOException as exc:
            raise Failure(description=str(damaged(Path(describe(target)), str(exc))), allow_retries=False) from None
        try:
            yield con
        finally:
            con.close()


def _prepared(target) -> duckdb.DuckDBPyConnection:
    """A session with the schema in place; closed again if the set-up fails (a conflict with
    another process creating the same tables on a fresh lake is then retried)."""
    con = connect(target)
    try:
        return prepare(con)
    except BaseException:
        con.close()
        raise
