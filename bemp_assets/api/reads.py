"""Reads for the API, from the BI snapshot only (never the live warehouse, so a read cannot
block a run): ``$BEMP_HOME/bi/bemp_bi.duckdb``, schema ``bi``, published by
``bemp_assets.domain.snapshot``. The file is replaced atomically by rename, so each request
opens it read-only afresh and sees one whole snapshot."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from bemp_assets.domain.snapshot import snapshot_path

LAYERS = {"raw": "raw_measurements", "clean": "clean_measurements", "hourly": "hourly"}
# the first of these a view has orders its rows and takes start/end
TIME_COLUMNS = ("ts", "hour", "day", "target_ts", "detected_at", "raised_at", "trained_at")
MAX_LIMIT = 100_000


class NoSnapshot(LookupError):
    """No snapshot published yet (503)."""


class BadQuery(ValueError):
    """A filter the snapshot cannot answer (400); the message names the parameter."""


def bi_path(home: Path) -> Path:
    return snapshot_path(Path(home) / "bi")


@contextmanager
def snapshot(home: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    path = bi_path(home)
    if not path.exists():
        raise NoSnapshot(f"no BI snapshot at {path} yet: it is published after the pipeline runs")
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def columns(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE bi.{view}").fetchall()]


def query(con: duckdb.DuckDBPyConnection, view: str, equal: dict[str, object], start: pd.Timestamp | None = None,
          end: pd.Timestamp | None = None, limit: int = 10_000, offset: int = 0) -> tuple[pd.DataFrame, int | None]:
    """A page of ``bi.<view>``: rows matching ``equal`` (column -> value, None skipped) and, on
    the view's time column, ``start <= t < end``; ordered by (variable, time). Returns the page
    and the offset of the next page (None on the last)."""
    names = columns(con, view)
    where, params = [], []
    for column, value in equal.items():
        if value is None:
            continue
        if column not in names:
            raise BadQuery(f"{column}: bi.{view} has no such column (columns: {names})")
        where.append(f'"{column}" = ?')
        params.append(value)
    time_column = next((c for c in TIME_COLUMNS if c in names), None)
    for bound, op in ((start, ">="), (end, "<")):
        if bound is not None:
            if time_column is None:
                raise BadQuery(f"start/end: bi.{view} has no time column")
            where.append(f'"{time_column}" {op} ?')
            params.append(bound.to_pydatetime())
    order = [c for c in ("variable_id", time_column) if c in names] or names[:1]
    sql = (f"SELECT * FROM bi.{view} {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY {', '.join(f'{chr(34)}{c}{chr(34)}' for c in order)} LIMIT ? OFFSET ?")
    page = con.execute(sql, [*params, limit + 1, offset]).df()
    following = offset + limit if len(page) > limit else None
    return page.head(limit), following
