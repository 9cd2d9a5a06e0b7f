"""The planner's demand model and forecast (docs/buildings.md).

Daily heating energy E = intercept + slope x HDD, ordinary least squares per building, computed
for all buildings at once from grouped sums (no per-building loop). Quality as ASHRAE Guideline
14: R², and CV(RMSE) = sqrt(SSE / (n - 2)) / mean(E). Each clustered building is forecast with
its own line when it has enough measured days, otherwise with its cluster representative's line
scaled by heated area (member / representative).
"""
from __future__ import annotations

import io
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from .buildings import replace_all
from .planner import TOTAL, hdd

MODEL_COLUMNS = ["building_id", "cluster", "method", "model_building", "scale", "intercept", "slope", "r2",
                 "cv_rmse", "n_days", "base_temperature", "reason"]


def fit_lines(days: pd.DataFrame, x: str = "hdd", y: str = "energy_kwh", by: str = "building_id") -> pd.DataFrame:
    """intercept, slope, r2, cv_rmse, n_days per group of ``days`` (OLS of y on x)."""
    work = days[[by, x, y]].assign(xx=days[x] ** 2, xy=days[x] * days[y], yy=days[y] ** 2)
    s = work.groupby(by).agg(n=(x, "size"), sx=(x, "sum"), sy=(y, "sum"), sxx=("xx", "sum"), sxy=("xy", "sum"), syy=("yy", "sum"))
    sxx_c = s["sxx"] - s["sx"] ** 2 / s["n"]
    sxy_c = s["sxy"] - s["sx"] * s["sy"] / s["n"]
    syy_c = s["syy"] - s["sy"] ** 2 / s["n"]
    slope = (sxy_c / sxx_c).where(sxx_c > 0, 0.0)
    intercept = (s["sy"] - slope * s["sx"]) / s["n"]
    sse = (syy_c - slope * sxy_c).clip(lower=0)
    mean = s["sy"] / s["n"]
    return pd.DataFrame({"intercept": intercept, "slope": slope, "sse": sse,
                         "r2": (1 - sse / syy_c).where(syy_c > 0),
                         "cv_rmse": (np.sqrt(sse / (s["n"] - 2)) / mean).where((s["n"] > 2) & (mean > 0)),
                         "n_days": s["n"].astype(int)})


def fit_with_base(days: pd.DataFrame, bases: list[float]) -> pd.DataFrame:
    """fit_lines per building for each candidate base temperature, keeping the base with the
    least squared error (CalTRACK's balance-point search; one candidate: a fixed base)."""
    fits = pd.concat([fit_lines(days.assign(hdd=hdd(days["temp_mean_c"], base))).assign(base_temperature=base)
                      for base in bases])
    best = fits.reset_index().sort_values(["building_id", "sse", "base_temperature"]).drop_duplicates("building_id")
    return best.set_index("building_id")


def candidate_bases(base: float, search: list[float] | None) -> list[float]:
    """The configured base, or every 0.5 °C of the search range."""
    return [base] if not search else list(np.arange(search[0], search[1] + 1e-9, 0.5))


def assign_models(clusters: pd.DataFrame, lines: pd.DataFrame, registry: pd.DataFrame, own_min_days: int) -> pd.DataFrame:
    """One model row per registry building: own line, representative's line scaled by heated
    area, or none with the reason."""
    area = registry.set_index("building_id")["heated_area_m2"]
    frame = registry[["building_id"]].merge(clusters[["building_id", "cluster", "representative", "reason"]], how="left")
    n_days = frame["building_id"].map(lines["n_days"]).fillna(0)
    own = n_days >= own_min_days
    rep_has_line = frame["representative"].isin(lines.index)
    scale = frame["building_id"].map(area) / frame["representative"].map(area)
    scaled = ~own & frame["cluster"].notna() & rep_has_line & scale.notna() & (scale > 0)
    frame["method"] = np.select([own, scaled], ["own", "representative_scaled"], default=None)
    frame["model_building"] = np.where(own, frame["building_id"], np.where(scaled, frame["representative"], None))
    frame["scale"] = np.where(own, 1.0, np.where(scaled, scale, np.nan))
    fitted = lines.reindex(frame["model_building"]).reset_index(drop=True)
    for column in ("intercept", "slope", "r2", "cv_rmse", "n_days", "base_temperature"):
        frame[column] = fitted[column].to_numpy()
    frame[["intercept", "slope"]] = frame[["intercept", "slope"]].mul(frame["scale"], axis=0)
    frame["reason"] = np.where(frame["method"].notna(), None, frame["reason"].fillna(
        f"fewer than {own_min_days} measured days and no representative line scalable by a known heated area"))
    return frame[MODEL_COLUMNS]


