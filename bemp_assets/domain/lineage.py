"""Lineage down to the row: a KPI measure -> its variables and window -> the clean and raw rows
-> the source files (name, SHA-256, line range) or API endpoints they came from.

``meta.source_files`` records each file raw.measurements names, with its hash (of the inbox
copy, taken when the KPIs are built), its row count, line range and time range. The same chain
as one SQL query over the BI snapshot is in docs/bi.md.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from .kpi_store import replace_table

CHAIN_SQL = """
WITH inputs AS (
    SELECT m.kpi_id, m.resource_id, m.period, m.period_start, m.value, m.unit, i.variable_id, i.endpoint,
           i.window_start, i.window_end
    FROM kpi.measures m JOIN kpi.measure_inputs i USING (kpi_id, resource_id, period, period_start)
    WHERE m.kpi_id = $kpi AND m.period_start = $day AND ($resource IS NULL OR m.resource_id = $resource)
),
clean AS (
    SELECT i.kpi_id, i.resource_id, i.period, i.variable_id, count(c.ts) AS clean_rows
    FROM inputs i LEFT JOIN clean.measurements c
      ON c.variable_id = i.variable_id AND c.ts >= i.window_start AND c.ts < i.window_end
    GROUP BY ALL
),
raw AS (
    SELECT i.kpi_id, i.resource_id, i.period, i.variable_id, r.source_file, count(*) AS raw_rows,
           min(r.source_line) AS first_line, max(r.source_line) AS last_line, min(r.ts) AS first_ts, max(r.ts) AS last_ts
    FROM inputs i JOIN raw.measurements r
      ON r.variable_id = i.variable_id AND r.ts >= i.window_start AND r.ts < i.window_end
    GROUP BY ALL
)
SELECT i.kpi_id, i.resource_id, i.period, i.period_start, i.value, i.unit, i.variable_id, i.endpoint,
       i.window_start, i.window_end, c.clean_rows, r.source_file, f.sha256, r.raw_rows, r.first_line, r.last_line,
       r.first_ts, r.last_ts
FROM inputs i LEFT JOIN clean c USING (kpi_id, resource_id, period, variable_id)
LEFT JOIN raw r USING (kpi_id, resource_id, period, variable_id)
LEFT JOIN meta.source_files f ON f.source_file = r.source_file
ORDER BY i.resource_id, i.period, i.variable_id NULLS LAST, r.first_line
"""

ENDPOINT_ROWS = {"ipanel:trips": "raw.ipanel_trips", "ipanel:charges": "raw.ipanel_charges"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_source_files(con: duckdb.DuckDBPyConnection, inbox: Path) -> int:
    """Rebuild meta.source_files from raw.measurements, hashing each file found in the inbox."""
    files = con.execute("""
        SELECT source_file, count(*) AS rows, min(source_line) AS first_line, max(source_line) AS last_line,
               min(ts) AS first_ts, max(ts) AS last_ts
        FROM raw.measurements GROUP BY source_file""").df()
    paths = files["source_file"].map(lambda name: inbox / name)
    present = paths.map(lambda p: p.is_file())
    files["sha256"] = [sha256_of(p) if ok else None for p, ok in zip(paths, present)]
    files["bytes"] = [p.stat().st_size if ok else None for p, ok in zip(paths, present)]
    files["hashed_at"] = datetime.now(timezone.utc)
    return replace_table(con, "meta.source_files", files)


def kpi_lineage(con: duckdb.DuckDBPyConnection, kpi: str, day: date, resource: str | None = None) -> pd.DataFrame:
    """One row per (measure, variable, source file): the whole chain of a KPI value."""
    chain = con.execute(CHAIN_SQL, {"kpi": kpi, "day": day, "resource": resource}).df()
    if chain.empty:
        return chain
    for endpoint, table in ENDPOINT_ROWS.items():
        rows = chain["endpoint"] == endpoint
        for index in chain.index[rows]:
            chain.loc[index, "raw_rows"] = con.execute(
                f"SELECT count(*) FROM {table} WHERE date >= ? AND date < ?",
                [chain.at[index, "window_start"], chain.at[index, "window_end"]]).fetchall()[0][0]
    return chain


def format_lineage(chain: pd.DataFrame) -> str:
    """The chain as indented text: measure, then each input, then each source."""
    lines = []
    for (kpi, resource, period, start, value, unit), group in chain.groupby(
            ["kpi_id", "resource_id", "period", "period_start", "value", "unit"], dropna=False, sort=False):
        lines.append(f"{kpi} {resource} {period} {pd.Timestamp(start).date()}: {value:.6g} {unit}")
        for (variable, endpoint, w0, w1, clean_rows), sources in group.groupby(
                ["variable_id", "endpoint", "window_start", "window_end", "clean_rows"], dropna=False, sort=False):
            window = f"{pd.Timestamp(w0):%Y-%m-%d %H:%M} .. {pd.Timestamp(w1):%Y-%m-%d %H:%M} UTC"
            if isinstance(endpoint, str):
                lines.append(f"  endpoint {endpoint} {window}: {int(sources['raw_rows'].iloc[0])} raw records")
                continue
            lines.append(f"  variable {variable} {window}: {int(clean_rows)} clean rows")
            lines += [f"    raw {int(s.raw_rows)} rows from {source_text(s)}" for s in
                      sources.dropna(subset=["source_file"]).itertuples()]
    return "\n".join(lines)


def source_text(row) -> str:
    """A file with its line range and hash, or an API endpoint with its time range."""
    if ":/" in row.source_file:  # HTTP sources name their endpoint (docs/warehouse.md)
        return f"endpoint {row.source_file}, {pd.Timestamp(row.first_ts):%Y-%m-%d %H:%M} .. {pd.Timestamp(row.last_ts):%Y-%m-%d %H:%M} UTC"
    return (f"{row.source_file} lines {int(row.first_line)}..{int(row.last_line)} "
            f"(sha256 {row.sha256 or 'not in the inbox'})")
