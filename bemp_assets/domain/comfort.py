"""Thermal comfort: hourly PMV/PPD per dwelling (ASHRAE 55 via pythermalcomfort), status shares
per dwelling, building and district (docs/buildings.md).

Inputs are the gateways' hourly mean temperature and relative humidity (``agg.hourly``), mapped
to dwelling and building by the installation registry (``gateways`` in live.yaml). The occupant
assumptions (metabolic rate, clothing, air speed, mean radiant temperature) come from
comfort.yaml. ``pmv_ppd_ashrae`` is called once on whole arrays with ``limit_inputs=True``: an
hour outside the standard's applicability limits (10-40 °C air and radiant temperature, 0-2 m/s,
1-4 met, 0-1.5 clo) gets no PMV and the status ``outside_limits``, never a silent value.
"""
from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .buildings import replace_all, replace_with_query
from .comfort_config import ComfortConfig

STATUSES = ("green", "yellow", "red", "outside_limits")
LEVELS = ("dwelling", "building", "district")
_SUMMARY_COLUMNS = """level VARCHAR NOT NULL, subject VARCHAR NOT NULL, period_start DATE NOT NULL,
    hours INTEGER NOT NULL, green_share DOUBLE, yellow_share DOUBLE, red_share DOUBLE,
    outside_limits_share DOUBLE, mean_pmv DOUBLE, mean_ppd DOUBLE, computed_at TIMESTAMPTZ NOT NULL"""
COMFORT_DDL = f"""
CREATE SCHEMA IF NOT EXISTS comfort;
CREATE TABLE IF NOT EXISTS comfort.hourly (
    dwelling VARCHAR NOT NULL, building VARCHAR NOT NULL, hour TIMESTAMPTZ NOT NULL, local_day DATE NOT NULL,
    tdb DOUBLE NOT NULL, tr DOUBLE NOT NULL, rh DOUBLE NOT NULL, met DOUBLE NOT NULL, clo DOUBLE NOT NULL,
    vr DOUBLE NOT NULL, pmv DOUBLE, ppd DOUBLE, status VARCHAR NOT NULL, occupied BOOLEAN NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS comfort.daily ({_SUMMARY_COLUMNS});
CREATE TABLE IF NOT EXISTS comfort.monthly ({_SUMMARY_COLUMNS});
"""


