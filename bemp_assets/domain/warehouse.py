"""The warehouse contract (docs/warehouse.md) as DDL, plus the idempotent raw-layer writes.

Layer rules:
* ``raw`` is merge-only: a reading is inserted once per (variable_id, ts); a later file with a
  different value for the same key replaces it and the change is logged in ``raw.revisions``.
  Nothing is ever deleted from raw, so removing a file from the inbox loses nothing.
* ``clean`` and ``agg`` are derived: a partition run replaces exactly its time window.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Sequence

import duckdb
import pandas as pd

from .parsing import ParsedFile

SCHEMAS = ("meta", "raw", "clean", "agg", "ops")

DDL = """
CREATE SCHEMA IF NOT EXISTS meta;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS clean;
CREATE SCHEMA IF NOT EXISTS agg;
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS meta.variables (
    variable_id VARCHAR PRIMARY KEY,
    source VARCHAR NOT NULL,
    site VARCHAR,
    device VARCHAR NOT NULL,
    parameter VARCHAR NOT NULL,
    original_name VARCHAR,
    unit VARCHAR,
    kind VARCHAR NOT NULL CHECK (kind IN ('instantaneous', 'cumulative', 'interval', 'state')),
    category VARCHAR,
    timezone VARCHAR NOT NULL,
    expected_interval_s INTEGER NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.measurements (
    variable_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    value DOUBLE NOT NULL,
    source_file VARCHAR NOT NULL,
    source_line INTEGER,
    ingested_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (variable_id, ts)
);
CREATE TABLE IF NOT EXISTS raw.revisions (
    variable_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    old_value DOUBLE,
    new_value DOUBLE,
    old_source_file VARCHAR,
    new_source_file VARCHAR,
    revised_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.rejects (
    source VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    line INTEGER NOT NULL,
    field VARCHAR NOT NULL,
    raw_text VARCHAR,
    reason VARCHAR NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source_file, file_sha256, line, field)
);
CREATE TABLE IF NOT EXISTS clean.measurements (
    variable_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    value DOUBLE NOT NULL,
    chain VARCHAR,
    chain_version VARCHAR
);
-- warehouses created before filter chains existed gain the columns in place
ALTER TABLE clean.measurements ADD COLUMN IF NOT EXISTS chain VARCHAR;
ALTER TABLE clean.measurements ADD COLUMN IF NOT EXISTS chain_version VARCHAR;
CREATE TABLE IF NOT EXISTS meta.clean_variables (
    variable_id VARCHAR PRIMARY KEY,
    chain VARCHAR,
    chain_version VARCHAR,
    clean_kind VARCHAR NOT NULL,
    clean_interval_s INTEGER NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ops.commissioning_results (
    checked_at TIMESTAMPTZ NOT NULL,
    run_id VARCHAR,
    asset VARCHAR NOT NULL,
    partition VARCHAR,
    variable_id VARCHAR NOT NULL,
    day DATE,
    rule VARCHAR NOT NULL,
    passed BOOLEAN NOT NULL,
    observed DOUBLE,
    threshold DOUBLE
);
-- verdict per variable-day: pass, fail or no_data (docs/commissioning.md); added in place
ALTER TABLE ops.commissioning_results ADD COLUMN IF NOT EXISTS verdict VARCHAR;
CREATE TABLE IF NOT EXISTS ops.installation_status (
    level VARCHAR NOT NULL,          -- 'device' or 'sensor'
    device VARCHAR NOT NULL,
    variable_id VARCHAR,             -- NULL on device rows
    source VARCHAR,
    status VARCHAR NOT NULL CHECK (status IN ('green', 'red', 'black')),
    first_seen TIMESTAMPTZ,
    last_seen TIMESTAMPTZ,
    completeness_7d DOUBLE,
    freshness_s BIGINT,
    as_of TIMESTAMPTZ NOT NULL
);
-- days judged incomplete or without any data (docs/commissioning.md, status board); added in place
ALTER TABLE ops.installation_status ADD COLUMN IF NOT EXISTS incomplete_days INTEGER;
ALTER TABLE ops.installation_status ADD COLUMN IF NOT EXISTS no_data_days INTEGER;
-- every API request: who (token id, never the token), what, when, rows, outcome (docs/api.md)
CREATE TABLE IF NOT EXISTS ops.api_audit (
    audit_id BIGINT NOT NULL, requested_at TIMESTAMPTZ NOT NULL, token_id VARCHAR, method VARCHAR NOT NULL,
    path VARCHAR NOT NULL, variable_id VARCHAR, batch_id VARCHAR, rows_accepted INTEGER,
    rows_rejected INTEGER, status INTEGER NOT NULL, outcome VARCHAR NOT NULL
);
"""
# agg.hourly and agg.daily share their statistics columns; only the bucket differs
_AGG_STATS = "mean DOUBLE, min DOUBLE, max DOUBLE, sum DOUBLE, n INTEGER NOT NULL, coverage DOUBLE NOT NULL"
DDL += f"""
CREATE TABLE IF NOT EXISTS agg.hourly (variable_id VARCHAR NOT NULL, hour TIMESTAMPTZ NOT NULL, {_AGG_STATS});
CREATE TABLE IF NOT EXISTS agg.daily (variable_id VARCHAR NOT NULL, day DATE NOT NULL, {_AGG_STATS});
"""


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Session settings every BEMP connection needs, and the schema (idempotent).

    ``BEMP_DUCKDB_MEMORY_LIMIT`` (e.g. ``2GB``) caps DuckDB's memory; beyond it DuckDB spills
    to its temp directory instead of growing (DuckDB's own default is 80 % of RAM). The primary
    key index of raw.measurements cannot spill: a merge fails with "could not allocate block"
    when it no longer fits (measured: 3.5 million new rows do not fit in 300 MB).
    """
    import os

    from .alarms import ALARM_DDL
    from .kpi_store import KPI_DDL
    from .live import LIVE_DDL

    con.execute("SET TimeZone = 'UTC'")
    limit = os.environ.get("BEMP_DUCKDB_MEMORY_LIMIT")
    if limit:
        con.execute("SET memory_limit = ?", [limit])
    con.execute(DDL + LIVE_DDL + ALARM_DDL + KPI_DDL)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@dataclass
class IngestReport:
    """What one merge did. Every record read ends in exactly one place, so
    ``rows_read == stored + rejects_in_files + overlapping_rows + outside_window``
    (docs/warehouse.md, "Accounting")."""

    files: list[str] = field(default_factory=list)
    failed_files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rows_read: int = 0          # records: readings parsed plus rejects (a file rejected whole is one)
    rows_in_window: int = 0     # "stored": readings of the window now in raw (inserted, revised or unchanged)
    overlapping_rows: int = 0   # "folded duplicates": in-window copies of a key that a newer file of the run also holds
    outside_window: int = 0     # readings of other partitions: not this run's to store
    inserted: int = 0
    revised: int = 0
    unchanged: int = 0
    rejects_in_files: int = 0
    rejects_new: int = 0
    missing_cells: int = 0      # empty wide cells: neither readings nor rejects
    variables: int = 0
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        return self.rows_in_window

    @property
    def folded_duplicates(self) -> int:
        return self.overlapping_rows


def _file_accounting(p: ParsedFile) -> dict[str, int]:
    """A file's own line and record counts (its share of stored/folded/outside is the run's)."""
    return {"lines": p.lines, "blank_lines": p.blank_lines, "readings": p.rows,
            "rejected": len(p.rejects), "missing_cells": p.missing_cells}


def _upsert_variables(con, source, tz: str, parsed: Sequence[ParsedFile], now: datetime) -> int:
    frames = [p.variables for p in parsed if p.table and len(p.variables)]
    if not frames:
        return 0
    variables = pd.concat(frames).drop_duplicates("variable_id", keep="last")
    con.register("_new_variables", variables)
    con.execute("""
        INSERT INTO meta.variables
        SELECT variable_id, ?, ?, device, parameter, original_name, unit, kind, category, ?, ?, ?, ?
        FROM _new_variables
        ON CONFLICT (variable_id) DO UPDATE SET
            source = excluded.source, site = excluded.site, device = excluded.device,
            parameter = excluded.parameter, original_name = excluded.original_name,
            unit = excluded.unit, kind = excluded.kind, category = excluded.category,
            timezone = excluded.timezone, expected_interval_s = excluded.expected_interval_s,
            updated_at = excluded.updated_at
    """, [source.name, source.site, tz, source.expected_interval, now, now])
    con.unregister("_new_variables")
    return len(variables)


def _insert_rejects(con, source_name: str, parsed: Sequence[ParsedFile], now: datetime) -> tuple[int, int]:
    frames = []
    for p in parsed:
        if len(p.rejects):
            # API batches carry one hash per rejected record; files share the file's hash
            frames.append(p.rejects.assign(source_file=p.name,
                                           **({} if "file_sha256" in p.rejects else {"file_sha256": p.sha256})))
    if not frames:
        return 0, 0
    rejects = pd.concat(frames, ignore_index=True)
    return len(rejects), store_rejects(con, source_name, rejects, now)


def store_rejects(con, source_name: str, rejects: pd.DataFrame, now: datetime) -> int:
    """Append ``rejects`` (source_file, file_sha256, line, field, raw_text, reason) to
    raw.rejects; a reject already stored is skipped. Returns the rows actually inserted."""
    if not len(rejects):
        return 0
    con.register("_new_rejects", rejects)
    # the statement's count is the rows actually inserted (conflicts skipped): no before/after
    # count(*), whose half-fetched result DuckDB 2 refuses to register a frame after
    inserted = con.execute("""
        INSERT INTO raw.rejects
        SELECT ?, source_file, file_sha256, line, field, raw_text, reason, ? FROM _new_rejects
        ON CONFLICT DO NOTHING
    """, [source_name, now]).fetchall()[0][0]
    con.unregister("_new_rejects")
    return int(inserted)


def ingest(con: duckdb.DuckDBPyConnection, source, tz: str, parsed: Sequence[ParsedFile],
           window: tuple[datetime, datetime], now: datetime,
           also: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> IngestReport:
    """Merge parsed files (oldest first) of one source into raw, for readings inside ``window``.

    Rule for a key present in several files: the newest file (last in ``parsed``) wins.
    Rule against the warehouse: an equal value is left untouched (ingested_at keeps its first
    value); a different value replaces the stored one and is recorded in ``raw.revisions``.
    """
    report = IngestReport(files=[p.name for p in parsed])
    report.failed_files = {p.name: p.error for p in parsed if p.error}
    report.warnings = [w for p in parsed for w in p.warnings]
    report.per_file = {p.name: _file_accounting(p) for p in parsed}
    report.missing_cells = sum(p.missing_cells for p in parsed)
    good = [p for p in parsed if p.table]
    report.rows_read = sum(p.records for p in parsed)
    with transaction(con):
        report.variables = _upsert_variables(con, source, tz, good, now)
        report.rejects_in_files, report.rejects_new = _insert_rejects(con, source.name, parsed, now)
        if good:
            union = " UNION ALL ".join(
                f"SELECT variable_id, ts, value, line, {i} AS file_order, {_quote(p.name)} AS source_file FROM {p.table}"
                for i, p in enumerate(good)
            )
            if len(good) == 1 and good[0].unique_keys:
                # one file with one reading per key: nothing to rank (the window functions below
                # cost more than the rest of the batch)
                batch = f"SELECT variable_id, ts, value, line, source_file, 1 AS copies FROM ({union}) WHERE ts >= ? AND ts < ?"
            else:
                batch = f"""
                    SELECT variable_id, ts, value, line, source_file,
                           count(*) OVER (PARTITION BY variable_id, ts) AS copies
                    FROM ({union})
                    WHERE ts >= ? AND ts < ?
                    QUALIFY row_number() OVER (PARTITION BY variable_id, ts ORDER BY file_order DESC) = 1
                """
            con.execute(f"CREATE OR REPLACE TEMP TABLE _batch AS {batch}", list(window))
            counts = con.execute("""
                SELECT count(*), coalesce(sum(copies - 1), 0),
                       count(*) FILTER (WHERE m.variable_id IS NULL),
                       count(*) FILTER (WHERE m.variable_id IS NOT NULL AND m.value <> b.value)
                FROM _batch b LEFT JOIN raw.measurements m USING (variable_id, ts)
            """).fetchone()
            report.rows_in_window, report.overlapping_rows, report.inserted, report.revised = map(int, counts)
            report.unchanged = report.rows_in_window - report.inserted - report.revised
            report.outside_window = sum(p.rows for p in good) - report.rows_in_window - report.overlapping_rows
            # New keys by anti-join, changed values by UPDATE only when there are any: cheaper
            # than INSERT ... ON CONFLICT DO UPDATE, which probes the index for every row and
            # costs most when re-ingesting a file that is already stored.
            if report.revised:
                con.execute("""
                    INSERT INTO raw.revisions
                    SELECT b.variable_id, b.ts, m.value, b.value, m.source_file, b.source_file, ?
                    FROM _batch b JOIN raw.measurements m USING (variable_id, ts) WHERE m.value <> b.value
                """, [now])
                con.execute("""
                    UPDATE raw.measurements m SET
                        value = b.value, source_file = b.source_file, source_line = b.line, ingested_at = ?
                    FROM _batch b
                    WHERE m.variable_id = b.variable_id AND m.ts = b.ts AND m.value <> b.value
                """, [now])
            if report.inserted:
                con.execute("""
                    INSERT INTO raw.measurements
                    SELECT variable_id, ts, value, source_file, line, ? FROM _batch
                    ANTI JOIN raw.measurements USING (variable_id, ts)
                """, [now])
            con.execute("DROP TABLE _batch")
        if also is not None:  # a source's own table, committed together with raw (or not at all)
            also(con)
    return report


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
