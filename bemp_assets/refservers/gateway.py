"""Gateway reference server: IoT gateway measurements from a folder of CSV files.

Folder shape (docs/sources.md): any number of ``*.csv`` or ``*.csv.gz`` files, each with the
columns time (ISO 8601 UTC), sn, channel, device, medium, value and optionally unit (default by
medium). The bundled folder data/sample/gateway/ has one file per gateway.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from resources import wire

from .data import DataFolderError, Table, Timeline, csv_files, read_csv_records, static
from .server import Route, window_route

COLUMNS = ["time", "sn", "channel", "device", "medium", "value"]
DEFAULT_UNITS = {"temperature": "°C", "humidity": "%", "co2": "ppm", "power": "W"}


def load(folder: Path) -> dict[str, Table]:
    files = csv_files(folder)
    if not files:
        raise DataFolderError(f"{folder}: no *.csv or *.csv.gz measurement files (columns {COLUMNS})")
    frame = pd.concat([read_csv_records(p, COLUMNS, "time") for p in files], ignore_index=True)
    if "unit" not in frame.columns:
        frame["unit"] = frame["medium"].map(DEFAULT_UNITS)
    return {"measurements": Table(frame[[*COLUMNS[:5], "unit", "value"]], "time")}


def gateway_list(table: Table) -> list[dict]:
    """Each SN with its channels, as found in the data (the platform's view, not the registry)."""
    channels = table.frame[["sn", "channel", "device", "medium", "unit"]].drop_duplicates()
    return [
        {"sn": sn, "channels": group.drop(columns="sn").sort_values("channel").to_dict("records")}
        for sn, group in channels.groupby("sn", sort=True)
    ]


def routes(tables: dict[str, Table], timeline: Timeline) -> dict[str, Route]:
    gateways = gateway_list(tables["measurements"])
    return {
        wire.GATEWAY_MEASUREMENTS: window_route(tables["measurements"], timeline),
        wire.GATEWAY_GATEWAYS: lambda q: static(gateways),
    }
