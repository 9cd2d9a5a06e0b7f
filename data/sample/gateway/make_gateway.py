"""Rebuild the gateway reference-server data from the real UCI appliances file.

Run from the repository root: ``python data/sample/gateway/make_gateway.py [path/to/shared/data/real]``.

The UCI "Appliances energy prediction" house (Belgium, CC BY 4.0; see ../ATTRIBUTION.md) has
nine rooms with a temperature (T1..T9, °C) and a humidity (RH_1..RH_9, %) sensor. Each room
becomes one dwelling with its own gateway, channel 1 = temperature, channel 2 = humidity. The
two energy columns (Wh per 10 min) become power channels (W = Wh * 6, the mean power over the
10 minutes): ``Appliances`` on the gateway of dwelling 1, ``lights`` on dwelling 2 (channel 3).
There is no CO2 in the source, so no CO2 channel is written.

Time: the file is a continuous 10-minute series with no DST gap on 2016-03-27 (02:00..02:50 are
present) and no repeated hour, so it cannot be Europe/Brussels wall-clock time. It is read as
Belgian standard time, UTC+01:00, for the whole span: UTC = local - 1 h.

Output: one gzip CSV per gateway, ``<sn>.csv.gz``, columns time,sn,channel,device,medium,unit,value
(the shape docs/sources.md documents; values written as in the source file).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SOURCE = "indoor/appliances_energy_uci_subset_2016-02-14_05-27.csv"
UTC_OFFSET = pd.Timedelta(hours=1)  # Belgian standard time (CET) throughout, see above
GZIP = {"method": "gzip", "mtime": 0}  # no time stamp in the header: rebuilds are byte-identical
POWER = {"Appliances": 1, "lights": 2}  # energy column -> dwelling whose gateway carries it


def serial(dwelling: int) -> str:
    return f"GW-BE-{dwelling:04d}"


def channels() -> list[tuple[str, int, str, str, str]]:
    """(sn, channel, device = source column, medium, unit) for every channel written."""
    rows = []
    for k in range(1, 10):
        rows.append((serial(k), 1, f"T{k}", "temperature", "°C"))
        rows.append((serial(k), 2, f"RH_{k}", "humidity", "%"))
    for column, dwelling in POWER.items():
        rows.append((serial(dwelling), 3, column, "power", "W"))
    return rows


def long_rows(wide: pd.DataFrame) -> pd.DataFrame:
    local = pd.to_datetime(wide["date"], format="%d/%m/%Y %H:%M")
    time = (local - UTC_OFFSET).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for sn, channel, device, medium, unit in channels():
        raw = wide[device]
        value = (pd.to_numeric(raw) * 6).map(lambda w: f"{w:g}") if medium == "power" else raw
        frames.append(pd.DataFrame({"time": time, "sn": sn, "channel": channel, "device": device,
                                    "medium": medium, "unit": unit, "value": value}))
    return pd.concat(frames, ignore_index=True)


def main(real: Path) -> None:
    wide = pd.read_csv(real / SOURCE, dtype=str)
    rows = long_rows(wide)
    for sn, part in rows.groupby("sn", sort=True):
        part.sort_values(["time", "channel"], kind="stable").to_csv(HERE / f"{sn}.csv.gz", index=False, compression=GZIP)
        print(f"{sn}.csv.gz: {len(part)} rows")
    copy = HERE.parent / "real" / Path(SOURCE).name
    shutil.copyfile(real / SOURCE, copy)
    print(f"{copy.name} copied")


if __name__ == "__main__":
    default = HERE.parents[3] / "shared" / "data" / "real"  # ../shared beside the repository
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
