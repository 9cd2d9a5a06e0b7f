"""The read-only BI snapshot: a DuckDB file plus one Parquet file per view under ``$BEMP_HOME/bi``.

Why a copy and not the live warehouse: DuckDB lets one process write a file, and a reader in
another process blocks the writer. A BI tool holding the live file open would make the next
pipeline step wait and fail. The snapshot is a separate file, written under a temporary name
and renamed over the old one with ``os.replace`` (atomic on POSIX): a reader that holds the old
snapshot open keeps reading the old inode, whole, and sees the new one after reopening; it never
sees a half-written file and never blocks a run.

Inside the file the data sits in schema ``data`` and the stable contract is schema ``bi``: one
view per entry of ``VIEWS`` (columns documented in docs/bi.md), plus ``bi.snapshot_info``.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from .connection import Target, connect
from .forecasting_store import ensure_ml_tables
from .warehouse import prepare

FILE_NAME = "bemp_bi.duckdb"
PARQUET_DIR = "parquet"

# view name -> SELECT over the warehouse (the columns are the contract, docs/bi.md)
VIEWS: dict[str, str] = {
    "variables": """SELECT v.variable_id, v.source, v.site, v.device, v.parameter, v.original_name, v.unit,
                           v.kind, c.clean_kind, v.category, v.timezone, v.expected_interval_s,
                           c.clean_interval_s, c.chain, c.chain_version, v.first_seen, v.updated_at
                    FROM meta.variables v LEFT JOIN meta.clean_variables c USING (variable_id)""",
    "raw_measurements": "SELECT variable_id, ts, value, source_file, source_line, ingested_at FROM raw.measurements",
    "rejects": "SELECT source, source_file, file_sha256, line, field, raw_text, reason, rejected_at FROM raw.rejects",
    "source_files": "SELECT source_file, sha256, bytes, rows, first_line, last_line, first_ts, last_ts, hashed_at FROM meta.source_files",
    "clean_measurements": "SELECT variable_id, ts, value, chain, chain_version FROM clean.measurements",
    "hourly": "SELECT variable_id, hour, mean, min, max, sum, n, coverage FROM agg.hourly",
    "daily": "SELECT variable_id, day, mean, min, max, sum, n, coverage FROM agg.daily",
    "ipanel_trips": "SELECT * EXCLUDE (fetched_at) FROM raw.ipanel_trips",
    "ipanel_charges": "SELECT * EXCLUDE (fetched_at) FROM raw.ipanel_charges",
    "forecasts": "SELECT variable_id, target_ts, value, model_id, model_version, issued_at, horizon_h FROM ml.forecasts",
    "models": """SELECT model_id, model_version, target, learner, category, description, trained_at, train_start,
                        train_end, features, n_train_rows, excluded_days FROM ml.models""",
    "model_status": "SELECT * FROM ml.model_status",
    "alarms": """SELECT event_id, alarm_id, rule, rule_version, rule_type, severity, subject, subject_kind, event,
                        data_ts, detected_at, value, message, superseded_at FROM ops.alarm_events""",
    "alarms_active": "SELECT * FROM ops.alarms_active",
    "installation_status": "SELECT * FROM ops.installation_status",
    "commissioning_results": "SELECT * FROM ops.commissioning_results",
    "energy_daily": "SELECT * FROM kpi.energy_daily",
    "energy_daily_inputs": "SELECT * FROM kpi.energy_daily_inputs",
    "intensity": "SELECT * FROM kpi.intensity",
    "ebus_monthly": "SELECT * FROM kpi.ebus_monthly",
    "kpi_definitions": "SELECT * FROM kpi.definitions",
    "kpi_measures": "SELECT * FROM kpi.measures",
    "kpi_measure_inputs": "SELECT * FROM kpi.measure_inputs",
    "day_by_month": "SELECT * FROM report.day_by_month",
    "category_summary": "SELECT * FROM report.category_summary",
    "comfort_hourly": "SELECT * FROM comfort.hourly",
    "comfort_daily": "SELECT * FROM comfort.daily",
    "comfort_monthly": "SELECT * FROM comfort.monthly",
    "planner_clusters": "SELECT * FROM planner.clusters",
    "planner_models": "SELECT * FROM planner.models",
    "planner_forecast": "SELECT * FROM planner.forecast",
    "api_audit": "SELECT * FROM ops.api_audit",
}


def snapshot_path(bi_dir: Path) -> Path:
    """Where BI tools find the snapshot: ``<bi_dir>/bemp_bi.duckdb``."""
    return Path(bi_dir) / FILE_NAME


def publish_snapshot(warehouse: Target | str, bi_dir: Path) -> Path:
    """Copy the ``bi`` views of the warehouse (the file or a DuckLake) into a new snapshot file
    and swap it in atomically.

    Opens the warehouse (waiting for a lock like every step), so call it with no other
    connection to the warehouse open in this process. Returns the snapshot's path.
    """
    bi_dir = Path(bi_dir)
    bi_dir.mkdir(parents=True, exist_ok=True)
    final = snapshot_path(bi_dir)
    temporary = bi_dir / f".{FILE_NAME}.{os.getpid()}.tmp"
    temporary.unlink(missing_ok=True)
    published_at = datetime.now(timezone.utc)
    try:
        rows = _copy_tables(warehouse, temporary)
        _create_views(temporary, rows, published_at)
        _write_parquet(temporary, bi_dir)
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return final


def _copy_tables(warehouse: Target | str, target: Path) -> dict[str, int]:
    """Each view's rows as a table ``data.<view>`` of ``target``; returns the row counts."""
    con = connect(warehouse)
    try:
        prepare(con)
        ensure_ml_tables(con)
        con.execute(f"ATTACH '{_sql_text(target)}' AS snap")
        con.execute("CREATE SCHEMA snap.data")
        rows = {}
        for view, select in VIEWS.items():
            con.execute(f"CREATE TABLE snap.data.{view} AS {select}")
            rows[view] = int(con.execute(f"SELECT count(*) FROM snap.data.{view}").fetchone()[0])
        con.execute("DETACH snap")
        return rows
    finally:
        con.close()


