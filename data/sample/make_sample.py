"""Rebuild the bundled sample files from the real data in ../shared/data/real/.

Run from the repository root: ``python data/sample/make_sample.py [path/to/shared/data/real]``.
Both inputs are CC BY 4.0; see ATTRIBUTION.md beside this script.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
OPSD = "cumulative/opsd_household_data_60min_DE_KN_residential4_2017extract.csv"
STEEL = "steel/Steel_industry_data.csv"
COUNTERS = ["grid_import", "grid_export", "pv", "heat_pump", "ev"]
# (file name, first local day, last local day): the two exports overlap on 2016-11-01,
# as real consecutive exports often do; ingestion must not duplicate that day. The window is
# the longest stretch around the autumn DST change (2016-10-30) without meter outages (the
# extract has one on 2016-10-21 and 2016-11-12/13), so the sample passes its completeness gate;
# tests craft gaps to show the gate closing.
EXPORTS = [
    ("reach_residential4_2016-10.csv", "2016-10-22", "2016-11-01"),
    ("reach_residential4_2016-11.csv", "2016-11-01", "2016-11-11"),
]


def device_id(name: str) -> str:
    """REACH devices are 20-hex-digit ids; derive a stable one per OPSD meter."""
    return hashlib.sha1(f"DE_KN_residential4_{name}".encode()).hexdigest()[:20]


def comma(values: pd.Series) -> pd.Series:
    return values.map(lambda v: f"{v:.4f}".replace(".", ","))


def reach_rows(opsd: pd.DataFrame) -> pd.DataFrame:
    local = pd.to_datetime(opsd["utc_timestamp"], utc=True).dt.tz_convert("Europe/Rome")
    stamp = local.dt.strftime("%H:%M:%S %d/%m/%Y")
    frames = []
    for name in COUNTERS:
        counter = opsd[f"DE_KN_residential4_{name}"]
        present = counter.notna()
        frames.append(pd.DataFrame({
            "Dispositivo": device_id(name), "Parametro": "Energia attiva",
            "Data": stamp[present], "Valore": comma(counter[present]), "local": local[present],
        }))
    # Average active power of grid import over the hour that starts at each reading, derived
    # from the real counter (kWh per hour == kW); written only where both readings exist.
    grid = opsd["DE_KN_residential4_grid_import"]
    step_h = pd.to_datetime(opsd["utc_timestamp"]).diff().shift(-1).dt.total_seconds() / 3600
    power = (grid.shift(-1) - grid) / step_h
    ok = power.notna() & (step_h == 1)
    frames.append(pd.DataFrame({
        "Dispositivo": device_id("grid_import"), "Parametro": "Potenza attiva",
        "Data": stamp[ok], "Valore": comma(power[ok]), "local": local[ok],
    }))
    return pd.concat(frames).sort_values(["local", "Dispositivo", "Parametro"], kind="stable")


def main(real: Path) -> None:
    opsd = pd.read_csv(real / OPSD)
    rows = reach_rows(opsd)
    day = rows["local"].dt.strftime("%Y-%m-%d")
    for name, first, last in EXPORTS:
        part = rows[(day >= first) & (day <= last)].drop(columns="local")
        part.to_csv(HERE / name, index=False, quoting=0)
        print(f"{name}: {len(part)} rows")
    shutil.copyfile(real / STEEL, HERE / "Steel_industry_data.csv")
    print("Steel_industry_data.csv copied")


if __name__ == "__main__":
    default = HERE.parents[2] / "shared" / "data" / "real"  # ../shared beside the repository
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