def read_forecast(source: str, text: str | None = None) -> pd.DataFrame:
    """date,temp_mean_c from a CSV file or the text an HTTP source returned; a bad line raises
    naming the source and line."""
    frame = pd.read_csv(io.StringIO(text) if text is not None else Path(source), dtype=str)
    missing = {"date", "temp_mean_c"} - set(frame.columns)
    if missing:
        raise ValueError(f"{source}: header: missing columns {sorted(missing)}; expected date,temp_mean_c")
    day = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    temp = pd.to_numeric(frame["temp_mean_c"], errors="coerce")
    bad = day.isna() | temp.isna()
    if bad.any():
        line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
        raise ValueError(f"{source}: line {line}: expected date YYYY-MM-DD and a temperature, got "
                         f"{frame.iloc[line - 2].tolist()}")
    return pd.DataFrame({"day": day.dt.date, "temp_mean_c": temp}).drop_duplicates("day").sort_values("day")


def forecast(models: pd.DataFrame, temperatures: pd.DataFrame, after: date, horizon_days: int) -> pd.DataFrame:
    """Daily demand for the ``horizon_days`` days after ``after`` (those present in the
    temperature forecast), per modelled building (HDD on its model's base temperature) and in
    total (``building_id = TOTAL``, its hdd column the mean of the buildings'). A line that
    predicts below 0 is cut at 0."""
    window = temperatures[(temperatures["day"] > after) & (temperatures["day"] <= after + timedelta(days=horizon_days))].copy()
    window["horizon"] = [(d - after).days for d in window["day"]]
    modelled = models[models["method"].notna()]
    grid = modelled[["building_id", "method", "intercept", "slope", "base_temperature"]].merge(window, how="cross")
    grid["hdd"] = (grid["base_temperature"] - grid["temp_mean_c"]).clip(lower=0)
    grid["demand_kwh"] = (grid["intercept"] + grid["slope"] * grid["hdd"]).clip(lower=0)
    per_building = grid[["building_id", "day", "horizon", "temp_mean_c", "hdd", "demand_kwh", "method"]]
    total = per_building.groupby(["day", "horizon", "temp_mean_c"], as_index=False).agg(hdd=("hdd", "mean"), demand_kwh=("demand_kwh", "sum"))
    total = total.assign(building_id=TOTAL, method=f"sum of {len(modelled)} buildings")
    return pd.concat([per_building, total[per_building.columns]], ignore_index=True)


def store_models(con, models: pd.DataFrame, now) -> None:
    replace_all(con, "planner.models", models, MODEL_COLUMNS, now)


def store_forecast(con, plan: pd.DataFrame, now) -> pd.DataFrame:
    """Replace planner.forecast; each row carries the measured demand of its day when the
    warehouse has it (for the sample, the forecast days are measured too). The total's
    measured value is given only when every modelled building has a valid measured day."""
    measured = con.execute("SELECT building_id, day, energy_kwh AS measured_kwh FROM planner.daily_demand WHERE valid").df()
    measured["day"] = pd.to_datetime(measured["day"]).dt.date
    plan = plan.merge(measured, on=["building_id", "day"], how="left")
    buildings = plan[plan["building_id"] != TOTAL]
    per_day = buildings.groupby("day")["measured_kwh"].agg(["sum", "count", "size"])
    complete = per_day["sum"].where(per_day["count"] == per_day["size"])
    is_total = plan["building_id"] == TOTAL
    plan.loc[is_total, "measured_kwh"] = plan.loc[is_total, "day"].map(complete).to_numpy()
    columns = ["building_id", "day", "horizon", "temp_mean_c", "hdd", "demand_kwh", "method", "measured_kwh"]
    replace_all(con, "planner.forecast", plan, columns, now)
    return plan[columns]


def export_plan(con) -> pd.DataFrame:
    """The planner table as exported by `bemp planner export`: forecast with cluster and model."""
    return con.execute("""
        SELECT f.building_id, c.cluster, c.representative, m.method, m.model_building, m.intercept, m.slope,
               m.r2, m.cv_rmse, m.n_days, f.day, f.horizon, f.temp_mean_c, f.hdd, round(f.demand_kwh, 3) AS demand_kwh,
               f.measured_kwh
        FROM planner.forecast f
        LEFT JOIN planner.clusters c USING (building_id) LEFT JOIN planner.models m USING (building_id)
        ORDER BY f.building_id = 'TOTAL', f.building_id, f.day""").df()
