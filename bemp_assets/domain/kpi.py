"""Daily energy, primary energy, CO2 and cost per site, category and carrier (docs/kpis.md).

Built from ``agg.hourly`` (the clean layer's hourly buckets): an energy variable (interval or
de-accumulated counter) contributes its hourly sum; a power variable contributes mean x 1 h,
and only when its device has no energy variable (never both). Days are local days in the
variable's own time zone (the steel plant's Asia/Seoul day, a dwelling's Europe/Rome day, 23 or
25 hours on DST days). Hours of a site-local day whose latest blocking commissioning verdict
failed are flagged (``blocked``) or left out (``commissioning: exclude``), never mixed in silently.
"""
from __future__ import annotations

from datetime import date

import duckdb
import numpy as np
import pandas as pd

from .config import BempConfig
from .forecasting_store import BLOCKING_RULES
from .kpi_tariff import prices

HOURLY_ENERGY_SQL = """
WITH energy AS (
    SELECT v.variable_id, v.site, v.device, v.timezone, v.unit, s.method
    FROM meta.variables v JOIN _energy_specs s ON v.parameter = s.parameter
    WHERE v.variable_id NOT IN (SELECT unnest($excluded))
),
chosen AS (  -- a power variable only where its device has no energy variable
    SELECT * FROM energy e
    WHERE e.method = 'interval' OR NOT EXISTS (
        SELECT 1 FROM energy i WHERE i.device = e.device AND i.method = 'interval')
),
verdicts AS (
    SELECT variable_id, day, NOT passed AND coalesce(verdict, 'fail') = 'fail' AS failed
    FROM ops.commissioning_results WHERE day IS NOT NULL AND rule IN (SELECT unnest($rules))
    QUALIFY row_number() OVER (PARTITION BY variable_id, day, rule ORDER BY checked_at DESC) = 1
),
blocked AS (SELECT variable_id, day FROM verdicts GROUP BY ALL HAVING bool_or(failed))
SELECT c.variable_id, c.site, c.timezone, c.unit, c.method, h.hour,
       CASE WHEN c.method = 'interval' THEN h.sum ELSE h.mean END AS value, h.coverage,
       b.variable_id IS NOT NULL AS blocked
FROM chosen c JOIN agg.hourly h USING (variable_id)
LEFT JOIN blocked b ON b.variable_id = c.variable_id AND b.day = timezone($site_tz, h.hour)::DATE
"""


def energy_specs(config: BempConfig) -> pd.DataFrame:
    rows = [(p, spec.method) for spec in config.kpis.energy_variables for p in spec.parameters]
    return pd.DataFrame(rows, columns=["parameter", "method"])


def unit_factors(config: BempConfig) -> dict[str, float]:
    factors: dict[str, float] = {}
    for spec in config.kpis.energy_variables:
        factors.update(spec.unit_to_kwh)
    return factors


def hourly_energy(con: duckdb.DuckDBPyConnection, config: BempConfig) -> pd.DataFrame:
    """One row per energy variable and UTC hour: kWh, coverage, blocked, and its local day."""
    con.register("_energy_specs", energy_specs(config))
    try:
        frame = con.execute(HOURLY_ENERGY_SQL, {"excluded": list(config.kpis.excluded_variables),
                                                "rules": list(BLOCKING_RULES), "site_tz": config.site.timezone}).df()
    finally:
        con.unregister("_energy_specs")
    frame["energy_kwh"] = frame["value"] * frame["unit"].map(unit_factors(config)).astype(float)
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    frame["category"] = frame["variable_id"].map(config.kpis.variable_categories)
    return frame


def with_categories(con, frame: pd.DataFrame) -> pd.DataFrame:
    """Fill the category of variables without a configured one from meta.variables."""
    known = dict(con.execute("SELECT variable_id, category FROM meta.variables").fetchall())
    frame["category"] = frame["category"].fillna(frame["variable_id"].map(known)).fillna("unknown")
    return frame


def add_local_time_and_cost(frame: pd.DataFrame, config: BempConfig) -> pd.DataFrame:
    """Local day, hours in that day and the cost of each hour under its site's tariff."""
    parts = []
    for (tz, site), group in frame.groupby(["timezone", "site"], dropna=False):
        local = pd.DatetimeIndex(group["hour"]).tz_convert(tz)
        group = group.assign(day=local.date)
        midnight = pd.DatetimeIndex(pd.to_datetime(group["day"])).tz_localize(tz, ambiguous=True,
                                                                                nonexistent="shift_forward")
        next_midnight = pd.DatetimeIndex(pd.to_datetime(group["day"]) + pd.Timedelta(days=1)).tz_localize(
            tz, ambiguous=True, nonexistent="shift_forward")
        group = group.assign(window_start=midnight.tz_convert("UTC"), window_end=next_midnight.tz_convert("UTC"),
                             day_hours=(next_midnight - midnight).total_seconds().to_numpy() / 3600)
        spec = config.kpis.sites.get(site)
        if spec is not None and spec.tariff:
            tariff = config.kpis.tariff(spec.tariff)
            price, _ = prices(local, tariff)
            group = group.assign(cost=group["energy_kwh"].to_numpy() * price, currency=tariff.currency)
        else:
            group = group.assign(cost=np.nan, currency=None)
        parts.append(group)
    return pd.concat(parts, ignore_index=True) if parts else frame.assign(day=[], cost=[], currency=[])


