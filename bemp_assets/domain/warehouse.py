"""The warehouse contract (docs/warehouse.md) as DDL, plus the idempotent raw-layer writes.

Layer rules:
* ``raw`` is merge-only: a reading is inserted once per (variable_id, ts); a later file with a
  different value for the same key replaces it and the change is logged in ``raw.revisions``.
  Nothing is ever deleted from raw, so removing a file from the inbox loses nothing.
* ``clean`` and ``agg`` are derived: a partition run replaces exactly its time window.

Portable DDL: the same statements create the embedded file and a DuckLake (lake.py), which has
no PRIMARY KEY, UNIQUE, CHECK or index. So no write relies on a key: windowed
delete-then-insert, anti-join inserts and :func:`upsert` inside one transaction. Warehouses
created before keep their old constraints; nothing depends on them.
"""
from __future__ import annotations

import ctypes
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterator, Sequence, TypeVar

import duckdb
import pandas as pd

from .lake import retrying
from .parsing import StagedReadings

T = TypeVar("T")

SCHEMAS = ("meta", "raw", "clean", "agg", "ops")

STORED, SPANS = "clean.stored", "clean.passthrough"
# the raw readings clean.measurements shows as they are: unfiltered variables, inside their spans
PASSED_THROUGH = """SELECT r.variable_id, r.ts, r.value, NULL::VARCHAR AS chain, NULL::VARCHAR AS chain_version
FROM raw.measurements r SEMI JOIN clean.passthrough p
    ON p.variable_id = r.variable_id AND r.ts >= p.start_ts AND r.ts < p.end_ts"""

DDL = """
CREATE SCHEMA IF NOT EXISTS meta;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS clean;
CREATE SCHEMA IF NOT EXISTS agg;
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS meta.variables (
    variable_id VARCHAR NOT NULL,   -- unique: written by upsert()
    source VARCHAR NOT NULL,
    site VARCHAR,
    device VARCHAR NOT NULL,
    parameter VARCHAR NOT NULL,
    original_name VARCHAR,
    unit VARCHAR,
    kind VARCHAR NOT NULL,          -- instantaneous, cumulative, interval or state (config.py)
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
    ingested_at TIMESTAMPTZ NOT NULL
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
    rejected_at TIMESTAMPTZ NOT NULL  -- one row per (source_file, file_sha256, line, field): store_rejects()
);
-- clean rows a filter chain wrote (and, in warehouses from before clean.measurements became a
-- view, the copies of unfiltered readings made then: prepare() renamed that table to this one)
CREATE TABLE IF NOT EXISTS clean.stored (
    variable_id VARCHAR NOT NULL,
    ts TIMESTAMPTZ NOT NULL,
    value DOUBLE NOT NULL,
    chain VARCHAR,
    chain_version VARCHAR
);
-- warehouses created before filter chains existed gain the columns in place
ALTER TABLE clean.stored ADD COLUMN IF NOT EXISTS chain VARCHAR;
ALTER TABLE clean.stored ADD COLUMN IF NOT EXISTS chain_version VARCHAR;
-- per unfiltered variable, the spans [start_ts, end_ts) clean has processed: raw shown as clean
CREATE TABLE IF NOT EXISTS clean.passthrough (
    variable_id VARCHAR NOT NULL, start_ts TIMESTAMPTZ NOT NULL, end_ts TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS meta.clean_variables (
    variable_id VARCHAR NOT NULL,   -- unique: written by upsert()
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
    status VARCHAR NOT NULL,         -- 'green', 'red' or 'black' (status.py)
    first_seen TIMESTAMPTZ,
    last_seen TIMESTAMPTZ,
    completeness_7d DOUBLE,
    freshness_s BIGINT,
    as_of TIMESTAMPTZ NOT NULL
);
-- days judged incomplete or without any data (docs/commissioning.md, status board); added in place
ALTER TABLE ops.installation_status ADD COLUMN IF NOT EXISTS incomplete_days INTEGER;
ALTER TABLE ops.installation_status ADD COLUMN IF NOT EXISTS no_data_days INTEGER;
-- one row that writers of unwindowed tables update first (claim_global_write)
CREATE TABLE IF NOT EXISTS meta.write_claims (name VARCHAR NOT NULL, claimed_at TIMESTAMPTZ);
-- the hash of this DDL when it was last applied (prepare() applies it again when it differs)
CREATE TABLE IF NOT EXISTS meta.schema_version (version VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
INSERT INTO meta.write_claims SELECT 'global', NULL WHERE NOT EXISTS (SELECT 1 FROM meta.write_claims);
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
-- what readers of clean see: the stored rows and the raw readings passed through (cleaning.py)
CREATE OR REPLACE VIEW clean.measurements AS
SELECT variable_id, ts, value, chain, chain_version FROM clean.stored
UNION ALL
{PASSED_THROUGH};
"""


