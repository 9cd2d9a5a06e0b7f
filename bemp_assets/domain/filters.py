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
# a counter drop below this share of the previous reading is a reset (shared with commissioning)
DEFAULT_RESET_FRACTION = 0.1


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
    glitches: int = 0
    gaps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v or k in ("filter", "rows_in", "rows_out")}


def normalise(frame: pd.DataFrame, stats: FilterStats) -> pd.DataFrame:
    """Sorted by (variable_id, ts), without NaN values or repeated timestamps (last wins)."""
    return _normalised(frame, stats)[0]


def _normalised(frame: pd.DataFrame, stats: FilterStats) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """:func:`normalise`, plus per row the code of its variable (non-decreasing, so a change of
    code starts a variable) and the variable of each code.

    Fast path: one hash factorisation of ``variable_id`` and a check on int64 time stamps; a frame
    that is already in order (the usual case: clean's query and every filter return one) is not
    sorted again, and one that is not is sorted with ``np.lexsort`` (stable, like the pandas sort
    of the fallback). Frames the fast path does not cover (missing variable ids, NaT, mixed
    types) take the plain pandas route; both give the same rows in the same order.
    """
    frame = frame[COLUMNS]
    valid = frame["value"].notna().to_numpy()
    stats.nan_dropped += int((~valid).sum())
    keys = _sort_keys(frame)
    if keys is None:
        frame = frame[valid].sort_values(["variable_id", "ts"], kind="stable")
        repeated = frame.duplicated(["variable_id", "ts"], keep="last")
        stats.duplicates_dropped += int(repeated.sum())
        frame = frame[~repeated].reset_index(drop=True)
        codes, uniques = pd.factorize(frame["variable_id"])
        return frame, codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)
    codes, ts, uniques = keys
    rows = np.flatnonzero(valid) if not valid.all() else None
    if rows is not None:
        codes, ts = codes[rows], ts[rows]
    dc, dt = np.diff(codes), np.diff(ts)
    if not ((dc > 0) | ((dc == 0) & (dt > 0))).all():      # not strictly in (variable, ts) order
        order = np.lexsort((ts, codes))
        codes, ts = codes[order], ts[order]
        later = np.zeros(len(codes), dtype=bool)             # same key as the next row: last wins
        later[:-1] = (codes[1:] == codes[:-1]) & (ts[1:] == ts[:-1])
        stats.duplicates_dropped += int(later.sum())
        order = order[~later]
        codes = codes[~later]
        rows = order if rows is None else rows[order]
    if rows is None:
        frame.index = pd.RangeIndex(len(frame))            # frame[COLUMNS] is a copy already
    else:
        frame = pd.DataFrame({c: frame[c].array.take(rows) for c in COLUMNS}, copy=False)
    return frame, codes, uniques


