"""Cleaning filters: pure, vectorised functions over long frames (variable_id, ts, value).

Every filter takes a frame holding one or many variables, works per variable with pandas
group operations (never a Python loop over rows), and returns the filtered frame plus counts
for the run's metadata. Filters compose in any order (:func:`apply_chain`).

Time stamps of interval values label the START of the interval (docs/warehouse.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

COLUMNS = ["variable_id", "ts", "value"]


@dataclass
class FilterStats:
    """What one filter did to the rows it was given."""

    filter: str
    rows_in: int
    rows_out: int = 0
    nan_dropped: int = 0
    duplicates_dropped: int = 0
    clipped: int = 0
    removed: int = 0
    resets: int = 0
    wraps: int = 0
    gaps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k in ("filter", "rows_in", "rows_out")}


def normalise(frame: pd.DataFrame, stats: FilterStats) -> pd.DataFrame:
    """Sorted by (variable_id, ts), without NaN values or repeated timestamps (last wins)."""
    frame = frame[COLUMNS]
    valid = frame["value"].notna()
    stats.nan_dropped += int((~valid).sum())
    frame = frame[valid].sort_values(["variable_id", "ts"], kind="stable")
    repeated = frame.duplicated(["variable_id", "ts"], keep="last")
    stats.duplicates_dropped += int(repeated.sum())
    return frame[~repeated].reset_index(drop=True)


def _per_row(frame: pd.DataFrame, per_variable: pd.Series | float | int) -> np.ndarray:
    """Broadcast a per-variable setting (Series indexed by variable_id) onto the rows."""
    if isinstance(per_variable, pd.Series):
        return frame["variable_id"].map(per_variable).to_numpy(dtype=float)
    return np.full(len(frame), float(per_variable))


# ---------------------------------------------------------------------------- parameters
class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeaccumulateParams(Params):
    reset: Literal["from_zero", "discard"] = Field(
        "from_zero", description="after a drop that is not a wrap: count the new reading from zero, or drop that interval's energy")
    rollover: float | None = Field(None, gt=0, description="counter maximum; a drop that fits a wrap is a wrap, not a reset")
    gap: Literal["attribute", "spread"] = Field(
        "attribute", description="energy over missing intervals: all in the interval where it appears, or spread evenly")
    gap_factor: float = Field(1.5, gt=1, description="a step longer than this many expected intervals is a gap")


class ClipParams(Params):
    min: float | None = None
    max: float | None = None
    mode: Literal["clip", "remove"] = "clip"

    @model_validator(mode="after")
    def _bounds(self) -> "ClipParams":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class SetPointParams(Params):
    tolerance: float = Field(0.0, ge=0, description="keep a sample only when it differs from the last kept one by more")


class TimestepParams(Params):
    step: Literal["15min", "30min", "60min", "1h"] = "15min"
    how: Literal["auto", "mean", "sum", "last", "min", "max"] = Field(
        "auto", description="auto: mean for instantaneous, sum for interval and de-accumulated energy, last for state")
    fill: Literal["none", "ffill"] = Field("none", description="ffill: carry set-point signals forward over empty steps")
    max_gap: str = Field("1h", description="longest stretch that ffill may bridge")

    @property
    def step_seconds(self) -> int:
        return {"15min": 900, "30min": 1800, "60min": 3600, "1h": 3600}[self.step]


class SpikeParams(Params):
    window: int = Field(5, ge=3, description="samples in the centred rolling median")
    threshold: float = Field(gt=0, description="remove samples further than this from the rolling median")


class ScaleParams(Params):
    factor: float = 1.0
    offset: float = 0.0


# ---------------------------------------------------------------------------- filters
def deaccumulate(frame: pd.DataFrame, params: DeaccumulateParams, interval_s: pd.Series | float,
                 ) -> tuple[pd.DataFrame, FilterStats]:
    """Cumulative counter readings -> consumption per interval.

    The advance between readings t[i-1] and t[i] belongs to the interval that ends at t[i]
    (label ``t[i] - step``). A drop is a wrap when ``rollover`` is set and the wrapped advance
    ``rollover - previous + current`` is under half the range; otherwise a reset, after which
    the reading counts from zero (``reset: from_zero``) or the interval is dropped
    (``discard``, counted). Over a gap of k expected intervals the advance goes to the last
    interval (``attribute``) or 1/k to each (``spread``); it is never dropped. So the output
    sums to the counter's total advance, corrected for resets and wraps.
    """
    stats = FilterStats("deaccumulate", rows_in=len(frame))
    f = normalise(frame, stats)
    group = f.groupby("variable_id", sort=False)
    previous, previous_ts = group["value"].shift(), group["ts"].shift()
    value = f["value"].to_numpy(dtype=float)
    prev = previous.to_numpy(dtype=float)
    has_prev = ~np.isnan(prev)
    delta = value - prev
    drop = has_prev & (delta < 0)
    wrap = np.zeros(len(f), dtype=bool)
    if params.rollover is not None:
        wrapped = params.rollover - prev + value
        wrap = drop & (wrapped >= 0) & (wrapped < params.rollover / 2)
        delta = np.where(wrap, wrapped, delta)
    reset = drop & ~wrap
    delta = np.where(reset, value if params.reset == "from_zero" else np.nan, delta)
    step = _per_row(f, interval_s)
    span = (f["ts"] - previous_ts).dt.total_seconds().to_numpy()
    gap = has_prev & (span > params.gap_factor * step)
    parts = np.where(gap & (params.gap == "spread"), np.maximum(1, np.rint(span / step)), 1).astype(np.int64)
    keep = has_prev & ~np.isnan(delta)
    index = np.repeat(np.flatnonzero(keep), parts[keep])
    # position of each spread piece counted back from the reading: k-1, ..., 1, 0
    first = np.repeat(np.cumsum(parts[keep]) - parts[keep], parts[keep])
    back = parts[index] - 1 - (np.arange(len(index)) - first)
    tz = f["ts"].dt.tz
    naive = (f["ts"].dt.tz_convert(None) if tz is not None else f["ts"]).to_numpy(dtype="datetime64[ns]")
    labels = naive[index] - ((back + 1) * step[index] * 1e9).astype("timedelta64[ns]")
    out = pd.DataFrame({
        "variable_id": f["variable_id"].to_numpy()[index],
        "ts": pd.DatetimeIndex(labels).tz_localize("UTC") if tz is not None else pd.DatetimeIndex(labels),
        "value": delta[index] / parts[index],
    })
    stats.resets, stats.wraps, stats.gaps = int(reset.sum()), int(wrap.sum()), int(gap.sum())
    stats.removed = int((reset & np.isnan(delta)).sum())
    stats.rows_out = len(out)
    return out, stats


def clip(frame: pd.DataFrame, params: ClipParams, **_: Any) -> tuple[pd.DataFrame, FilterStats]:
    """Values outside [min, max] are set to the bound (``clip``) or removed (``remove``)."""
    stats = FilterStats("clip", rows_in=len(frame))
    f = normalise(frame, stats)
    lo = -np.inf if params.min is None else params.min
    hi = np.inf if params.max is None else params.max
    outside = (f["value"] < lo) | (f["value"] > hi)
    if params.mode == "remove":
        f = f[~outside].reset_index(drop=True)
        stats.removed = int(outside.sum())
    else:
        f = f.assign(value=f["value"].clip(lo, hi))
        stats.clipped = int(outside.sum())
    stats.rows_out = len(f)
    return f, stats


def _deadband_keep(values: np.ndarray, starts: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices kept by a dead band relative to the last KEPT value.

    Jumps from one kept sample straight to the next with a vectorised search, so the Python
    work grows with the number of changes, not with the number of rows.
    """
    kept = []
    bounds = list(starts) + [len(values)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        i = lo
        while i < hi:
            kept.append(i)
            moved = np.abs(values[i + 1:hi] - values[i]) > tolerance
            if not moved.any():
                break
            i = i + 1 + int(np.argmax(moved))
    return np.asarray(kept, dtype=np.int64)


def setpoint(frame: pd.DataFrame, params: SetPointParams, **_: Any) -> tuple[pd.DataFrame, FilterStats]:
    """Keep a sample only when the value changed (by more than ``tolerance``) since the last kept one."""
    stats = FilterStats("setpoint", rows_in=len(frame))
    f = normalise(frame, stats)
    if params.tolerance == 0:
        first = f["variable_id"] != f["variable_id"].shift()
        keep = (first | (f["value"] != f["value"].shift())).to_numpy()
        f = f[keep]
    else:
        starts = np.flatnonzero((f["variable_id"] != f["variable_id"].shift()).to_numpy())
        f = f.iloc[_deadband_keep(f["value"].to_numpy(dtype=float), starts, params.tolerance)]
    f = f.reset_index(drop=True)
    stats.removed = stats.rows_in - stats.nan_dropped - stats.duplicates_dropped - len(f)
    stats.rows_out = len(f)
    return f, stats


AUTO_HOW = {"instantaneous": "mean", "interval": "sum", "cumulative": "sum", "state": "last"}


def timestep(frame: pd.DataFrame, params: TimestepParams, kinds: pd.Series | None = None, **_: Any,
             ) -> tuple[pd.DataFrame, FilterStats]:
    """Resample to a 15, 30 or 60 minute grid (labels are step starts, aligned to UTC).

    ``how: auto`` aggregates by the variable's kind in clean (``kinds``: variable_id -> kind):
    mean for instantaneous, sum for interval energy, last for state. ``fill: ffill`` carries
    the last value forward over empty steps, at most ``max_gap``: for set-point signals,
    which are only written when they change.
    """
    stats = FilterStats("timestep", rows_in=len(frame))
    f = normalise(frame, stats)
    step = pd.Timedelta(seconds=params.step_seconds)
    f = f.assign(ts=f["ts"].dt.floor(step))
    how = (f["variable_id"].map(kinds).map(AUTO_HOW).fillna("mean") if params.how == "auto" and kinds is not None
           else pd.Series("mean" if params.how == "auto" else params.how, index=f.index))
    pieces = [
        f[how == method].groupby(["variable_id", "ts"], as_index=False, sort=True)["value"].agg(method)
        for method in how.unique()
    ]
    out = pd.concat(pieces, ignore_index=True) if pieces else f.iloc[:0]
    if params.fill == "ffill" and len(out):
        limit = max(0, int(pd.Timedelta(params.max_gap) / step))
        grids = []
        for variable, series in out.groupby("variable_id", sort=False):
            s = series.set_index("ts")["value"]
            s = s.reindex(pd.date_range(s.index.min(), s.index.max(), freq=step)).ffill(limit=limit).dropna()
            grids.append(pd.DataFrame({"variable_id": variable, "ts": s.index, "value": s.to_numpy()}))
        out = pd.concat(grids, ignore_index=True)
    out = out.sort_values(["variable_id", "ts"], ignore_index=True)[COLUMNS]
    stats.rows_out = len(out)
    return out, stats


def spike(frame: pd.DataFrame, params: SpikeParams, **_: Any) -> tuple[pd.DataFrame, FilterStats]:
    """Remove samples further than ``threshold`` from the centred rolling median of ``window`` samples."""
    stats = FilterStats("spike", rows_in=len(frame))
    f = normalise(frame, stats)
    median = (f.groupby("variable_id", sort=False)["value"]
              .rolling(params.window, center=True, min_periods=1).median().reset_index(level=0, drop=True))
    bad = (f["value"] - median.sort_index()).abs() > params.threshold
    f = f[~bad].reset_index(drop=True)
    stats.removed, stats.rows_out = int(bad.sum()), len(f)
    return f, stats


def scale(frame: pd.DataFrame, params: ScaleParams, **_: Any) -> tuple[pd.DataFrame, FilterStats]:
    """value * factor + offset (unit conversion, calibration)."""
    stats = FilterStats("scale", rows_in=len(frame))
    f = normalise(frame, stats)
    f = f.assign(value=f["value"] * params.factor + params.offset)
    stats.rows_out = len(f)
    return f, stats


FILTERS: dict[str, tuple[Callable[..., tuple[pd.DataFrame, FilterStats]], type[Params]]] = {
    "deaccumulate": (deaccumulate, DeaccumulateParams),
    "clip": (clip, ClipParams),
    "setpoint": (setpoint, SetPointParams),
    "timestep": (timestep, TimestepParams),
    "spike": (spike, SpikeParams),
    "scale": (scale, ScaleParams),
}


def apply_chain(frame: pd.DataFrame, steps: list[tuple[str, Params]], interval_s: pd.Series,
                kinds: pd.Series) -> tuple[pd.DataFrame, list[FilterStats]]:
    """Apply ``steps`` in order. ``interval_s`` and ``kinds`` are indexed by variable_id;
    after ``deaccumulate`` the kind of those variables is ``interval`` for later steps."""
    stats = []
    kinds = kinds.copy()
    for name, params in steps:
        function, _ = FILTERS[name]
        if name == "deaccumulate":
            frame, step_stats = function(frame, params, interval_s)
            kinds[:] = kinds.where(kinds != "cumulative", "interval")
        else:
            frame, step_stats = function(frame, params, kinds=kinds)
        stats.append(step_stats)
    return frame[COLUMNS].reset_index(drop=True), stats