def daily_inputs(frame: pd.DataFrame, config: BempConfig) -> pd.DataFrame:
    """kpi.energy_daily_inputs: per variable and local day (blocked hours dropped when excluding)."""
    frame = frame.assign(excluded=frame["blocked"] & (config.kpis.commissioning == "exclude"))
    kept = frame.assign(energy_kwh=frame["energy_kwh"].where(~frame["excluded"]),
                        cost=frame["cost"].where(~frame["excluded"]),
                        coverage=frame["coverage"].where(~frame["excluded"], 0.0))
    keys = ["site", "day", "category", "variable_id", "method", "currency", "window_start", "window_end", "day_hours"]
    daily = kept.groupby(keys, dropna=False).agg(
        energy_kwh=("energy_kwh", lambda s: s.sum(min_count=1)), cost=("cost", lambda s: s.sum(min_count=1)),
        covered=("coverage", "sum"), hours=("hour", "count"), blocked=("blocked", "any"),
        excluded_hours=("excluded", "sum")).reset_index()
    daily["coverage"] = (daily["covered"] / daily["day_hours"]).clip(upper=1.0)
    sites = config.kpis.sites
    daily["carrier"] = daily["site"].map(lambda s: sites[s].carrier if s in sites else "electricity")
    return daily.drop(columns=["covered", "day_hours"])


def measured_co2(con, config: BempConfig) -> pd.DataFrame:
    """(site, day, co2_t) from each site's own CO2 series, summed per local day of the variable."""
    sites = {spec.co2_variable: site for site, spec in config.kpis.sites.items() if spec.co2_variable}
    if not sites:
        return pd.DataFrame(columns=["site", "day", "co2_measured_t"])
    frame = con.execute("""
        SELECT h.variable_id, timezone(v.timezone, h.hour)::DATE AS day, sum(h.sum) AS co2_measured_t
        FROM agg.hourly h JOIN meta.variables v USING (variable_id)
        WHERE h.variable_id IN (SELECT unnest($v)) GROUP BY ALL""", {"v": list(sites)}).df()
    frame["site"] = frame.pop("variable_id").map(sites)
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def energy_daily(inputs: pd.DataFrame, co2: pd.DataFrame, config: BempConfig) -> pd.DataFrame:
    """kpi.energy_daily: per site, local day, category and carrier."""
    keys = ["site", "day", "category", "carrier", "currency"]
    daily = inputs.groupby(keys, dropna=False).agg(
        energy_kwh=("energy_kwh", lambda s: s.sum(min_count=1)), cost=("cost", lambda s: s.sum(min_count=1)),
        coverage=("coverage", "min"), variables=("variable_id", "nunique"), blocked=("blocked", "any"),
        excluded_hours=("excluded_hours", "sum")).reset_index()
    carriers = config.kpis.carriers
    daily["primary_energy_kwh"] = daily["energy_kwh"] * daily["carrier"].map(
        lambda c: carriers[c].primary_energy_factor if c in carriers else np.nan)
    factor_co2 = daily["energy_kwh"] * daily["carrier"].map(
        lambda c: carriers[c].co2_kg_per_kwh if c in carriers else np.nan) / 1000
    daily = daily.merge(co2, on=["site", "day"], how="left")
    share = daily["energy_kwh"] / daily.groupby(["site", "day"])["energy_kwh"].transform("sum")
    daily["co2_t"] = (daily["co2_measured_t"] * share).where(daily["co2_measured_t"].notna(), factor_co2)
    rates = config.kpis.rates_to_eur
    daily["cost_eur"] = daily["cost"] * daily["currency"].map(lambda c: rates.get(c, np.nan) if c else np.nan)
    return daily.drop(columns=["co2_measured_t"])


def build_energy_daily(con: duckdb.DuckDBPyConnection, config: BempConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kpi.energy_daily_inputs, kpi.energy_daily) from the warehouse."""
    hourly = hourly_energy(con, config)
    if hourly.empty:
        return pd.DataFrame(), pd.DataFrame()
    hourly = add_local_time_and_cost(with_categories(con, hourly), config)
    inputs = daily_inputs(hourly, config)
    return inputs, energy_daily(inputs, measured_co2(con, config), config)


def first_of_month(days: pd.Series) -> pd.Series:
    return pd.to_datetime(days).dt.to_period("M").dt.start_time.dt.date


def as_date(value) -> date:
    return pd.Timestamp(value).date()