def pmv_ppd(tdb, tr, rh, met, clo, air_speed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASHRAE 55-2023 PMV and PPD on arrays, with the relative air speed and dynamic clothing
    the standard asks for. Returns (pmv, ppd, vr); NaN where an input is outside the limits."""
    from pythermalcomfort.models import pmv_ppd_ashrae
    from pythermalcomfort.environment import v_relative
    from pythermalcomfort.clothing import clo_dynamic_ashrae

    met, clo, air_speed = (np.broadcast_to(np.asarray(x, dtype=float), np.shape(tdb)) for x in (met, clo, air_speed))
    vr = np.asarray(v_relative(v=air_speed, met=met), dtype=float)
    clo_dynamic = np.asarray(clo_dynamic_ashrae(clo=clo, met=met), dtype=float)
    with warnings.catch_warnings():  # out-of-limit inputs warn per call; they are flagged instead
        warnings.simplefilter("ignore")
        result = pmv_ppd_ashrae(tdb=np.asarray(tdb, float), tr=np.asarray(tr, float), vr=vr, rh=np.asarray(rh, float),
                                met=met, clo=clo_dynamic, limit_inputs=True, round_output=False)
    return np.asarray(result.pmv, dtype=float), np.asarray(result.ppd, dtype=float), vr


def status_of(pmv: np.ndarray, green: float = 0.5, yellow: float = 1.0) -> np.ndarray:
    """green |PMV| <= green, yellow <= yellow, red beyond; NaN (outside limits) -> outside_limits."""
    magnitude = np.abs(np.asarray(pmv, dtype=float))
    return np.select([np.isnan(magnitude), magnitude <= green, magnitude <= yellow],
                     ["outside_limits", "green", "yellow"], default="red")


def dwelling_channels(gateways, comfort: ComfortConfig) -> pd.DataFrame:
    """dwelling, building, temperature and humidity variable ids (and a radiant one if any) of
    every registered gateway that has both channels, excluding configured non-rooms."""
    rows = []
    for g in gateways:
        media = {s.medium: s.variable_id(g.sn) for s in g.sensors}
        if g.dwelling in comfort.exclude_dwellings or not {"temperature", "humidity"} <= media.keys():
            continue
        rows.append({"dwelling": g.dwelling, "building": g.building, "temp_var": media["temperature"],
                     "hum_var": media["humidity"], "radiant_var": comfort.radiant_sensors.get(g.dwelling)})
    return pd.DataFrame(rows, columns=["dwelling", "building", "temp_var", "hum_var", "radiant_var"])


def read_inputs(con: duckdb.DuckDBPyConnection, channels: pd.DataFrame, timezone: str) -> tuple[pd.DataFrame, int]:
    """Hourly tdb, rh (and tr) per dwelling from agg.hourly; also the number of dwelling-hours
    with a temperature but no humidity (they cannot be evaluated)."""
    con.register("comfort_channels", channels)
    try:
        frame = con.execute(f"""
            SELECT c.dwelling, c.building, t.hour, t.mean AS tdb, h.mean AS rh, coalesce(r.mean, t.mean) AS tr,
                   CAST(timezone('{timezone}', t.hour) AS TIMESTAMP) AS local_hour
            FROM comfort_channels c
            JOIN agg.hourly t ON t.variable_id = c.temp_var
            JOIN agg.hourly h ON h.variable_id = c.hum_var AND h.hour = t.hour
            LEFT JOIN agg.hourly r ON r.variable_id = c.radiant_var AND r.hour = t.hour
            WHERE t.mean IS NOT NULL AND h.mean IS NOT NULL
            ORDER BY c.building, c.dwelling, t.hour""").df()
        temperature_hours = con.execute("""SELECT count(*) FROM comfort_channels c JOIN agg.hourly t
                                           ON t.variable_id = c.temp_var WHERE t.mean IS NOT NULL""").fetchall()[0][0]
    finally:
        con.unregister("comfort_channels")
    return frame, int(temperature_hours - len(frame))


def evaluate(frame: pd.DataFrame, comfort: ComfortConfig) -> pd.DataFrame:
    """Add met, clo, vr, pmv, ppd, status, occupied and local_day to the hourly inputs."""
    local = pd.to_datetime(frame["local_hour"])
    out = frame.drop(columns=["local_hour"]).copy()
    if out.empty:
        return out.assign(met=[], clo=[], vr=[], pmv=[], ppd=[], status=[], occupied=[], local_day=[])
    winter = local.dt.month.isin(comfort.clothing.winter_months)
    out["met"] = comfort.metabolic_rate
    out["clo"] = np.where(winter, comfort.clothing.winter_clo, comfort.clothing.summer_clo)
    pmv, ppd, vr = pmv_ppd(out["tdb"], out["tr"], out["rh"], out["met"], out["clo"], comfort.air_speed)
    out["vr"], out["pmv"], out["ppd"] = vr, pmv, ppd
    out["status"] = status_of(pmv, comfort.green_max_abs_pmv, comfort.yellow_max_abs_pmv)
    out["occupied"] = occupied(local, comfort)
    out["local_day"] = local.dt.date
    return out


def occupied(local: pd.Series, comfort: ComfortConfig) -> np.ndarray:
    if comfort.occupancy is None:
        return np.ones(len(local), dtype=bool)
    weekend = local.dt.dayofweek >= 5
    return np.where(weekend, local.dt.hour.isin(comfort.occupancy.weekend_hours),
                    local.dt.hour.isin(comfort.occupancy.weekday_hours))


def replace_hourly(con: duckdb.DuckDBPyConnection, hourly: pd.DataFrame, now: datetime) -> None:
    """Replace comfort.hourly as a whole (a full recompute: the result depends on comfort.yaml,
    which may change every past hour)."""
    replace_all(con, "comfort.hourly", hourly, ["dwelling", "building", "hour", "local_day", "tdb", "tr", "rh", "met",
                                                "clo", "vr", "pmv", "ppd", "status", "occupied"], now)


def rebuild_summary(con: duckdb.DuckDBPyConnection, period: str, now: datetime) -> int:
    """comfort.daily or comfort.monthly from comfort.hourly (occupied hours only): share of hours
    per status and mean PMV/PPD per dwelling (``building/dwelling``), building and district."""
    table = {"day": "comfort.daily", "month": "comfort.monthly"}[period]
    shares = ", ".join(f"avg(CAST(status = '{s}' AS DOUBLE)) AS {s}_share" for s in STATUSES)
    select = f"""
        WITH h AS (SELECT *, CAST(date_trunc('{period}', local_day) AS DATE) AS p FROM comfort.hourly WHERE occupied),
        by_level AS (
            SELECT 'dwelling' AS level, building || '/' || dwelling AS subject, p, status, pmv, ppd FROM h
            UNION ALL SELECT 'building', building, p, status, pmv, ppd FROM h
            UNION ALL SELECT 'district', 'district', p, status, pmv, ppd FROM h)
        SELECT level, subject, p, count(*), {shares}, avg(pmv), avg(ppd), CAST(? AS TIMESTAMPTZ)
        FROM by_level GROUP BY level, subject, p"""
    replace_with_query(con, table, select, [now])
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def render_heatmap(con: duckdb.DuckDBPyConnection, building: str, path: Path, green: float, yellow: float) -> Path:
    """Day x dwelling heat map of the daily mean PMV of one building (blue cold, red warm; the
    green/yellow limits drawn on the colour bar)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    daily = con.execute("""SELECT split_part(subject, '/', 2) AS dwelling, period_start, mean_pmv FROM comfort.daily
                           WHERE level = 'dwelling' AND split_part(subject, '/', 1) = ? ORDER BY 1, 2""", [building]).df()
    grid = daily.pivot(index="dwelling", columns="period_start", values="mean_pmv")
    fig, ax = plt.subplots(figsize=(11, 0.45 * max(len(grid), 2) + 1.5))
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2, interpolation="nearest")
    ax.set_yticks(range(len(grid)), grid.index)
    days = list(grid.columns)
    step = max(1, len(days) // 12)
    ax.set_xticks(range(0, len(days), step), [str(d)[:10] for d in days[::step]], rotation=45, ha="right")
    bar = fig.colorbar(image, ax=ax, label="daily mean PMV")
    for limit in (-yellow, -green, green, yellow):
        bar.ax.axhline(limit, color="black", linewidth=0.8)
    ax.set_title(f"building {building}: daily mean PMV per dwelling (green |PMV|<={green}, yellow <={yellow}, red beyond)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
