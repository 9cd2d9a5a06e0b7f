"""iPanel reference server: e-bus trips, charger status snapshots and charges from CSV files.

Folder shape (docs/sources.md): ``trips``, ``charger_status`` and ``charges`` as ``.csv`` or
``.csv.gz`` with iPanel's field names as columns. A trip becomes visible when it ends (``date``
+ ``duration``), a day of charges when the depot day is over, a snapshot at ``lastUpdate``;
this only matters under replay, where it makes late data realistic.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from resources import wire

from .data import DataFolderError, Table, Timeline, csv_files, read_csv_records
from .server import Route, window_route

TRIP_FIELDS = [
    "vehicleId", "vehicleCode", "date", "odometryDistance", "duration", "speedAverage", "averageConsumption",
    "consumption", "regeneration", "auxConsumption", "tractionConsumption", "insideTemperatureAverage",
    "outsideTemperatureAverage", "dieselCO2Emissions", "electricCO2Emissions",
]
STATUS_FIELDS = [
    "chargerId", "chargerCode", "acRequired", "vehicle", "lastUpdate", "globalSoc", "power",
    "geolocationLatitude", "geolocationLongitude",
]
CHARGE_FIELDS = ["chargerId", "chargerCode", "date", "chargeNumber", "duration", "durationAverage", "suppliedEnergy"]
# file stem -> (time field, fields)
FILES = {"trips": ("date", TRIP_FIELDS), "charger_status": ("lastUpdate", STATUS_FIELDS), "charges": ("date", CHARGE_FIELDS)}
DAY_S = 86400


def load(folder: Path) -> dict[str, Table]:
    tables = {}
    for stem, (time_field, fields) in FILES.items():
        files = csv_files(folder, stem)
        if len(files) != 1:
            raise DataFolderError(f"{folder}: expected one {stem}.csv or {stem}.csv.gz, found {[f.name for f in files]}")
        frame = read_csv_records(files[0], fields, time_field)
        lag = pd.to_numeric(frame["duration"], errors="coerce") if stem == "trips" else (DAY_S if stem == "charges" else 0)
        tables[stem] = Table(frame, time_field, lag)
    return tables


def routes(tables: dict[str, Table], timeline: Timeline) -> dict[str, Route]:
    status = tables["charger_status"]
    return {
        wire.IPANEL_TRIPS: window_route(tables["trips"], timeline),
        wire.IPANEL_CHARGES: window_route(tables["charges"], timeline),
        wire.IPANEL_CHARGER_STATUS_HISTORY: window_route(status, timeline),
        wire.IPANEL_CHARGER_STATUS: lambda q: status.selection(status.latest_per("chargerId", q.now), timeline),
    }
