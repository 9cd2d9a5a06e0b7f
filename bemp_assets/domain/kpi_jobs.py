"""What each KPI and report asset does, as one call each (the assets stay thin)."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from .buildings import load_registry, registry_path
from .config import BempConfig
from .kpi import build_energy_daily
from .kpi_ebus import build_ebus
from .kpi_intensity import build_intensity
from .kpi_measures import build_measures, definitions
from .kpi_store import read_table, replace_table
from .lineage import record_source_files
from .report import category_summary, daily_totals, day_by_month, export_day_by_month


def refresh_energy_daily(con: duckdb.DuckDBPyConnection, config: BempConfig) -> dict[str, int]:
    inputs, energy = build_energy_daily(con, config)
    return {"inputs": replace_table(con, "kpi.energy_daily_inputs", inputs),
            "rows": replace_table(con, "kpi.energy_daily", energy)}


def refresh_intensity(con: duckdb.DuckDBPyConnection, config: BempConfig, config_dir: Path) -> int:
    path = registry_path(config_dir)
    registry = load_registry(path) if path.exists() else pd.DataFrame(columns=["building_id", "heated_area_m2"])
    frame = build_intensity(con, config, read_table(con, "kpi.energy_daily"),
                            read_table(con, "kpi.energy_daily_inputs"), registry)
    return replace_table(con, "kpi.intensity", frame)


def refresh_ebus(con: duckdb.DuckDBPyConnection, config: BempConfig) -> int:
    return replace_table(con, "kpi.ebus_monthly", build_ebus(con, config))


def refresh_measures(con: duckdb.DuckDBPyConnection, config: BempConfig, inbox: Path) -> dict[str, int]:
    measures, inputs = build_measures(config, read_table(con, "kpi.energy_daily"),
                                      read_table(con, "kpi.energy_daily_inputs"), read_table(con, "kpi.intensity"),
                                      read_table(con, "kpi.ebus_monthly"))
    return {"definitions": replace_table(con, "kpi.definitions", definitions(config)),
            "rows": replace_table(con, "kpi.measures", measures),
            "inputs": replace_table(con, "kpi.measure_inputs", inputs),
            "source_files": record_source_files(con, inbox)}


def refresh_day_by_month(con: duckdb.DuckDBPyConnection, config: BempConfig, out_dir: Path) -> list[Path]:
    """Every configured variable-year: stored in report.day_by_month and exported."""
    tables, paths = [], []
    for spec in config.kpis.day_by_month:
        for year in spec.years:
            daily = daily_totals(con, spec.variable, year, config.site.timezone)
            if daily.empty:
                continue
            table = day_by_month(daily, spec.variable, year)
            tables.append(table)
            paths += export_day_by_month(table, out_dir)
    replace_table(con, "report.day_by_month", pd.concat(tables, ignore_index=True) if tables else pd.DataFrame())
    return paths


def refresh_category_summary(con: duckdb.DuckDBPyConnection, config: BempConfig) -> int:
    frame = category_summary(read_table(con, "kpi.energy_daily"), list(config.kpis.category_summary_periods),
                             list(config.kpis.site_total_excludes))
    return replace_table(con, "report.category_summary", frame)