def prepare(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Session settings every BEMP connection needs, and the schema.

    DuckDB's memory is capped (:func:`memory_limit`): beyond the cap DuckDB spills to its temp
    directory instead of growing, so a backfill's peak does not depend on its length. The raw
    tables have no key index (which could not spill), so a merge under a cap spills rather than
    fails; a warehouse created with those keys is rebuilt without them (:func:`drop_enforced_keys`).

    The schema is applied only when the warehouse's ``meta.schema_version`` row differs from the
    hash of the DDL (a new warehouse, or code whose DDL changed): one lookup per connection
    instead of some forty idempotent statements, and still right for any file, new or old,
    opened at any time in the same process.
    """
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar on stderr for statements over 2 s: in a run's captured logs
    # it is hundreds of lines of bar characters, not information
    con.execute("SET enable_progress_bar = false")
    # The warehouse's text is keys and file names, a few values repeated over millions of rows,
    # which DuckDB stores as dictionaries anyway; trying FSST on each segment as well was a
    # tenth of inserting a month's raw readings
    con.execute("SET disabled_compression_methods = 'fsst'")
    limit = memory_limit()
    if limit is not None:
        try:
            con.execute("SET memory_limit = ?", [limit])
        except duckdb.ParserException as exc:
            raise ValueError(f"BEMP_DUCKDB_MEMORY_LIMIT={limit!r}: expected a size such as 1GB or 4GB, "
                             f"or none for DuckDB's default ({exc})") from None
    ddl, version = schema_ddl()
    if stored_schema_version(con) != version:
        keep_clean_table(con)
        with transaction(con):  # one commit for some sixty statements, not one each: 3x faster
            con.execute(ddl)
        drop_enforced_keys(con, DDL + _module_ddl()[0])
        with transaction(con):
            con.execute("DELETE FROM meta.schema_version")
            con.execute("INSERT INTO meta.schema_version VALUES (?, now())", [version])
    return con


def release_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Empty DuckDB's buffer pool and give what it freed back to the system: call between the
    chunks of a long run, when no temp table is alive (one would be written to disk).

    DuckDB keeps every block a statement read or wrote cached up to its memory cap, and its
    allocator keeps what finished statements freed for reuse: neither shows in a month's run,
    which never reaches the cap, but a year's run crept chunk by chunk (clean: from 735 to 900
    MiB while duckdb_memory() counted under 100 MiB; BENCHMARKS.md, issue 14, sixth round).
    Lowering the cap to RELEASE_TO evicts the cached blocks (re-read from the file when needed)
    and flushes the allocator; the cap in force is then set again. The C heap, where pandas
    freed the chunk's frames, is trimmed likewise (:func:`trim_heap`)."""
    cap = memory_limit() or con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    try:
        con.execute(f"SET memory_limit = '{RELEASE_TO}'")
    except duckdb.Error:  # blocks in use cannot go below it: what could be evicted was
        pass
    finally:
        con.execute("SET memory_limit = ?", [cap])
    trim_heap()


RELEASE_TO = "1MB"


def trim_heap() -> None:
    """Return the free pages of the C heap to the system (glibc's malloc_trim; elsewhere
    nothing): glibc keeps what pandas and numpy freed in its arenas, one per thread."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def keep_clean_table(con: duckdb.DuckDBPyConnection) -> bool:
    """A warehouse from before clean.measurements became a view keeps its rows: the table is
    renamed clean.stored, which the view shows, and a window clean runs again trades its
    copies of unfiltered readings for a span (cleaning.py). Returns whether it renamed."""
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_catalog = current_database() "
                       "AND table_schema = 'clean' AND table_name = 'measurements'").fetchone()
    if kind is None or kind[0] != "BASE TABLE":
        return False
    con.execute("ALTER TABLE clean.measurements RENAME TO stored")
    return True


# DuckDB's memory per warehouse database unless BEMP_DUCKDB_MEMORY_LIMIT says otherwise
DEFAULT_MEMORY_LIMIT = "512MB"


def memory_limit(env=None) -> str | None:
    """DuckDB's memory cap: ``BEMP_DUCKDB_MEMORY_LIMIT`` (e.g. ``4GB``), DEFAULT_MEMORY_LIMIT when
    unset, None for ``none`` (DuckDB's own default, 80 % of RAM).

    Left to DuckDB, its buffer pool kept what a backfill had read: a run's peak grew with its
    length (2.4 GB for 90 days of 100 meters at one sample a minute). With 512MB a year of them
    peaks at 1.14 GB for the whole process and 30 days at 1.03 GB (:func:`release_memory`
    between chunks), in about the time 1GB takes (BENCHMARKS.md, issue 14, fifth to seventh
    rounds): the sorts, joins and aggregates of larger queries spill to disk instead. Raise it
    on a machine with RAM to spare."""
    import os

    text = (os.environ if env is None else env).get("BEMP_DUCKDB_MEMORY_LIMIT", "").strip()
    if text.lower() == "none":
        return None
    return text or DEFAULT_MEMORY_LIMIT


def _module_ddl() -> tuple[str, ...]:
    """The DDL of the modules that own tables of their own (live first: its raw tables are keyless)."""
    from .alarms import ALARM_DDL
    from .comfort import COMFORT_DDL
    from .kpi_store import KPI_DDL
    from .live import LIVE_DDL
    from .planner import PLANNER_DDL

    return LIVE_DDL, ALARM_DDL, COMFORT_DDL, PLANNER_DDL, KPI_DDL


def schema_ddl() -> tuple[str, str]:
    """(every CREATE of the warehouse, its version: a hash of that text)."""
    ddl = DDL + "".join(_module_ddl())
    return ddl, hashlib.sha256(ddl.encode()).hexdigest()[:16]


def stored_schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    """The schema version the warehouse records, or None (no row, or a warehouse older than the row)."""
    try:
        return con.execute("SELECT max(version) FROM meta.schema_version").fetchone()[0]
    except duckdb.CatalogException:
        return None


# raw tables whose uniqueness the merges guarantee (docs/warehouse.md, "Uniqueness without keys")
KEYLESS_TABLES = ("raw.measurements", "raw.rejects", "raw.gateway_measurements", "raw.ipanel_trips",
                  "raw.ipanel_charger_status", "raw.ipanel_charges")


def drop_enforced_keys(con: duckdb.DuckDBPyConnection, ddl: str) -> list[str]:
    """Rebuild, once, raw tables a warehouse created before the keys were dropped.

    Their PRIMARY KEY index cannot spill (a long merge under a memory cap failed) and costs
    more than the rest of a merge; DuckDB cannot drop a constraint in place, so the table is
    renamed, created again from ``ddl`` without it, and its rows copied. Returns the tables rebuilt."""
    keyed = [f"{schema}.{table}" for schema, table in con.execute(
        "SELECT DISTINCT schema_name, table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
        "AND schema_name || '.' || table_name IN (SELECT unnest(?))", [list(KEYLESS_TABLES)]).fetchall()]
    if not keyed:
        return []
    with transaction(con):
        for name in keyed:
            con.execute(f"ALTER TABLE {name} RENAME TO {name.split('.')[1]}_keyed")
        con.execute(ddl)
        for name in keyed:
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {name}_keyed")
            con.execute(f"DROP TABLE {name}_keyed")
    return keyed


# attempts of one write transaction that loses write-write conflicts (DuckLake) before the
# step fails; with the backoff of lake.retrying that is about 40 s of waiting in all
WRITE_ATTEMPTS = 10


def write_transaction(con: duckdb.DuckDBPyConnection, body: Callable[[duckdb.DuckDBPyConnection], T],
                      what: str) -> T:
    """``body(con)`` as one transaction, run again from its start when COMMIT loses a
    write-write conflict with a concurrent writer (DuckLake checks conflicts per table at
    commit: two backfills rewriting disjoint windows of clean.measurements still conflict).
    Retrying the transaction, not the step, keeps a conflict cheap: the parsed files and
    filtered frames stay as they are. ``body`` must keep no state between attempts (return its
    figures, do not add them to an outer report). On the embedded file nothing conflicts."""
    def attempt() -> T:
        with transaction(con):
            return body(con)
    return retrying(attempt, attempts=WRITE_ATTEMPTS, what=what)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def claim_global_write(con: duckdb.DuckDBPyConnection) -> None:
    """Make this transaction conflict with any concurrent one that also claims (call it inside
    the transaction, before writing an unwindowed table such as meta.variables).

    Without keys, two processes that insert the same new key at once would both succeed (a
    DuckLake conflict needs a delete: a transaction that writes a table conflicts with a
    concurrent one that deleted from it). Updating the one claims row is such a delete, so the
    later of two claimants fails at COMMIT, is retried, and then sees the other's rows. On the
    embedded file there is one writer: the update costs nothing.
    """
    con.execute("UPDATE meta.write_claims SET claimed_at = now()")


def upsert(con: duckdb.DuckDBPyConnection, table: str, new: str, keys: Sequence[str],
           ignore: Sequence[str] = (), keep_old: Sequence[str] = ()) -> int:
    """Make ``table``'s rows for the keys in ``new`` (a view or temp table with the table's
    columns, one row per key) equal those of ``new``, without a key constraint: rows whose
    compared columns differ are deleted and inserted again, new keys inserted, equal rows not
    touched (no write at all when nothing changed). ``ignore``: columns not compared (e.g.
    updated_at); ``keep_old``: columns that keep their stored value (e.g. first_seen). Call it
    inside a transaction. Returns the rows written."""
    columns = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()]
    compared = [c for c in columns if c not in keys and c not in ignore and c not in keep_old]
    differs = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in compared) or "FALSE"
    chosen = ", ".join(f"coalesce(o.{c}, n.{c}) AS {c}" if c in keep_old else f"n.{c}" for c in columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _upsert AS
        SELECT DISTINCT {chosen} FROM {new} n LEFT JOIN {table} o USING ({', '.join(keys)})
        WHERE o.{keys[0]} IS NULL OR {differs}
    """)
    written = con.execute("SELECT count(*) FROM _upsert").fetchone()[0]
    if written:
        claim_global_write(con)
        same_key = " AND ".join(f"u.{k} = {table}.{k}" for k in keys)
        con.execute(f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM _upsert u WHERE {same_key})")
        con.execute(f"INSERT INTO {table} SELECT * FROM _upsert")
    con.execute("DROP TABLE _upsert")
    return int(written)


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

    @classmethod
    def of_files(cls, parsed: Sequence[StagedReadings]) -> "IngestReport":
        """The files' own accounting, before any merge."""
        return cls(files=[p.name for p in parsed], failed_files={p.name: p.error for p in parsed if p.error},
                   warnings=[w for p in parsed for w in p.warnings],
                   per_file={p.name: _file_accounting(p) for p in parsed},
                   missing_cells=sum(p.missing_cells for p in parsed), rows_read=sum(p.records for p in parsed))

    def add(self, other: "IngestReport") -> None:
        """Fold the report of a later batch of the same run into this one (``variables``, a count
        of distinct ids, is the caller's to set)."""
        for name in ("files", "warnings"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("failed_files", "per_file"):
            getattr(self, name).update(getattr(other, name))
        for name in ("rows_read", "rows_in_window", "overlapping_rows", "outside_window", "inserted", "revised",
                     "unchanged", "rejects_in_files", "rejects_new", "missing_cells"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def stored(self) -> int:
        return self.rows_in_window

    @property
    def folded_duplicates(self) -> int:
        return self.overlapping_rows


def _file_accounting(p: StagedReadings) -> dict[str, int]:
    """A file's own line and record counts (its share of stored/folded/outside is the run's)."""
    return {"lines": p.lines, "blank_lines": p.blank_lines, "readings": p.rows,
            "rejected": len(p.rejects), "missing_cells": p.missing_cells}


def _upsert_variables(con, source, tz: str, parsed: Sequence[StagedReadings], now: datetime) -> int:
    """Describe the variables of ``parsed`` in meta.variables: known ones updated in place (their
    first_seen kept), new ones inserted; an update then an anti-join insert, no ON CONFLICT."""
    frames = [p.variables for p in parsed if p.table and len(p.variables)]
    if not frames:
        return 0
    variables = pd.concat(frames).drop_duplicates("variable_id", keep="last")
    with registered(con, new_variables=variables):
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _variables AS
            SELECT variable_id, ? AS source, ? AS site, device, parameter, original_name, unit, kind, category,
                   ? AS timezone, ? AS expected_interval_s, ? AS first_seen, ? AS updated_at
            FROM new_variables
        """, [source.name, source.site, tz, source.expected_interval, now, now])
    # rows whose description changed are replaced (first_seen kept), new ones inserted; equal
    # ones are not written at all, so concurrent runs of one source do not conflict (upsert)
    upsert(con, "meta.variables", "_variables", ["variable_id"], keep_old=["first_seen"])
    con.execute("DROP TABLE _variables")
    return len(variables)


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, **frames: pd.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
    """``frames`` visible to SQL on ``con`` under their keyword names while the block runs."""
    for name, frame in frames.items():
        con.register(name, frame)
    try:
        yield con
    finally:
        for name in frames:
            con.unregister(name)


def _insert_rejects(con, source_name: str, parsed: Sequence[StagedReadings], now: datetime) -> tuple[int, int]:
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
    raw.rejects; a reject already stored (same file, hash, line and field) is skipped, and of
    several in ``rejects`` the first is kept. Returns the rows actually inserted."""
    if not len(rejects):
        return 0
    with registered(con, new_rejects=rejects):
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _rejects AS
            SELECT ? AS source, source_file, file_sha256, line, field, raw_text, reason, ? AS rejected_at
            FROM (SELECT *, row_number() OVER () AS n FROM new_rejects)
            QUALIFY row_number() OVER (PARTITION BY source_file, file_sha256, line, field ORDER BY n) = 1
        """, [source_name, now])
    # only new keys are inserted: a reject already stored is kept as it is (its first rejected_at)
    inserted = upsert(con, "raw.rejects", "_rejects", ["source_file", "file_sha256", "line", "field"],
                      ignore=["source", "raw_text", "reason", "rejected_at"])
    con.execute("DROP TABLE _rejects")
    return inserted


def ingest(con: duckdb.DuckDBPyConnection, source, tz: str, parsed: Sequence[StagedReadings],
           window: tuple[datetime, datetime], now: datetime,
           also: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> IngestReport:
    """Merge staged readings (parsed files, oldest first, or an HTTP batch) of one source into
    raw, for readings inside ``window``, in one transaction.

    Rule for a key present in several files: the newest file (last in ``parsed``) wins.
    Rule against the warehouse: an equal value is left untouched (ingested_at keeps its first
    value); a different value replaces the stored one and is recorded in ``raw.revisions``.
    No key is enforced: the batch holds one row per key and only keys raw lacks are inserted,
    so raw.measurements stays unique (the ``duplicates`` commissioning rule verifies it).
    """
    good = [p for p in parsed if p.table]

    def merge(con: duckdb.DuckDBPyConnection) -> IngestReport:
        report = IngestReport.of_files(parsed)
        report.variables = _upsert_variables(con, source, tz, good, now)
        report.rejects_in_files, report.rejects_new = _insert_rejects(con, source.name, parsed, now)
        if good:
            with merge_batch(con, good, window) as batch:
                # raw is read only over the batch's own span: a year merged a month at a time
                # then reads each month once, not the whole year twelve times
                span = con.execute(f"SELECT min(ts), max(ts) FROM {batch}").fetchone()
                if span[0] is not None:
                    if holds_rows(con, "raw.measurements", *span, end_included=True):
                        _count_merge(con, batch, span, report)
                        _merge(con, batch, span, report, now)
                        _verify_unique(con, batch, span)
                    else:  # raw's span now holds the batch alone, one row per key by construction
                        _insert_new_span(con, batch, report, now)
                report.outside_window = sum(p.rows for p in good) - report.rows_in_window - report.overlapping_rows
        if also is not None:  # a source's own table, committed together with raw (or not at all)
            also(con)
        return report
    return write_transaction(con, merge, what=f"merge {source.name} into raw")


@contextmanager
def temp_table(con: duckdb.DuckDBPyConnection, name: str, sql: str, params: list | dict | None = None) -> Iterator[str]:
    """Temp table ``name`` holding ``sql``'s rows while the block runs, dropped after it."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}", params or [])
    try:
        yield name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


@contextmanager
def merge_batch(con: duckdb.DuckDBPyConnection, good: Sequence[StagedReadings],
                window: tuple[datetime, datetime]) -> Iterator[str]:
    """``merge_batch`` while the block runs: one row per key of ``good`` inside ``window``
    (variable_id, ts, value, line, source_file, copies).

    One file with one reading per key has nothing to rank: the batch is then a temp view over
    the file's table, read where it is used (a copy of every reading cost as much as a sixth of
    a merge into an empty span). Otherwise it is a temp table ranked by :func:`_batch_sql`."""
    if len(good) == 1 and good[0].unique_keys:
        only = good[0]
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW merge_batch AS
            SELECT variable_id, ts, value, line, {_quote(only.name)} AS source_file, 1 AS copies FROM {only.table}
            WHERE ts >= {_instant_sql(window[0])} AND ts < {_instant_sql(window[1])}
        """)
        try:
            yield "merge_batch"
        finally:
            con.execute("DROP VIEW IF EXISTS merge_batch")
    else:
        with temp_table(con, "merge_batch", _batch_sql(good), list(window)) as batch:
            yield batch


def _instant_sql(instant: datetime) -> str:
    """``instant`` as a SQL literal of the type a bound parameter would have (a view takes none)."""
    kind = "TIMESTAMP" if instant.tzinfo is None else "TIMESTAMPTZ"
    return f"{kind} '{instant.isoformat()}'"


def _batch_sql(good: Sequence[StagedReadings]) -> str:
    """One row per key inside the window (two ``?``): the newest file's, with ``copies``, the
    number of files of the batch that hold the key (window functions: several files, or a
    file that may hold a key twice)."""
    union = " UNION ALL ".join(
        f"SELECT variable_id, ts, value, line, {i} AS file_order, {_quote(p.name)} AS source_file FROM {p.table}"
        for i, p in enumerate(good))
    return f"""
        SELECT variable_id, ts, value, line, source_file,
               count(*) OVER (PARTITION BY variable_id, ts) AS copies
        FROM ({union})
        WHERE ts >= ? AND ts < ?
        QUALIFY row_number() OVER (PARTITION BY variable_id, ts ORDER BY file_order DESC) = 1
    """


def _stored() -> str:
    """raw.measurements inside a span (``?`` twice, both ends included): the merge never reads beyond it."""
    return "(SELECT * FROM raw.measurements WHERE ts >= ? AND ts <= ?)"


def holds_rows(con: duckdb.DuckDBPyConnection, table: str, start: datetime, end: datetime,
               end_included: bool = False) -> bool:
    """Whether ``table`` holds any row with ``ts`` from ``start`` to ``end`` (excluded, unless
    ``end_included``): a merge into an empty span can insert without comparing."""
    upper = "<=" if end_included else "<"
    return bool(con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE ts >= ? AND ts {upper} ? LIMIT 1)",
                            [start, end]).fetchone()[0])


def _insert_new_span(con: duckdb.DuckDBPyConnection, batch: str, report: IngestReport, now: datetime) -> None:
    """The merge when raw holds nothing in the batch's span (a backfill's usual case): every key
    is new, so the batch is inserted as it is, without the join against raw. Nothing is left to
    verify: the batch holds one row per key (ranked, or one file whose parse kept the last line
    of each key) and raw held no other row in the span."""
    stored = con.execute(f"INSERT INTO raw.measurements SELECT variable_id, ts, value, source_file, line, ? FROM {batch}",
                         [now]).fetchone()[0]
    # copies is 1 throughout a view's batch: the filter then leaves nothing to read
    folded = con.execute(f"SELECT coalesce(sum(copies - 1), 0) FROM {batch} WHERE copies > 1").fetchone()[0]
    report.rows_in_window, report.overlapping_rows, report.inserted = int(stored), int(folded), int(stored)
    report.revised, report.unchanged = 0, 0


def _count_merge(con: duckdb.DuckDBPyConnection, batch: str, span: tuple[datetime, datetime],
                 report: IngestReport) -> None:
    """What the merge will do: keys in the batch, folded copies, new keys, changed values."""
    counts = con.execute(f"""
        SELECT count(*), coalesce(sum(copies - 1), 0),
               count(*) FILTER (WHERE m.variable_id IS NULL),
               count(*) FILTER (WHERE m.variable_id IS NOT NULL AND m.value <> b.value)
        FROM {batch} b LEFT JOIN {_stored()} m USING (variable_id, ts)
    """, list(span)).fetchone()
    report.rows_in_window, report.overlapping_rows, report.inserted, report.revised = map(int, counts)
    report.unchanged = report.rows_in_window - report.inserted - report.revised


def _merge(con: duckdb.DuckDBPyConnection, batch: str, span: tuple[datetime, datetime],
           report: IngestReport, now: datetime) -> None:
    """Changed values logged and updated, new keys inserted by anti-join: each statement only
    when there is something to do (re-ingesting a stored file then writes nothing)."""
    if report.revised:
        con.execute(f"""
            INSERT INTO raw.revisions
            SELECT b.variable_id, b.ts, m.value, b.value, m.source_file, b.source_file, ?
            FROM {batch} b JOIN {_stored()} m USING (variable_id, ts) WHERE m.value <> b.value
        """, [now, *span])
        con.execute(f"""
            UPDATE raw.measurements m SET
                value = b.value, source_file = b.source_file, source_line = b.line, ingested_at = ?
            FROM {batch} b
            WHERE m.variable_id = b.variable_id AND m.ts = b.ts AND m.value <> b.value
              AND m.ts >= ? AND m.ts <= ?
        """, [now, *span])
    if report.inserted:
        con.execute(f"""
            INSERT INTO raw.measurements
            SELECT variable_id, ts, value, source_file, line, ? FROM {batch}
            ANTI JOIN {_stored()} USING (variable_id, ts)
        """, [now, *span])


class DuplicateKeys(RuntimeError):
    """raw.measurements would hold a key twice after a merge: the transaction is rolled back."""


def _verify_unique(con: duckdb.DuckDBPyConnection, batch: str, span: tuple[datetime, datetime]) -> None:
    """Check, before commit, that the batch's variables hold one row per key over its span (no
    key is enforced, so the merge's guarantee is verified here, for the rows it touched).

    Equal keys hash equally, so as many distinct key hashes as rows proves every key single
    (one hash aggregate); only otherwise are the keys grouped to name the repeated ones."""
    rows, keys = con.execute(f"""
        SELECT count(*), count(DISTINCT hash(variable_id, ts)) FROM raw.measurements
        WHERE ts >= ? AND ts <= ? AND variable_id IN (SELECT DISTINCT variable_id FROM {batch})
    """, list(span)).fetchone()
    if rows == keys:
        return
    repeated = con.execute(f"""
        SELECT variable_id, ts, count(*) AS n FROM raw.measurements
        WHERE ts >= ? AND ts <= ? AND variable_id IN (SELECT DISTINCT variable_id FROM {batch})
        GROUP BY ALL HAVING count(*) > 1 ORDER BY variable_id, ts LIMIT 3
    """, list(span)).fetchall()
    if repeated:
        shown = "; ".join(f"{v} at {ts:%Y-%m-%d %H:%M:%S%z} x{n}" for v, ts, n in repeated)
        raise DuplicateKeys(f"raw.measurements would hold keys more than once (merge rolled back): {shown}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
