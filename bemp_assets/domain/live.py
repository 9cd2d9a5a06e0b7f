"""Records from the HTTP sources (IoT gateways, iPanel) -> typed frames, rejects, merges.

Validation is vectorised with pandas; a malformed record becomes a reject with its JSON text
and the reason, never silently dropped. Records repeated in a response (re-polls, duplicated
pages) are merged by key, and re-polling an overlapping window adds nothing.

For API rejects, ``raw.rejects.source_file`` names the endpoint, ``line`` is 0 and
``file_sha256`` is the hash of the record itself, so the same bad record polled twice is
stored once.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .config import MEDIA, GatewaySpec
from .parsing import REJECT_COLUMNS

LIVE_DDL = """
CREATE TABLE IF NOT EXISTS raw.gateway_measurements (
    sn VARCHAR NOT NULL, channel INTEGER NOT NULL, device VARCHAR, medium VARCHAR NOT NULL, unit VARCHAR,
    ts TIMESTAMPTZ NOT NULL, value DOUBLE NOT NULL, registered BOOLEAN NOT NULL, fetched_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.ipanel_trips (
    vehicleId BIGINT NOT NULL, vehicleCode VARCHAR, date TIMESTAMPTZ NOT NULL, odometryDistance DOUBLE,
    duration DOUBLE, speedAverage DOUBLE, averageConsumption DOUBLE, consumption DOUBLE, regeneration DOUBLE,
    auxConsumption DOUBLE, tractionConsumption DOUBLE, insideTemperatureAverage DOUBLE,
    outsideTemperatureAverage DOUBLE, dieselCO2Emissions DOUBLE, electricCO2Emissions DOUBLE,
    fetched_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.ipanel_charger_status (
    chargerId BIGINT NOT NULL, chargerCode VARCHAR, acRequired BOOLEAN, vehicle VARCHAR,
    lastUpdate TIMESTAMPTZ NOT NULL, globalSoc DOUBLE, power DOUBLE, geolocationLatitude DOUBLE,
    geolocationLongitude DOUBLE, fetched_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.ipanel_charges (
    chargerId BIGINT NOT NULL, chargerCode VARCHAR, date TIMESTAMPTZ NOT NULL, chargeNumber DOUBLE,
    duration DOUBLE, durationAverage DOUBLE, suppliedEnergy DOUBLE,
    fetched_at TIMESTAMPTZ NOT NULL
);
"""


@dataclass(frozen=True)
class Table:
    """An iPanel record type: its raw table, key, time field and typed columns."""

    name: str
    key: tuple[str, ...]
    time_field: str
    text: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        order = [*self.key, *self.text, *self.numbers, *self.flags]
        return list(dict.fromkeys(order))


TRIPS = Table("raw.ipanel_trips", ("vehicleId", "date"), "date", text=("vehicleCode",), numbers=(
    "odometryDistance", "duration", "speedAverage", "averageConsumption", "consumption", "regeneration",
    "auxConsumption", "tractionConsumption", "insideTemperatureAverage", "outsideTemperatureAverage",
    "dieselCO2Emissions", "electricCO2Emissions"))
CHARGER_STATUS = Table("raw.ipanel_charger_status", ("chargerId", "lastUpdate"), "lastUpdate",
                       text=("chargerCode", "vehicle"), numbers=("globalSoc", "power", "geolocationLatitude", "geolocationLongitude"),
                       flags=("acRequired",))
CHARGES = Table("raw.ipanel_charges", ("chargerId", "date"), "date", text=("chargerCode",),
                numbers=("chargeNumber", "duration", "durationAverage", "suppliedEnergy"))


@dataclass(frozen=True)
class SourceDescription:
    """What warehouse.ingest needs to know of a source that is not a configured CSV source:
    its name (meta.variables.source, raw.rejects.source), site and sampling interval in seconds."""

    name: str
    site: str | None
    expected_interval: int


@dataclass
class Batch:
    """Validated records of one fetch: ``rows`` typed, ``rejects`` with reasons."""

    rows: pd.DataFrame
    rejects: pd.DataFrame
    received: int
    repeated: int = 0
    unknown_sns: list[str] = field(default_factory=list)


def _record_text(records: pd.DataFrame) -> pd.Series:
    return pd.Series([json.dumps(r, default=str, sort_keys=True) for r in records.to_dict("records")], index=records.index)


def _rejects(records: pd.DataFrame, reasons: pd.Series) -> pd.DataFrame:
    bad = reasons.notna()
    if not bad.any():
        return pd.DataFrame(columns=[*REJECT_COLUMNS, "file_sha256"])
    text = _record_text(records[bad])
    return pd.DataFrame({"line": 0, "field": "", "raw_text": text, "reason": reasons[bad],
                         "file_sha256": [hashlib.sha256(t.encode()).hexdigest() for t in text]}).reset_index(drop=True)


def _first_reason(*checks: tuple[pd.Series, str]) -> pd.Series:
    """Per row, the message of the first check that is True, else NaN."""
    reasons = pd.Series(np.nan, index=checks[0][0].index, dtype=object)
    for failed, message in reversed(checks):
        reasons = reasons.mask(failed, message)
    return reasons


def _time(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(np.nan, index=frame.index, dtype=object)


def gateway_batch(records: list[dict], registry: dict[str, GatewaySpec]) -> Batch:
    """Validate gateway measurements: (time, sn, channel, device, medium, unit, value)."""
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    ts, value = _time(_column(raw, "time")), pd.to_numeric(_column(raw, "value"), errors="coerce")
    channel = pd.to_numeric(_column(raw, "channel"), errors="coerce")
    sn, medium = _column(raw, "sn").astype("string"), _column(raw, "medium").astype("string")
    reasons = _first_reason(
        (sn.isna() | (sn.str.strip() == ""), "missing sn"),
        (ts.isna(), "bad or missing time: expected ISO 8601 UTC such as 2016-03-01T10:00:00Z"),
        (channel.isna() | (channel % 1 != 0) | (channel < 0), "bad channel: expected a non-negative integer"),
        (~medium.isin(list(MEDIA)).fillna(False), f"unknown medium: expected one of {sorted(MEDIA)}"),
        (value.isna() | ~np.isfinite(value.fillna(0)), "bad value: expected a finite number"),
    )
    good = reasons.isna()
    rows = pd.DataFrame({
        "sn": sn[good].astype(str), "channel": channel[good].astype(int), "device": _column(raw, "device")[good],
        "medium": medium[good].astype(str), "unit": _column(raw, "unit")[good], "ts": ts[good], "value": value[good].astype(float),
    })
    rows["registered"] = rows["sn"].isin(list(registry))
    rows["variable_id"] = rows["sn"] + ".ch" + rows["channel"].astype(str) + "_" + rows["medium"]
    before = len(rows)
    rows = rows.drop_duplicates(["sn", "channel", "ts"], keep="last").reset_index(drop=True)
    return Batch(rows=rows, rejects=_rejects(raw, reasons), received=len(raw), repeated=before - len(rows),
                 unknown_sns=sorted(set(rows.loc[~rows["registered"], "sn"])))


def ipanel_batch(records: list[dict], table: Table) -> Batch:
    """Validate iPanel records of ``table``: key and time present, numbers numeric."""
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    typed = pd.DataFrame(index=raw.index)
    checks = []
    for name in table.columns:
        column = _column(raw, name)
        if name == table.time_field:
            typed[name] = _time(column)
            checks.append((typed[name].isna(), f"bad or missing {name}: expected ISO 8601 UTC"))
        elif name in table.numbers or name in table.key:
            typed[name] = pd.to_numeric(column, errors="coerce")
            wrong = typed[name].isna() & column.notna() & (column.astype(str).str.strip() != "")
            missing_key = typed[name].isna() if name in table.key else wrong
            checks.append((wrong | missing_key, f"bad {name}: expected a number"))
        elif name in table.flags:
            typed[name] = column.map({True: True, False: False, "true": True, "false": False, "True": True, "False": False})
        else:
            typed[name] = column.where(column.notna(), None).astype(object)
    reasons = _first_reason(*checks)
    rows = typed[reasons.isna()]
    before = len(rows)
    rows = rows.drop_duplicates(list(table.key), keep="last").reset_index(drop=True)
    return Batch(rows=rows, rejects=_rejects(raw, reasons), received=len(raw), repeated=before - len(rows))


@dataclass(frozen=True)
class ReadingBatch:
    """Readings of one HTTP fetch, typed for raw.measurements: ``readings`` (variable_id, ts in
    UTC, value), at most one per (variable_id, ts) (checked here, since the raw merge of an empty
    span inserts them as they are); the ``variables`` they name (meta.variables columns); the
    fetch's ``rejects``; ``label`` is what raw.measurements.source_file and raw.rejects name."""

    label: str
    source: str
    readings: pd.DataFrame
    variables: pd.DataFrame
    rejects: pd.DataFrame

    def __post_init__(self):
        repeated = self.readings.duplicated(["variable_id", "ts"])
        if repeated.any():
            first = self.readings[repeated].iloc[0]
            raise ValueError(f"{self.label}: {int(repeated.sum())} reading(s) repeat a key, first "
                             f"{first['variable_id']} at {first['ts']}: expected one reading per variable and time")


def gateway_readings(batch: Batch, endpoint: str) -> ReadingBatch:
    """A validated gateway fetch as readings of variables <sn>.ch<channel>_<medium> (the batch
    keeps one row per sn, channel and time, hence one per variable and time)."""
    rows = batch.rows
    variables = rows.drop_duplicates("variable_id").assign(
        parameter=lambda f: f["medium"].map(lambda m: MEDIA[m][0]),
        unit=lambda f: f["unit"].where(f["unit"].notna(), f["medium"].map(lambda m: MEDIA[m][1])),
        kind="instantaneous", category=lambda f: f["medium"],
    ).rename(columns={"sn": "device", "device": "original_name"})[
        ["variable_id", "device", "parameter", "original_name", "unit", "kind", "category"]]
    return ReadingBatch(label=endpoint, source="gateway", readings=rows[["variable_id", "ts", "value"]].reset_index(drop=True),
                        variables=variables.reset_index(drop=True), rejects=batch.rejects)


def merge_records(con: duckdb.DuckDBPyConnection, table: str, key: list[str], rows: pd.DataFrame) -> dict[str, int]:
    """Insert new keys and update rows whose values changed; identical rows are left alone.
    Returns inserted and updated counts. Call inside a transaction."""
    if not len(rows):
        return {"inserted": 0, "updated": 0}
    con.register("_records", rows)
    columns = [c for c in rows.columns]
    on = " AND ".join(f't."{k}" = r."{k}"' for k in key)
    changed = " OR ".join(f't."{c}" IS DISTINCT FROM r."{c}"' for c in columns if c not in key and c != "fetched_at")
    updated = con.execute(f"""
        UPDATE {table} t SET {', '.join(f'"{c}" = r."{c}"' for c in columns if c not in key)}
        FROM _records r WHERE {on} AND ({changed or 'false'})
    """).fetchone()[0]
    inserted = con.execute(f"""
        INSERT INTO {table} ({', '.join(f'"{c}"' for c in columns)})
        SELECT {', '.join(f'r."{c}"' for c in columns)} FROM _records r
        WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on})
    """).fetchone()[0]
    con.unregister("_records")
    return {"inserted": int(inserted), "updated": int(updated)}


def held_days(con, tz: str) -> tuple[date, date] | None:
    """First and last site-local day the warehouse holds any live-source record for (the
    default range of `bemp run --job bemp_live`), or None when it holds none."""
    spans = " UNION ALL ".join(
        f'SELECT min("{t.time_field}") AS first, max("{t.time_field}") AS last FROM {t.name}'
        for t in (TRIPS, CHARGER_STATUS, CHARGES))
    first, last = con.execute(
        f"SELECT min(first), max(last) FROM (SELECT min(ts) AS first, max(ts) AS last "
        f"FROM raw.gateway_measurements UNION ALL {spans})").fetchone()
    if first is None:
        return None
    return pd.Timestamp(first).tz_convert(tz).date(), pd.Timestamp(last).tz_convert(tz).date()
