"""Every KPI value in the district platform's generic KPI store shape, with its inputs.

``kpi.definitions`` (one row per KPI of kpis.yaml), ``kpi.measures`` (kpi_id, resource_id, period,
period_start, ts, value, unit, coverage, blocked: one long table a BI tool can read), and
``kpi.measure_inputs``: per measure, the variables (or API endpoint) and the UTC window it
was computed from; the lineage of a KPI row starts there (bemp_assets/domain/lineage.py).
"""
from __future__ import annotations

import pandas as pd

from .config import BempConfig
from .kpi import first_of_month
from .kpi_ebus import CHARGES_ENDPOINT, FLEET, TRIPS_ENDPOINT

ENERGY_KPIS = {"energy_kwh": "kWh", "primary_energy_kwh": "kWh", "co2_t": "t", "cost_eur": "EUR"}
EBUS_KPIS = {"ebus_km": ("km", "km"), "ebus_total_kwh": ("total_kwh", "kWh"), "ebus_kwh_per_km": ("kwh_per_km", "kWh/km"),
             "ebus_regeneration_share": ("regeneration_share", "1"), "ebus_charges": ("charges", "count"),
             "ebus_co2_avoided_kg": ("co2_avoided_kg", "kg")}
MEASURE_KEY = ["kpi_id", "resource_id", "period", "period_start"]


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames one under the other; a column that is all NA in one frame (a KPI kind without that
    field) takes its dtype from the frames that have values, as pandas 3 will no longer do."""
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    return pd.concat([f.dropna(axis=1, how="all") for f in frames], ignore_index=True).reindex(columns=columns)


def definitions(config: BempConfig) -> pd.DataFrame:
    return pd.DataFrame([{"kpi_id": d.name, "name": d.name.replace("_", " "), "type": d.type, "unit": d.unit,
                          "formula": d.formula, "description": d.description} for d in config.kpis.definitions])


def energy_measures(energy: pd.DataFrame, inputs: pd.DataFrame, config: BempConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily energy KPIs per site/category, and their input variables with each day's window."""
    resource = energy["site"] + "/" + energy["category"]
    frames = [pd.DataFrame({"kpi_id": kpi, "resource_id": resource, "resource_type": "site_category", "period": "day",
                            "period_start": energy["day"], "value": energy[kpi], "unit": unit,
                            "coverage": energy["coverage"], "blocked": energy["blocked"]})
              for kpi, unit in ENERGY_KPIS.items()]
    links = inputs.assign(resource_id=inputs["site"] + "/" + inputs["category"], period="day",
                          period_start=inputs["day"])[["resource_id", "period", "period_start", "variable_id",
                                                       "window_start", "window_end"]]
    co2 = {site: spec.co2_variable for site, spec in config.kpis.sites.items() if spec.co2_variable}
    measured = links.assign(variable_id=links["resource_id"].str.split("/").str[0].map(co2)).dropna(subset=["variable_id"])
    used = pd.concat([links.assign(kpi_id=k) for k in ENERGY_KPIS] + [measured.assign(kpi_id="co2_t")], ignore_index=True)
    return pd.concat(frames, ignore_index=True), used.drop_duplicates()


def intensity_inputs(intensity: pd.DataFrame, inputs: pd.DataFrame, config: BempConfig) -> pd.DataFrame:
    """The variables behind each intensity row over its day or month (and the production series)."""
    building_of = {g.sn: g.building for g in config.gateways if getattr(g, "building", None)}
    by_site = inputs[~inputs["category"].isin(config.kpis.site_total_excludes)].assign(resource_id=inputs["site"])
    by_building = inputs.assign(resource_id=inputs["variable_id"].str.split(".").str[0].map(building_of)).dropna(
        subset=["resource_id"])
    pool = pd.concat([by_site, by_building], ignore_index=True)
    pool = pd.concat([pool.assign(period="day", period_start=pool["day"]),
                      pool.assign(period="month", period_start=first_of_month(pool["day"]))], ignore_index=True)
    windows = pool.groupby(["resource_id", "period", "period_start", "variable_id"]).agg(
        window_start=("window_start", "min"), window_end=("window_end", "max")).reset_index()
    production = {site: spec.production_variable for site, spec in config.kpis.sites.items() if spec.production_variable}
    extra = windows.groupby(["resource_id", "period", "period_start"]).agg(
        window_start=("window_start", "min"), window_end=("window_end", "max")).reset_index()
    extra = extra.assign(variable_id=extra["resource_id"].map(production)).dropna(subset=["variable_id"])
    keys = intensity[MEASURE_KEY[1:] + ["kpi"]].rename(columns={"kpi": "kpi_id"}).drop_duplicates()
    both = pd.concat([windows, extra.assign(per_ton=True)], ignore_index=True)
    linked = keys.merge(both, on=MEASURE_KEY[1:])
    return linked[~(linked["per_ton"].eq(True) & ~linked["kpi_id"].str.endswith("_ton"))].drop(columns="per_ton")


def ebus_measures(ebus: pd.DataFrame, tz: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    resource_type = ebus["vehicle"].map(lambda v: "fleet" if v == FLEET else "vehicle")
    frames = [pd.DataFrame({"kpi_id": kpi, "resource_id": ebus["vehicle"], "resource_type": resource_type,
                            "period": ebus["period"], "period_start": ebus["period_start"], "value": ebus[column],
                            "unit": unit, "coverage": None, "blocked": False})
              for kpi, (column, unit) in EBUS_KPIS.items()]
    measures = pd.concat(frames, ignore_index=True).dropna(subset=["value"])
    start = pd.DatetimeIndex(pd.to_datetime(measures["period_start"])).tz_localize(tz)
    length = measures["period"].map({"month": pd.DateOffset(months=1), "year": pd.DateOffset(years=1)})
    end = pd.DatetimeIndex([s + o for s, o in zip(pd.to_datetime(measures["period_start"]), length)]).tz_localize(tz)
    links = measures[MEASURE_KEY].assign(window_start=start.tz_convert("UTC"), window_end=end.tz_convert("UTC"),
                                         endpoint=measures["kpi_id"].map(lambda k: CHARGES_ENDPOINT if k == "ebus_charges"
                                                                         else TRIPS_ENDPOINT))
    return measures, links


def build_measures(config: BempConfig, energy: pd.DataFrame, inputs: pd.DataFrame, intensity: pd.DataFrame,
                   ebus: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kpi.measures, kpi.measure_inputs); ``ts`` of a measure is the UTC start of its window."""
    measures, links = [], []
    if len(energy):
        m, link = energy_measures(energy, inputs, config)
        measures.append(m)
        links.append(link)
    if len(intensity):
        measures.append(intensity.rename(columns={"kpi": "kpi_id"}).assign(
            resource_type=intensity["resource_id"].eq(intensity["site"]).map({True: "site", False: "building"})))
        links.append(intensity_inputs(intensity, inputs, config))
    if len(ebus):
        m, link = ebus_measures(ebus, config.live_sources.ipanel.timezone)
        measures.append(m)
        links.append(link)
    if not measures:
        return pd.DataFrame(), pd.DataFrame()
    measure_inputs = _stack(links)
    table = _stack(measures)
    starts = measure_inputs.groupby(MEASURE_KEY)["window_start"].min().rename("ts").reset_index()
    table = table.merge(starts, on=MEASURE_KEY, how="left")
    return table, measure_inputs
