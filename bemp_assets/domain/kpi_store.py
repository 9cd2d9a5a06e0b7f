"""The ``kpi`` and ``report`` schemas and ``meta.source_files`` (docs/kpis.md, docs/bi.md).

No PRIMARY KEY or UNIQUE: every table is replaced whole by its asset, inside one transaction
(``replace_table``), so a re-run leaves the same rows.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from .warehouse import transaction

KPI_DDL = """
CREATE SCHEMA IF NOT EXISTS kpi;
CREATE SCHEMA IF NOT EXISTS report;
CREATE TABLE IF NOT EXISTS meta.source_files (
    source_file VARCHAR NOT NULL, sha256 VARCHAR, bytes BIGINT, rows BIGINT, first_line INTEGER,
    last_line INTEGER, first_ts TIMESTAMPTZ, last_ts TIMESTAMPTZ, hashed_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS kpi.energy_daily_inputs (
    site VARCHAR, day DATE NOT NULL, category VARCHAR, carrier VARCHAR NOT NULL, variable_id VARCHAR NOT NULL,
    method VARCHAR NOT NULL, energy_kwh DOUBLE, cost DOUBLE, coverage DOUBLE, hours INTEGER,
    blocked BOOLEAN, excluded_hours INTEGER, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS kpi.energy_daily (
    site VARCHAR, day DATE NOT NULL, category VARCHAR, carrier VARCHAR NOT NULL, energy_kwh DOUBLE,
    primary_energy_kwh DOUBLE, co2_t DOUBLE, cost DOUBLE, currency VARCHAR, cost_eur DOUBLE, coverage DOUBLE,
    variables INTEGER, blocked BOOLEAN, excluded_hours INTEGER);
CREATE TABLE IF NOT EXISTS kpi.intensity (
    site VARCHAR, resource_id VARCHAR NOT NULL, period VARCHAR NOT NULL, period_start DATE NOT NULL,
    kpi VARCHAR NOT NULL, value DOUBLE, unit VARCHAR, numerator DOUBLE, denominator DOUBLE,
    coverage DOUBLE, denominator_coverage DOUBLE, blocked BOOLEAN);
CREATE TABLE IF NOT EXISTS kpi.ebus_monthly (
    period VARCHAR NOT NULL, period_start DATE NOT NULL, vehicle VARCHAR NOT NULL, km DOUBLE,
    traction_kwh DOUBLE, auxiliary_kwh DOUBLE, total_kwh DOUBLE, kwh_per_km DOUBLE, regeneration_kwh DOUBLE,
    regeneration_share DOUBLE, charges DOUBLE, charger_kwh DOUBLE, diesel_co2_kg DOUBLE, electric_co2_kg DOUBLE,
    co2_avoided_kg DOUBLE, trip_days INTEGER);
CREATE TABLE IF NOT EXISTS kpi.definitions (
    kpi_id VARCHAR NOT NULL, name VARCHAR, type VARCHAR, unit VARCHAR, formula VARCHAR, description VARCHAR);
CREATE TABLE IF NOT EXISTS kpi.measures (
    kpi_id VARCHAR NOT NULL, resource_id VARCHAR NOT NULL, resource_type VARCHAR, period VARCHAR NOT NULL,
    period_start DATE NOT NULL, ts TIMESTAMPTZ NOT NULL, value DOUBLE, unit VARCHAR, coverage DOUBLE,
    blocked BOOLEAN);
CREATE TABLE IF NOT EXISTS kpi.measure_inputs (
    kpi_id VARCHAR NOT NULL, resource_id VARCHAR NOT NULL, period VARCHAR NOT NULL, period_start DATE NOT NULL,
    variable_id VARCHAR, endpoint VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS report.day_by_month (
    variable_id VARCHAR NOT NULL, year INTEGER NOT NULL, row_order INTEGER NOT NULL, row_label VARCHAR NOT NULL,
    jan DOUBLE, feb DOUBLE, mar DOUBLE, apr DOUBLE, may DOUBLE, jun DOUBLE,
    jul DOUBLE, aug DOUBLE, sep DOUBLE, oct DOUBLE, nov DOUBLE, dec DOUBLE, unit VARCHAR, blocked_days INTEGER);
CREATE TABLE IF NOT EXISTS report.category_summary (
    summary VARCHAR NOT NULL, period VARCHAR NOT NULL, period_start DATE NOT NULL, grouping VARCHAR NOT NULL,
    site VARCHAR, category VARCHAR, carrier VARCHAR, days INTEGER, energy_kwh_sum DOUBLE, energy_kwh_mean DOUBLE,
    co2_t_sum DOUBLE, cost_eur_sum DOUBLE, cost_eur_mean DOUBLE, coverage DOUBLE, blocked_days INTEGER);
"""


def ensure_kpi_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(KPI_DDL)


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame, where: str = "TRUE",
                  params: list | None = None) -> int:
    """Delete the rows of ``table`` matching ``where`` and insert ``frame`` (its columns by name,
    missing ones NULL), in one transaction. Returns the rows inserted."""
    columns = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()]
    select = ", ".join(f'"{c}"' if c in frame.columns else f'NULL AS "{c}"' for c in columns)
    con.register("_replacement", frame)
    try:
        with transaction(con):
            con.execute(f"DELETE FROM {table} WHERE {where}", params or [])
            con.execute(f"INSERT INTO {table} SELECT {select} FROM _replacement")
    finally:
        con.unregister("_replacement")
    return len(frame)
