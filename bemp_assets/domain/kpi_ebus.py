"""The e-bus line's KPIs by month and year, per vehicle and for the fleet (docs/kpis.md).

From the iPanel tables as served (raw.ipanel_trips, raw.ipanel_charges), in the iPanel source's
time zone (live.yaml ``live_sources.ipanel.timezone``): km, traction/auxiliary/total energy,
kWh/km, regeneration share (regenerated / traction), charges and charger energy (fleet only:
chargers are not vehicles), and CO2 avoided against the diesel bus of kpis.yaml.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from .config import BempConfig

FLEET = "fleet"
TRIPS_ENDPOINT, CHARGES_ENDPOINT = "ipanel:trips", "ipanel:charges"

TRIPS_SQL = """
SELECT vehicleCode AS vehicle, date_trunc($period, timezone($tz, date))::DATE AS period_start,
       sum(odometryDistance) AS km, sum(tractionConsumption) AS traction_kwh, sum(auxConsumption) AS auxiliary_kwh,
       sum(consumption) AS total_kwh, sum(regeneration) AS regeneration_kwh,
       count(DISTINCT timezone($tz, date)::DATE) AS trip_days
FROM raw.ipanel_trips GROUP BY GROUPING SETS ((vehicleCode, period_start), (period_start))
"""
CHARGES_SQL = """
SELECT date_trunc($period, timezone($tz, date))::DATE AS period_start, sum(chargeNumber) AS charges,
       sum(suppliedEnergy) AS charger_kwh
FROM raw.ipanel_charges GROUP BY ALL
"""


def ebus_period(con: duckdb.DuckDBPyConnection, config: BempConfig, period: str) -> pd.DataFrame:
    tz = config.live_sources.ipanel.timezone
    trips = con.execute(TRIPS_SQL, {"period": period, "tz": tz}).df()
    trips["vehicle"] = trips["vehicle"].fillna(FLEET)
    charges = con.execute(CHARGES_SQL, {"period": period, "tz": tz}).df().assign(vehicle=FLEET)
    frame = trips.merge(charges, on=["vehicle", "period_start"], how="outer")
    return frame.assign(period=period)


def build_ebus(con: duckdb.DuckDBPyConnection, config: BempConfig) -> pd.DataFrame:
    """kpi.ebus_monthly: one row per vehicle (and the fleet) per month and per year."""
    frame = pd.concat([ebus_period(con, config, p) for p in ("month", "year")], ignore_index=True)
    frame["kwh_per_km"] = frame["total_kwh"] / frame["km"].where(frame["km"] > 0)
    frame["regeneration_share"] = frame["regeneration_kwh"] / frame["traction_kwh"].where(frame["traction_kwh"] > 0)
    bus, carrier = config.kpis.diesel_bus, config.kpis.carriers.get(config.kpis.ebus_carrier)
    frame["diesel_co2_kg"] = frame["km"] * bus.litres_per_km * bus.co2_kg_per_litre if bus else float("nan")
    frame["electric_co2_kg"] = frame["total_kwh"] * carrier.co2_kg_per_kwh if carrier else float("nan")
    frame["co2_avoided_kg"] = frame["diesel_co2_kg"] - frame["electric_co2_kg"]
    frame["period_start"] = pd.to_datetime(frame["period_start"]).dt.date
    return frame.sort_values(["period", "period_start", "vehicle"], ignore_index=True)