def _create_views(target: Path, rows: dict[str, int], published_at: datetime) -> None:
    """The stable ``bi`` schema over the copied tables (views name no catalog, so they resolve
    in whatever name a client attaches the file under)."""
    con = duckdb.connect(str(target))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("CREATE SCHEMA bi")
        for view in rows:
            con.execute(f"CREATE VIEW bi.{view} AS SELECT * FROM data.{view}")
        con.execute("CREATE TABLE data.snapshot_info (view_name VARCHAR, row_count BIGINT, published_at TIMESTAMPTZ)")
        con.executemany("INSERT INTO data.snapshot_info VALUES (?, ?, ?)",
                        [(view, n, published_at) for view, n in rows.items()])
        con.execute("CREATE VIEW bi.snapshot_info AS SELECT * FROM data.snapshot_info")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def _write_parquet(target: Path, bi_dir: Path) -> None:
    """One Parquet file per view, each written aside and renamed into ``<bi_dir>/parquet``."""
    out = bi_dir / PARQUET_DIR
    out.mkdir(exist_ok=True)
    staging = bi_dir / f".{PARQUET_DIR}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    con = duckdb.connect(str(target), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        views = [r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'bi' AND NOT internal").fetchall()]
        for view in views:
            con.execute(f"COPY (SELECT * FROM bi.{view}) TO '{_sql_text(staging / f'{view}.parquet')}' (FORMAT parquet)")
    finally:
        con.close()
    for view in views:
        os.replace(staging / f"{view}.parquet", out / f"{view}.parquet")
    shutil.rmtree(staging, ignore_errors=True)


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")
