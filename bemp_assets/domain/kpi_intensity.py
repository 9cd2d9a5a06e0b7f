"""Energy and cost per ton, per EUR and per m2, daily and monthly, with the coverage behind them.

Numerators come from kpi.energy_daily (a site's categories, minus the sub-meters listed in
``site_total_excludes``); denominators are data: the site's production series (tons per local
day), the cost itself (kWh per EUR), and the heated area of a building from the registry
(data/config/buildings.csv). A monthly ratio is the ratio of the month's sums, not a mean of
daily ratios; ``coverage`` is the lowest daily coverage of the numerator, and
``denominator_coverage`` the share of the period's days that have a denominator.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from .config import BempConfig
from .kpi import first_of_month

DAY, MONTH = "day", "month"


def production_daily(con: duckdb.DuckDBPyConnection, config: BempConfig) -> pd.DataFrame:
    """(site, day, tons) from each site's production series, per local day of the variable."""
    sites = {spec.production_variable: site for site, spec in config.kpis.sites.items() if spec.production_variable}
    frame = con.execute("""
        SELECT h.variable_id, timezone(v.timezone, h.hour)::DATE AS day, sum(coalesce(h.sum, h.mean)) AS tons
        FROM agg.hourly h JOIN meta.variables v USING (variable_id)
        WHERE h.variable_id IN (SELECT unnest($v)) GROUP BY ALL""", {"v": list(sites) or [""]}).df()
    frame["site"] = frame.pop("variable_id").map(sites)
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def site_totals(energy: pd.DataFrame, config: BempConfig) -> pd.DataFrame:
    """Per site and local day: energy, cost (EUR), lowest coverage, blocked."""
    kept = energy[~energy["category"].isin(config.kpis.site_total_excludes)]
    return kept.groupby(["site", "day"]).agg(
        energy_kwh=("energy_kwh", "sum"), cost_eur=("cost_eur", lambda s: s.sum(min_count=1)),
        coverage=("coverage", "min"), blocked=("blocked", "any")).reset_index()


def building_totals(inputs: pd.DataFrame, config: BempConfig, registry: pd.DataFrame) -> pd.DataFrame:
    """Per building and local day, from the variables of its gateways (live.yaml) and its heated area."""
    building_of = {g.sn: g.building for g in config.gateways if getattr(g, "building", None)}
    frame = inputs.assign(resource_id=inputs["variable_id"].str.split(".").str[0].map(building_of))
    frame = frame[frame["resource_id"].notna()]
    rates = config.kpis.rates_to_eur
    frame = frame.assign(cost_eur=frame["cost"] * frame["currency"].map(lambda c: rates.get(c, np.nan) if c else np.nan))
    daily = frame.groupby(["site", "resource_id", "day"]).agg(
        energy_kwh=("energy_kwh", "sum"), cost_eur=("cost_eur", lambda s: s.sum(min_count=1)),
        coverage=("coverage", "min"), blocked=("blocked", "any")).reset_index()
    area = registry.set_index("building_id")["heated_area_m2"].astype(float)
    return daily.assign(area=daily["resource_id"].map(area)).dropna(subset=["area"])


def ratios(frame: pd.DataFrame, specs: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    """Daily and monthly rows of every (kpi, numerator, denominator, how the month combines the
    denominator: 'sum' for tons or EUR, 'first' for an area, unit) in ``specs``."""
    out = []
    for kpi, numerator, denominator, combine, unit in specs:
        days = frame.assign(period=DAY, period_start=frame["day"], kpi=kpi, unit=unit, numerator=frame[numerator],
                            denominator=frame[denominator], has_denominator=frame[denominator].notna().astype(float))
        month = days.assign(period_start=first_of_month(days["day"])).groupby(["site", "resource_id", "period_start"]).agg(
            numerator=("numerator", lambda s: s.sum(min_count=1)),
            denominator=("denominator", (lambda s: s.sum(min_count=1)) if combine == "sum" else "first"),
            coverage=("coverage", "min"), blocked=("blocked", "any"),
            has_denominator=("has_denominator", "mean")).reset_index().assign(period=MONTH, kpi=kpi, unit=unit)
        out += [days, month]
    rows = pd.concat(out, ignore_index=True).rename(columns={"has_denominator": "denominator_coverage"})
    rows["value"] = rows["numerator"] / rows["denominator"].where(rows["denominator"] != 0)
    return rows[["site", "resource_id", "period", "period_start", "kpi", "value", "unit", "numerator", "denominator",
                 "coverage", "denominator_coverage", "blocked"]]


def build_intensity(con, config: BempConfig, energy: pd.DataFrame, inputs: pd.DataFrame,
                    registry: pd.DataFrame) -> pd.DataFrame:
    """kpi.intensity: per ton and per EUR per site, per m2 per building."""
    if energy.empty:
        return pd.DataFrame()
    sites = site_totals(energy, config).merge(production_daily(con, config), on=["site", "day"], how="left")
    sites = sites.assign(resource_id=sites["site"])
    per_site = ratios(sites, [("energy_per_ton", "energy_kwh", "tons", "sum", "kWh/t"),
                              ("cost_per_ton", "cost_eur", "tons", "sum", "EUR/t"),
                              ("energy_per_eur", "energy_kwh", "cost_eur", "sum", "kWh/EUR")])
    per_site = per_site[~(per_site["kpi"].str.endswith("_ton") & ~per_site["site"].isin(
        [s for s, spec in config.kpis.sites.items() if spec.production_variable]))]
    buildings = building_totals(inputs, config, registry)
    per_m2 = ratios(buildings, [("energy_per_m2", "energy_kwh", "area", "first", "kWh/m2"),
                                ("cost_per_m2", "cost_eur", "area", "first", "EUR/m2")]) if len(buildings) else None
    return pd.concat([per_site, per_m2], ignore_index=True)
