"""The building registry: ``data/config/buildings.csv``, one row per building.

It holds what the platform knows about each building beyond its measurements: address and
position, energy carriers, heated area, and the characterisation fields the demand planner
clusters on (floors, orientation, adjacent blocks, shadowed façades, retrofit status, window
shares, district-heating connection). An empty cell means *unknown*; a filled cell that is not
a documented fact must be listed in the row's ``assumed_fields`` (``;``-separated column names),
so nothing assumed is ever read as measured.

:func:`load_registry` validates the whole file and raises one :class:`ConfigError` naming the
file, the row (its line in the file) and the column of the first invalid cell.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd

from .config import ConfigError

REGISTRY_FILE = "buildings.csv"
CARRIERS = ("gas", "electricity", "district_heating", "oil", "biomass", "heat_pump", "lpg", "other")
ORIENTATIONS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
RETROFIT = ("none", "partial", "deep", "new_build")
WINDOW_COLUMNS = ("window_share_n", "window_share_e", "window_share_s", "window_share_w")
# column -> (kind, lower bound, upper bound or allowed values)
NUMBERS = {"latitude": (-90, 90), "longitude": (-180, 180), "main_carrier_m2": (0, None),
           "secondary_carrier_m2": (0, None), "heated_area_m2": (0, None),
           **{c: (0, 1) for c in WINDOW_COLUMNS}}
COUNTS = {"floors": 1, "adjacent_blocks": 0, "shadowed_facades": 0}
CHOICES = {"main_carrier": CARRIERS, "secondary_carrier": CARRIERS, "orientation": ORIENTATIONS,
           "retrofit_status": RETROFIT, "district_heating": ("true", "false")}
REQUIRED = ("building_id", "main_carrier")
TEXT = ("address", "assumed_fields", "notes")
COLUMNS = ("building_id", "address", "latitude", "longitude", "main_carrier", "main_carrier_m2",
           "secondary_carrier", "secondary_carrier_m2", "heated_area_m2", "district_heating", "floors",
           "orientation", "adjacent_blocks", "shadowed_facades", "retrofit_status", *WINDOW_COLUMNS,
           "assumed_fields", "notes")
# the fields that describe the building for clustering (address, position and notes do not)
CHARACTERISTICS = ("heated_area_m2", "district_heating", "floors", "orientation", "adjacent_blocks",
                   "shadowed_facades", "retrofit_status", *WINDOW_COLUMNS)


def registry_path(config_dir: Path | str) -> Path:
    return Path(config_dir) / REGISTRY_FILE


def registry_version(path: Path | str) -> str:
    """A short hash of the registry's content: any edit (a building added, removed or changed)
    changes it, so the planner assets that use it show as stale in Dagster."""
    path = Path(path)
    if not path.exists():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_registry(path: Path | str) -> pd.DataFrame:
    """Read and validate the registry; one row per building, typed columns (numbers as float,
    counts as Int64, district_heating as boolean, unknown cells as missing: NaN, NA or None) and
    ``assumed_fields`` as a tuple of column names."""
    path = Path(path)
    raw = _read(path)
    _check_columns(path, list(raw.columns))
    fail = _failer(path, raw)
    _check_required_and_unique(raw, fail)
    table = raw[list(COLUMNS)].copy()
    for column, (low, high) in NUMBERS.items():
        table[column] = _numbers(raw[column], low, high, fail(column, _range_text(low, high)))
    for column, low in COUNTS.items():
        table[column] = _numbers(raw[column], low, None, fail(column, f"a whole number >= {low}"), whole=True).astype("Int64")
    for column, allowed in CHOICES.items():
        _choices(raw[column], allowed, fail(column, f"one of {list(allowed)} or empty"))
        table[column] = raw[column].where(raw[column] != "")
    table["address"] = raw["address"].where(raw["address"] != "")
    table["district_heating"] = raw["district_heating"].map({"true": True, "false": False, "": None}).astype("boolean")
    table["assumed_fields"] = _assumed(raw, fail)
    return table.reset_index(drop=True)


def assumed(row: pd.Series, column: str) -> bool:
    return column in row["assumed_fields"]


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ConfigError(f"{path}: building registry not found")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: empty file; expected a header with columns {list(COLUMNS)}")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ConfigError(f"{path}: row {number}: {len(row)} cells, the header has {len(header)}")
    frame = pd.DataFrame(body, columns=header, dtype=str).apply(lambda col: col.str.strip())
    frame.index = range(2, len(body) + 2)  # the line number of each row in the file
    return frame


def _check_columns(path: Path, header: list[str]) -> None:
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise ConfigError(f"{path}: header: missing columns {missing}, unknown columns {unknown}; "
                          f"expected {list(COLUMNS)}")


def _failer(path: Path, raw: pd.DataFrame):
    """fail(column, expected)(bad_mask) raises for the first row where the mask is true."""
    def fail(column: str, expected: str):
        def check(bad: pd.Series) -> None:
            if bad.any():
                line = bad[bad].index[0]
                name = raw.at[line, "building_id"] if "building_id" in raw else ""
                raise ConfigError(f"{path}: row {line} (building {name!r}), column '{column}': "
                                  f"expected {expected}, got {raw.at[line, column]!r}")
        return check
    return fail


def _check_required_and_unique(raw: pd.DataFrame, fail) -> None:
    for column in REQUIRED:
        fail(column, "a value (required)")(raw[column] == "")
    fail("building_id", "a building id used once in the file")(raw["building_id"].duplicated())


def _range_text(low, high) -> str:
    return f"a number between {low} and {high} or empty" if high is not None else f"a number >= {low} or empty"


def _numbers(column: pd.Series, low, high, check, whole: bool = False) -> pd.Series:
    values = pd.to_numeric(column.where(column != ""), errors="coerce")
    bad = (column != "") & values.isna()
    bad |= values.notna() & ((values < low) | ((values > high) if high is not None else False))
    if whole:
        bad |= values.notna() & (values != values.round())
    check(bad)
    return values.astype(float)


def _choices(column: pd.Series, allowed, check) -> None:
    check((column != "") & ~column.isin(allowed))


def _assumed(raw: pd.DataFrame, fail) -> pd.Series:
    parts = raw["assumed_fields"].map(lambda text: tuple(p.strip() for p in text.split(";") if p.strip()))
    valid = set(COLUMNS) - {"building_id", "assumed_fields", "notes"}
    fail("assumed_fields", f"';'-separated column names among {sorted(valid)}")(parts.map(lambda p: not set(p) <= valid))
    empty_assumed = pd.Series([any(raw.at[line, c] == "" for c in p) for line, p in parts.items()], index=parts.index, dtype=bool)
    fail("assumed_fields", "only columns that hold a value in this row (an empty cell is unknown, not assumed)")(empty_assumed)
    return parts
