"""Record tables of the reference servers, read from a folder of CSV files.

Values are served as found in the files (numbers as numbers, other text as text, empty as
null), so a data folder can carry malformed records on purpose and the pipeline's reject
handling can be tested end to end. Only the time column must parse: without it a record
cannot be placed in a window, so a bad time stops the server with file, line and column.
"""
from __future__ import annotations

import gzip
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from resources import wire


class DataFolderError(ValueError):
    """A data folder is missing, empty or holds a file not in the documented shape."""


def csv_files(folder: Path, stem: str = "*") -> list[Path]:
    return sorted([*folder.glob(f"{stem}.csv"), *folder.glob(f"{stem}.csv.gz")])


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _typed(column: pd.Series) -> pd.Series:
    """Numbers as numbers, True/False as booleans, '' as null, anything else as its text."""
    if column.isin(["True", "False", "true", "false", ""]).all() and (column != "").any():
        return column.map({"True": True, "true": True, "False": False, "false": False, "": None})
    numeric = pd.to_numeric(column, errors="coerce")
    ok = numeric.notna() | (column == "")
    if ok.all():
        return numeric
    return column.where(~ok, numeric).where(column != "", None).astype(object)


def read_csv_records(path: Path, columns: list[str], time_column: str) -> pd.DataFrame:
    """One CSV (optionally gzip, leading '#' comment lines skipped) with at least ``columns``."""
    with _open(path) as handle:
        comments = 0
        while handle.readline().startswith("#"):
            comments += 1
        handle.seek(0)
        frame = pd.read_csv(handle, dtype=str, keep_default_na=False, skiprows=comments)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFolderError(f"{path}: missing column(s) {missing}; expected at least {columns}")
    stamps = pd.to_datetime(frame[time_column], utc=True, format="ISO8601", errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise DataFolderError(f"{path}: line {row + comments + 2}: column '{time_column}': "
                              f"expected ISO 8601 UTC such as 2016-03-01T05:15:00Z, got {frame[time_column].iloc[row]!r}")
    frame = frame.apply(_typed)
    frame[time_column] = stamps.astype("int64") // 10**9
    return frame


@dataclass
class Timeline:
    """Maps data time to served time. Off: identity, everything visible. On (replay): the data
    instant ``anchor`` is served as the wall-clock start, time runs ``speed`` times faster, and
    only records whose served time has passed are visible."""

    replay: bool = False
    anchor: float = 0.0
    speed: float = 1.0
    wall_start: float = 0.0

    def served(self, data_t: float) -> float:
        return self.wall_start + (data_t - self.anchor) / self.speed if self.replay else data_t

    def data(self, served_t: float) -> float:
        return self.anchor + (served_t - self.wall_start) * self.speed if self.replay else served_t

    def data_now(self) -> float:
        return self.data(time.time()) if self.replay else math.inf


class Selection(NamedTuple):
    """What a request selects: how many records, and a way to build a slice of them."""

    total: int
    take: Callable[[int, int], list[dict]]


def static(records: list[dict]) -> Selection:
    return Selection(len(records), lambda a, b: records[a:b])


class Table:
    """Records sorted by their time field; a record is visible from ``ready`` on (data time)."""

    def __init__(self, frame: pd.DataFrame, time_field: str, lag_s: pd.Series | float = 0.0):
        order = np.argsort(frame[time_field].to_numpy(), kind="stable")
        self.frame = frame.iloc[order].reset_index(drop=True)
        self.time_field = time_field
        self.times = self.frame[time_field].to_numpy(dtype="int64")
        lag = lag_s.to_numpy()[order] if isinstance(lag_s, pd.Series) else lag_s
        self.ready = self.times + np.nan_to_num(np.asarray(lag, dtype="float64"))

    @property
    def first_time(self) -> float:
        return float(self.times[0]) if len(self.times) else 0.0

    def select(self, since: float | None, until: float | None, now: float, descending: bool = False) -> np.ndarray:
        a = 0 if since is None else int(np.searchsorted(self.times, since, "left"))
        b = len(self.times) if until is None else int(np.searchsorted(self.times, until, "left"))
        idx = a + np.flatnonzero(self.ready[a:b] <= now)
        return idx[::-1] if descending else idx

    def latest_per(self, key: str, now: float) -> np.ndarray:
        """Index of the newest visible record of each ``key`` value (a current snapshot)."""
        idx = self.select(None, None, now)
        keys = self.frame[key].to_numpy()[idx]
        _, last = np.unique(keys[::-1], return_index=True)
        return np.sort(idx[::-1][last])

    def selection(self, idx: np.ndarray, timeline: Timeline) -> Selection:
        return Selection(len(idx), lambda a, b: self.records(idx[a:b], timeline))

    def records(self, idx: np.ndarray, timeline: Timeline) -> list[dict]:
        rows = self.frame.iloc[idx].to_dict("records")
        for row in rows:
            for k, v in row.items():
                if isinstance(v, float) and math.isnan(v):
                    row[k] = None
            row[self.time_field] = wire.format_time(pd.Timestamp(timeline.served(row[self.time_field]), unit="s", tz="UTC"))
        return rows