def _sort_keys(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(variable codes in sorted-name order, time stamps as int64, variables) or None."""
    if not pd.api.types.is_datetime64_any_dtype(frame["ts"].dtype):
        return None
    ts = frame["ts"].array.asi8
    names = frame["variable_id"].to_numpy()
    try:
        if names.dtype == object and len(names):             # already grouped by name, names ascending?
            first = np.ones(len(names), dtype=bool)
            first[1:] = names[1:] != names[:-1]
            uniques = names[first]
            if bool((uniques[1:] > uniques[:-1]).all()) and not pd.isna(uniques).any():
                return np.cumsum(first, dtype=np.int64) - 1, ts, uniques
        codes, uniques = pd.factorize(frame["variable_id"], sort=True)
    except TypeError:  # names that do not compare with each other
        return None
    if (codes < 0).any() or (ts == np.iinfo(np.int64).min).any():  # missing id or NaT
        return None
    return codes.astype(np.int64, copy=False), ts, np.asarray(uniques, dtype=object)


def _group_starts(codes: np.ndarray) -> np.ndarray:
    """True on the first row of each variable (``codes`` from :func:`_normalised`)."""
    first = np.ones(len(codes), dtype=bool)
    first[1:] = codes[1:] != codes[:-1]
    return first


def _per_row(frame: pd.DataFrame, per_variable: pd.Series | float | int,
             codes: np.ndarray | None = None, uniques: np.ndarray | None = None) -> np.ndarray:
    """Broadcast a per-variable setting (Series indexed by variable_id) onto the rows."""
    if isinstance(per_variable, pd.Series):
        if codes is not None and uniques is not None:  # look each variable up once
            return pd.Series(uniques, dtype=object).map(per_variable).to_numpy(dtype=float)[codes]
        return frame["variable_id"].map(per_variable).to_numpy(dtype=float)
    return np.full(len(frame), float(per_variable))


# ---------------------------------------------------------------------------- parameters
class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeaccumulateParams(Params):
    reset: Literal["from_zero", "discard"] = Field(
        "from_zero", description="after a drop that is not a wrap: count the new reading from zero, or drop that interval's energy")
    rollover: float | None = Field(None, gt=0, description="counter maximum; a drop that fits a wrap is a wrap, not a reset")
    reset_fraction: float = Field(
        DEFAULT_RESET_FRACTION, ge=0, lt=1,
        description="a drop below this share of the previous reading is a reset; a smaller drop is a glitch, held")
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
    ``rollover - previous + current`` is under half the range; a reset when the reading falls
    below ``reset_fraction`` of the previous one (meter swap, counter cleared), after which the
    reading counts from zero (``reset: from_zero``) or the interval is dropped (``discard``,
    counted); any other drop is a glitch (jitter, rounding): the counter is held at its highest
    reading until it climbs past it, so a glitch never becomes a spike. Over a gap of k expected intervals the advance goes to the last
    interval (``attribute``) or 1/k to each (``spread``); it is never dropped. So the output
    sums to the counter's total advance, corrected for resets and wraps.
    """
    stats = FilterStats("deaccumulate", rows_in=len(frame))
    f, codes, uniques = _normalised(frame, stats)
    first_row = _group_starts(codes)                       # previous reading: the row above, same variable
    value = f["value"].to_numpy(dtype=float)
    prev = np.empty(len(f))
    prev[1:] = value[:-1]
    prev[first_row] = np.nan
    previous_ts = f["ts"].shift().where(~first_row)
    has_prev = ~np.isnan(prev)
    delta = value - prev
    drop = has_prev & (delta < 0)
    wrap = np.zeros(len(f), dtype=bool)
    wrapped = np.zeros(len(f))
    if params.rollover is not None:
        wrapped = params.rollover - prev + value
        wrap = drop & (wrapped >= 0) & (wrapped < params.rollover / 2)
    reset = drop & ~wrap & (value < params.reset_fraction * prev)
    glitch = drop & ~wrap & ~reset
    if glitch.any():  # hold the highest reading within each stretch between resets and wraps
        held = pd.Series(value).groupby(np.cumsum(first_row | reset | wrap)).cummax().to_numpy()
        held_prev = np.empty(len(f))
        held_prev[1:] = held[:-1]
        delta = held - np.where(first_row, np.nan, held_prev)
    delta = np.where(wrap, wrapped, delta)
    delta = np.where(reset, value if params.reset == "from_zero" else np.nan, delta)
    step = _per_row(f, interval_s, codes, uniques)
    span = (f["ts"] - previous_ts).dt.total_seconds().to_numpy()
    gap = has_prev & (span > params.gap_factor * step)
    parts = np.where(gap & (params.gap == "spread"), np.maximum(1, np.rint(span / step)), 1).astype(np.int64)
    keep = has_prev & ~np.isnan(delta)
    if (parts[keep] == 1).all():                           # nothing spread: one piece per reading
        index = np.flatnonzero(keep)
        back = np.zeros(len(index), dtype=np.int64)
    else:
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
    stats.resets, stats.wraps, stats.gaps, stats.glitches = int(reset.sum()), int(wrap.sum()), int(gap.sum()), int(glitch.sum())
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


NEAR = 32  # look-ahead of the vectorised next-change search in _deadband_keep


def _deadband_keep(values: np.ndarray, starts: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices kept by a dead band relative to the last KEPT value (``starts``: first row of each
    variable; rows run to the next start).

    The kept samples form a path: each variable's first row, then from a kept row ``i`` its
    ``next(i)``, the first later row of the variable with ``|v[j] - v[i]| > tolerance``.
    Without a Python loop per kept sample (noisy data keeps nearly every row):

    1. ``next(i)`` for every row at once, testing offsets 1..NEAR with numpy (each pass only
       on the rows still undecided). A row with no change within NEAR rows is *far*.
    2. Pointer jumping (``J = J[J]``, log2(path length) passes) finds for every row the end of
       its chain of near steps. Only from a far row at such an end does the path go on; its
       next change is searched in growing slices (Python work per far kept sample, each of
       which stands for more than NEAR rows; flat signals keep few samples anyway).
    3. Doubling from the entry points (each variable's first row and the row after each far
       kept row) marks every row on the path: ``S |= J_k[S]``, ``J_k+1 = J_k[J_k]``.

    The comparison is the same ``np.abs(v[j] - v[i]) > tolerance``, so the result is exactly
    that of walking the rows one by one.
    """
    n = len(values)
    starts = np.asarray(starts, dtype=np.int64)
    if n == 0 or len(starts) == 0:
        return np.empty(0, dtype=np.int64)
    bounds = np.append(starts, n)
    rows = np.arange(n, dtype=np.int64)
    end = bounds[np.searchsorted(starts, rows, side="right")]  # first row after the row's variable
    nxt = np.full(n, -1, dtype=np.int64)                       # -1: far, n: no change until the end
    todo = rows
    for k in range(1, NEAR + 1):
        j = todo + k
        past = j >= end[todo]
        nxt[todo[past]] = n
        todo, j = todo[~past], j[~past]
        moved = np.abs(values[j] - values[todo]) > tolerance
        nxt[todo[moved]] = j[moved]
        todo = todo[~moved]
        if not len(todo):
            break
    chain = np.where((nxt >= 0) & (nxt < n), nxt, rows)         # terminal rows point at themselves
    entries = list(starts)
    if len(todo):                                              # some rows are far: follow those on the path
        last = chain
        while True:
            jumped = last[last]
            if np.array_equal(jumped, last):
                break
            last = jumped
        for start in starts:
            row = int(last[start])
            while nxt[row] < 0:
                found = _next_change(values, row, int(end[row]), tolerance)
                if found is None:
                    break
                entries.append(found)
                row = int(last[found])
    on_path = np.zeros(n, dtype=bool)
    on_path[np.asarray(entries, dtype=np.int64)] = True
    while True:
        on_path[chain[np.flatnonzero(on_path)]] = True
        jumped = chain[chain]
        if np.array_equal(jumped, chain):
            break
        chain = jumped
    return np.flatnonzero(on_path).astype(np.int64)


def _next_change(values: np.ndarray, row: int, end: int, tolerance: float) -> int | None:
    """First index after ``row + NEAR`` (and before ``end``) that moved beyond the band, by slices doubling in size."""
    lo, width = row + NEAR + 1, 4 * NEAR
    while lo < end:
        moved = np.abs(values[lo:min(lo + width, end)] - values[row]) > tolerance
        if moved.any():
            return lo + int(np.argmax(moved))
        lo, width = lo + width, 2 * width
    return None


def setpoint(frame: pd.DataFrame, params: SetPointParams, **_: Any) -> tuple[pd.DataFrame, FilterStats]:
    """Keep a sample only when the value changed (by more than ``tolerance``) since the last kept one."""
    stats = FilterStats("setpoint", rows_in=len(frame))
    f, codes, _ = _normalised(frame, stats)
    first = _group_starts(codes)
    value = f["value"].to_numpy(dtype=float)
    if params.tolerance == 0:
        keep = first.copy()
        keep[1:] |= value[1:] != value[:-1]
        f = f[keep]
    else:
        f = f.iloc[_deadband_keep(value, np.flatnonzero(first), params.tolerance)]
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
    f, codes, uniques = _normalised(frame, stats)
    step = pd.Timedelta(seconds=params.step_seconds)
    f = f.assign(ts=f["ts"].dt.floor(step))
    if len(f):
        # f is sorted by (variable, ts) and flooring keeps that order, so each (variable, step)
        # is a run of consecutive rows: number the runs and aggregate by that integer (the same
        # pandas kernels, over the same values in the same order, as grouping by the two keys)
        floored = f["ts"].array.asi8
        new_run = _group_starts(codes)
        new_run[1:] |= floored[1:] != floored[:-1]
        run = np.cumsum(new_run) - 1
        firsts = np.flatnonzero(new_run)
        how = (pd.Series(uniques, dtype=object).map(kinds).map(AUTO_HOW).fillna("mean").to_numpy()
               if params.how == "auto" and kinds is not None
               else np.full(len(uniques), "mean" if params.how == "auto" else params.how, dtype=object))
        result = np.empty(len(firsts))
        value = f["value"]
        for method in pd.unique(how[codes]):
            rows = how[codes] == method
            part = (value if rows.all() else value[rows]).groupby(run if rows.all() else run[rows], sort=False).agg(method)
            result[part.index.to_numpy()] = part.to_numpy(dtype=float)
        out = pd.DataFrame({"variable_id": f["variable_id"].to_numpy()[firsts], "ts": f["ts"].array[firsts],
                            "value": result})
    else:
        out = f.iloc[:0]
    if params.fill == "ffill" and len(out):
        limit = max(0, int(pd.Timedelta(params.max_gap) / step))
        grids = []
        for variable, series in out.groupby("variable_id", sort=False):
            s = series.set_index("ts")["value"]
            s = s.reindex(pd.date_range(s.index.min(), s.index.max(), freq=step)).ffill(limit=limit).dropna()
            grids.append(pd.DataFrame({"variable_id": variable, "ts": s.index, "value": s.to_numpy()}))
        out = pd.concat(grids, ignore_index=True)
        out = out.sort_values(["variable_id", "ts"], ignore_index=True)
    out = out[COLUMNS].reset_index(drop=True)                  # runs are already in (variable, ts) order
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
