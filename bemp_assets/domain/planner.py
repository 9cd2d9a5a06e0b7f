"""Thermal demand planner: measured daily heating energy and outdoor temperature in the
warehouse (docs/buildings.md). Clustering is in planner_cluster.py, the HDD regression and the
forecast in planner_model.py.

Measured demand arrives as two CSV files (daily energy per building, daily mean outdoor
temperature), loaded in full into ``planner.daily_demand`` and ``planner.daily_temperature``
(each file's rows replaced in one transaction, so a re-run is idempotent). Every row is stored
or rejected with a reason. The Cambridge archive writes missing readings as 0, so a day whose
24 hours are all 0 while the outdoor temperature is below the base temperature (heating
expected) is stored with ``valid = false``, reason ``zero_day_gap``: a gap, not a building
without heating. On warm days a whole zero day is kept as a real 0 (heating off).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

PLANNER_DDL = """
CREATE SCHEMA IF NOT EXISTS planner;
CREATE TABLE IF NOT EXISTS planner.daily_demand (
    building_id VARCHAR NOT NULL, day DATE NOT NULL, energy_kwh DOUBLE NOT NULL, n_hours INTEGER,
    n_zero_hours INTEGER, valid BOOLEAN NOT NULL, reason VARCHAR, source_file VARCHAR NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.daily_temperature (
    day DATE NOT NULL, temp_mean_c DOUBLE NOT NULL, source_file VARCHAR NOT NULL, loaded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.rejects (
    source_file VARCHAR NOT NULL, line INTEGER NOT NULL, raw_text VARCHAR, reason VARCHAR NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.k_scores (
    k INTEGER NOT NULL, silhouette DOUBLE, chosen BOOLEAN NOT NULL, feature_mode VARCHAR NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.clusters (
    building_id VARCHAR NOT NULL, cluster INTEGER, is_representative BOOLEAN NOT NULL, representative VARCHAR,
    distance DOUBLE, pc1 DOUBLE, pc2 DOUBLE, feature_mode VARCHAR, features VARCHAR, reason VARCHAR,
    registry_version VARCHAR NOT NULL, computed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.models (
    building_id VARCHAR NOT NULL, cluster INTEGER, method VARCHAR, model_building VARCHAR, scale DOUBLE,
    intercept DOUBLE, slope DOUBLE, r2 DOUBLE, cv_rmse DOUBLE, n_days INTEGER, base_temperature DOUBLE,
    reason VARCHAR, computed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS planner.forecast (
    building_id VARCHAR NOT NULL, day DATE NOT NULL, horizon INTEGER NOT NULL, temp_mean_c DOUBLE NOT NULL,
    hdd DOUBLE NOT NULL, demand_kwh DOUBLE NOT NULL, method VARCHAR NOT NULL, measured_kwh DOUBLE,
    computed_at TIMESTAMPTZ NOT NULL
);
"""
TOTAL = "TOTAL"


def hdd(temperature, base: float):
    """Heating degree days of a day from its mean outdoor temperature: max(0, base - T)."""
    return (base - pd.Series(temperature, dtype=float)).clip(lower=0).to_numpy()


def _read_text_csv(con: duckdb.DuckDBPyConnection, path: Path, columns: list[str]) -> pd.DataFrame:
    """Every cell as text, with the file's line number, so each row can be judged and rejected alone."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: measured-demand file not found (planner.yaml measured)")
    frame = con.execute("SELECT * FROM read_csv(?, all_varchar = true, header = true)", [str(path)]).df()
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: header: missing columns {missing}; expected {columns}")
    frame = frame[columns].copy()
    frame["line"] = range(2, len(frame) + 2)
    return frame


def _judge(frame: pd.DataFrame, numeric: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (parsed, rejected with a reason): a bad date, a bad or negative number."""
    parsed = frame.copy()
    parsed["day"] = pd.to_datetime(frame["day"], format="%Y-%m-%d", errors="coerce").dt.date
    reason = pd.Series(None, index=frame.index, dtype=object)
    reason[parsed["day"].isna()] = "bad date (expected YYYY-MM-DD)"
    for column, rule in numeric.items():
        parsed[column] = pd.to_numeric(frame[column], errors="coerce")
        bad = parsed[column].isna() | ((parsed[column] < 0) if rule == "non_negative" else False)
        reason[bad & reason.isna()] = f"bad {column} (expected a {'non-negative ' if rule == 'non_negative' else ''}number)"
    rejected = frame[reason.notna()].assign(reason=reason[reason.notna()])
    return parsed[reason.isna()], rejected


def load_measured(con: duckdb.DuckDBPyConnection, energy_path: Path, temperature_path: Path, base: float,
                  now: datetime) -> dict[str, int]:
    """Replace the two files' rows in the warehouse; return the accounting
    (rows_read = stored + rejected for each file; zero_day_gaps are stored, marked invalid)."""
    energy = _read_text_csv(con, energy_path, ["date_utc", "building", "gas_kwh", "n_hours", "n_zero_hours"])
    energy = energy.rename(columns={"date_utc": "day", "building": "building_id", "gas_kwh": "energy_kwh"})
    temps = _read_text_csv(con, temperature_path, ["date", "temp_mean_c"]).rename(columns={"date": "day"})
    energy_ok, energy_bad = _judge(energy, {"energy_kwh": "non_negative", "n_hours": "non_negative", "n_zero_hours": "non_negative"})
    temps_ok, temps_bad = _judge(temps, {"temp_mean_c": "number"})
    empty_id = energy_ok["building_id"].fillna("").str.strip() == ""
    energy_bad = pd.concat([energy_bad, energy[energy.index.isin(energy_ok.index[empty_id])].assign(reason="empty building")])
    energy_ok = energy_ok[~empty_id]
    energy_ok = _mark_gaps(energy_ok, temps_ok, base)
    with_rejects = [(energy_path, energy_bad), (temperature_path, temps_bad)]
    _store(con, energy_ok, temps_ok, with_rejects, energy_path, temperature_path, now)
    return {"energy_rows_read": len(energy), "energy_stored": len(energy_ok), "energy_rejected": len(energy_bad),
            "zero_day_gaps": int((~energy_ok["valid"]).sum()), "temperature_rows_read": len(temps),
            "temperature_stored": len(temps_ok), "temperature_rejected": len(temps_bad),
            "days_without_temperature": int(energy_ok["reason"].eq("no temperature").sum())}


def _mark_gaps(energy: pd.DataFrame, temps: pd.DataFrame, base: float) -> pd.DataFrame:
    merged = energy.merge(temps[["day", "temp_mean_c"]], on="day", how="left")
    whole_zero = (merged["energy_kwh"] == 0) & (merged["n_zero_hours"] >= merged["n_hours"])
    cold = merged["temp_mean_c"] < base
    merged["valid"] = ~(whole_zero & cold) & merged["temp_mean_c"].notna()
    merged["reason"] = None
    merged.loc[whole_zero & cold, "reason"] = "zero_day_gap"
    merged.loc[merged["temp_mean_c"].isna(), "reason"] = "no temperature"
    return merged.drop(columns=["temp_mean_c"])


def _store(con, energy, temps, with_rejects, energy_path: Path, temperature_path: Path, now: datetime) -> None:
    """Delete-then-insert of each file's rows and rejects, in one transaction."""
    rejects = pd.concat([bad.assign(source_file=path.name, raw_text=bad.drop(columns=["line", "reason"]).astype(str).agg(",".join, axis=1))
                         [["source_file", "line", "raw_text", "reason"]] for path, bad in with_rejects if len(bad)]
                        or [pd.DataFrame(columns=["source_file", "line", "raw_text", "reason"])])
    energy = energy.assign(source_file=energy_path.name)
    temps = temps.assign(source_file=temperature_path.name)
    con.register("planner_energy", energy)
    con.register("planner_temps", temps)
    con.register("planner_rejects", rejects)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM planner.daily_demand WHERE source_file = ?", [energy_path.name])
        con.execute("DELETE FROM planner.daily_temperature WHERE source_file = ?", [temperature_path.name])
        con.execute("DELETE FROM planner.rejects WHERE source_file IN (?, ?)", [energy_path.name, temperature_path.name])
        con.execute("""INSERT INTO planner.daily_demand SELECT building_id, day, energy_kwh, n_hours, n_zero_hours, valid,
                       reason, source_file, ? FROM planner_energy""", [now])
        con.execute("INSERT INTO planner.daily_temperature SELECT day, temp_mean_c, source_file, ? FROM planner_temps", [now])
        con.execute("INSERT INTO planner.rejects SELECT source_file, line, raw_text, reason, ? FROM planner_rejects", [now])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        for name in ("planner_energy", "planner_temps", "planner_rejects"):
            con.unregister(name)


def training_days(con: duckdb.DuckDBPyConnection, base: float, start=None, end=None) -> pd.DataFrame:
    """Valid measured days in [start, end] with their temperature and HDD:
    building_id, day, energy_kwh, temp_mean_c, hdd, weekend."""
    frame = con.execute("""
        SELECT d.building_id, d.day, d.energy_kwh, t.temp_mean_c
        FROM planner.daily_demand d JOIN planner.daily_temperature t USING (day)
        WHERE d.valid AND (CAST(? AS DATE) IS NULL OR d.day >= ?) AND (CAST(? AS DATE) IS NULL OR d.day <= ?)
        ORDER BY d.building_id, d.day""", [start, start, end, end]).df()
    frame["hdd"] = hdd(frame["temp_mean_c"], base)
    frame["weekend"] = pd.to_datetime(frame["day"]).dt.dayofweek >= 5
    return frame
