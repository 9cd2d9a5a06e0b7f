"""Day-ahead forecasting: features that exist at issue time, learners, the two baselines.

Time model (docs/models.md). A forecast covers the local hours of a target day D (the model's
time zone) and is issued at ``issue_time`` (00:00 of D by default, data up to that instant).
Every feature carries ``available_at``, the instant its value is known: calendar features at
issue, a lag of k days at the end of local day D-k, a planned input's value of day D-k (a
production plan) at its publication, so D's own plan when published by the issue. The builder
refuses any frame where a feature's ``available_at`` is later than its row's issue, so a leak
is an error, never silent; the configuration refuses such lags before anything runs
(config.ModelSpec, config.load_config for a plan no source declares).

Training rows are the same rows as forecast rows, for earlier days: a model refitted at a
cutoff uses only rows whose target hour ended by the cutoff. No Dagster here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial

import numpy as np
import pandas as pd

from .config import BASELINES, ExogenousSpec, FeatureSpec, IssueTime, ModelSpec

HOUR = pd.Timedelta(hours=1)
CATEGORICAL = ("hour", "weekday")  # calendar columns HistGradientBoosting treats as categories


class ForecastError(ValueError):
    """A model cannot be built or applied as configured (leak, no data, unknown learner)."""


@dataclass
class FeatureFrame:
    """One row per target hour. ``rows``: target_ts (UTC), local_day, issued_at, y (actual or
    NaN); ``X``: the features; ``available_at``: per feature, when its value is known."""

    rows: pd.DataFrame
    X: pd.DataFrame
    available_at: pd.DataFrame = field(repr=False)

    def subset(self, mask) -> "FeatureFrame":
        mask = np.asarray(mask, dtype=bool)
        return FeatureFrame(self.rows[mask], self.X[mask], self.available_at[mask])


def local_instants(days: pd.Series | pd.Index, offset: IssueTime, tz: str) -> pd.Series:
    """The UTC instant ``offset.day`` days from each local date, at ``offset.time`` local."""
    wall = pd.to_datetime(pd.Series(days).astype(str)) + pd.Timedelta(minutes=offset.minutes)
    return wall.dt.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC")


def issue_instants(days: pd.Series | pd.Index, spec: ModelSpec, tz: str) -> pd.Series:
    """The UTC issue instant of each target day (local date): ``issue_time.day`` days before
    it, at ``issue_time.time`` local."""
    return local_instants(days, spec.issue_time, tz)


def target_rows(first_day: date, last_day: date, spec: ModelSpec, tz: str) -> pd.DataFrame:
    """Every UTC hour of the local days first_day .. last_day with its local day and issue."""
    start = pd.Timestamp(first_day).tz_localize(tz).tz_convert("UTC")
    end = pd.Timestamp(last_day + timedelta(days=1)).tz_localize(tz).tz_convert("UTC")
    ts = pd.date_range(start, end, freq="h", inclusive="left")
    local_day = ts.tz_convert(tz).normalize().tz_localize(None)
    rows = pd.DataFrame({"target_ts": ts, "local_day": local_day.date})
    rows["issued_at"] = issue_instants(rows["local_day"], spec, tz).to_numpy()
    return rows


def _local_key(ts: pd.DatetimeIndex | pd.Series, tz: str) -> pd.DatetimeIndex:
    """Local wall-clock time without zone: the key of 'the same hour k days earlier'."""
    return pd.DatetimeIndex(pd.DatetimeIndex(ts).tz_convert(tz).tz_localize(None))


def _hourly_lag(series: pd.Series, rows: pd.DataFrame, tz: str, days) -> np.ndarray:
    """Value of ``series`` (UTC-hour index) at the same local wall-clock hour ``days`` earlier
    (a number, or one per row); an hour repeated by a DST change keeps its first occurrence, a
    missing one is NaN."""
    by_wall = pd.Series(series.to_numpy(), index=_local_key(series.index, tz))
    by_wall = by_wall[~by_wall.index.duplicated()]
    wanted = _local_key(rows["target_ts"], tz) - pd.to_timedelta(days, unit="D")
    return by_wall.reindex(wanted).to_numpy(dtype=float)


def _daily_totals(series: pd.Series, tz: str) -> pd.Series:
    """Total of ``series`` per local day (naive midnight index; NaN when fewer than 20 hours are known)."""
    return series.groupby(_local_key(series.index, tz).normalize()).sum(min_count=20)


def _row_days(rows: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(rows["local_day"].astype(str)))


def _daily_total_lag(series: pd.Series, rows: pd.DataFrame, tz: str, days: int) -> np.ndarray:
    """Total of ``series`` over local day D-``days`` (NaN when fewer than 20 hours are known)."""
    return _daily_totals(series, tz).reindex(_row_days(rows) - pd.Timedelta(days=days)).to_numpy(dtype=float)


def _end_of_local_day(rows: pd.DataFrame, tz: str, days) -> np.ndarray:
    """available_at of a value from local day D-``days`` (a number, or one per row): the end
    of that day (UTC)."""
    day_after = pd.Series(_row_days(rows) - pd.to_timedelta(np.asarray(days) - 1, unit="D"))
    return day_after.dt.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").dt.tz_convert("UTC").to_numpy()


def _plan_published(rows: pd.DataFrame, exo: ExogenousSpec, tz: str, days: int) -> np.ndarray:
    """available_at of the plan of local day D-``days``: its ``published`` instant (UTC)."""
    return local_instants(_row_days(rows) - pd.Timedelta(days=days), exo.published, tz).to_numpy()


def _days_since_running(plan: pd.Series, rows: pd.DataFrame, tz: str, first: int) -> np.ndarray:
    """Per row of day D: how many days back the last day R <= D-``first`` lies whose plan is
    not all zero (the plant ran that day); NaN when no such day is known."""
    totals = plan.groupby(_local_key(plan.index, tz).normalize()).sum(min_count=1)
    running = pd.Series(totals.index.where(totals > 0), index=totals.index)
    days = _row_days(rows)
    span = pd.date_range(min(days.min(), totals.index.min()), days.max())
    last = pd.DatetimeIndex(running.reindex(span).ffill().reindex(days - pd.Timedelta(days=first)))
    return ((days - last) / pd.Timedelta(days=1)).to_numpy(dtype=float)


def _running_day_features(series: pd.Series, plan: pd.Series, rows: pd.DataFrame, tz: str, first: int):
    """The target at the same hour of the last running day before the issue and that day's
    total, each known at the end of that day. Days with no running day before are NaN (their
    available_at is the end of D-``first``, nothing is read)."""
    back = _days_since_running(plan, rows, tz, first)
    known = ~np.isnan(back)
    lag = np.where(known, back, first)
    values = {"target_last_running_day": np.where(known, _hourly_lag(series, rows, tz, lag), np.nan),
              "target_last_running_day_total": np.where(
                  known, _daily_totals(series, tz).reindex(_row_days(rows) - pd.to_timedelta(lag, unit="D")), np.nan)}
    available = _end_of_local_day(rows, tz, lag)
    return {name: (v.astype(float), available) for name, v in values.items()}


def tou_period(hour: np.ndarray, month: np.ndarray, off_day: np.ndarray) -> np.ndarray:
    """The time-of-use period of a Korean industrial tariff (KEPCO), as the steel export's
    Load_Type follows it: 0 light (23-09 and Sundays/holidays), 1 medium, 2 maximum; maximum
    10-12 all year, 13-17 from March to October, 17-20 and 22-23 from November to February."""
    winter = np.isin(month, [11, 12, 1, 2])
    medium_hours = np.isin(hour, [9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22])
    peak = np.isin(hour, [10, 11]) | (~winter & np.isin(hour, [13, 14, 15, 16])) | (winter & np.isin(hour, [17, 18, 19, 22]))
    period = np.where(peak, 2, np.where(medium_hours, 1, 0))
    return np.where(off_day, 0, period)


def _holiday_flags(days: pd.Series, years: list[int], spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per local day: a public holiday of ``holidays_country``, and a day the plant stops for a
    holiday (one whose name contains an entry of ``off_holidays``, public or bank holidays
    alike; every public holiday when the list is not configured)."""
    none = np.zeros(len(days), dtype=bool)
    if not spec.holidays_country:
        return none, none
    import holidays

    public = holidays.country_holidays(spec.holidays_country, years=years)
    is_public = days.isin(set(public.keys())).to_numpy()
    if spec.off_holidays is None:
        return is_public, is_public
    named = holidays.country_holidays(spec.holidays_country, years=years, categories=("public", "bank"))
    wanted = [n.lower() for n in spec.off_holidays]
    off = {d for d, name in named.items() if any(w in name.lower() for w in wanted)}
    return is_public, days.isin(off).to_numpy()


def _calendar(rows: pd.DataFrame, spec: FeatureSpec, tz: str) -> dict[str, np.ndarray]:
    local = pd.DatetimeIndex(rows["target_ts"]).tz_convert(tz)
    holiday, off_holiday = _holiday_flags(pd.Series(rows["local_day"]), sorted(set(local.year)), spec)
    values = {"hour": local.hour, "weekday": local.weekday, "day_of_year": local.dayofyear, "month": local.month,
              "weekend": (local.weekday >= 5).astype(int), "holiday": holiday.astype(int),
              "tou_period": tou_period(np.asarray(local.hour), np.asarray(local.month), (local.weekday == 6) | off_holiday)}
    return {name: np.asarray(values[name], dtype=float) for name in spec.calendar}


def feature_spec_of(spec: ModelSpec) -> FeatureSpec:
    """The features a model reads; a baseline reads one lag of its target."""
    if spec.learner == "persistence":
        return FeatureSpec(target_lags_days=[1 - spec.issue_time.day])
    if spec.learner == "same_hour_last_week":
        return FeatureSpec(target_lags_days=[7])
    return spec.features


def build_features(hourly: pd.DataFrame, spec: ModelSpec, tz: str, first_day: date, last_day: date) -> FeatureFrame:
    """The feature frame of ``spec`` for target days first_day .. last_day from ``hourly`` (UTC
    hour index, one column per variable id, NaN where unknown). Raises ForecastError when a
    feature would be known only after its row's issue."""
    rows = target_rows(first_day, last_day, spec, tz)
    features = feature_spec_of(spec)
    series = {v: hourly[v] if v in hourly else pd.Series(dtype=float) for v in [spec.target, *(e.variable for e in features.exogenous)]}
    if series[spec.target].dropna().empty:
        raise ForecastError(f"model {spec.name!r}: no hourly data for target {spec.target!r}")
    columns, available = {}, {}
    issued = rows["issued_at"].to_numpy()
    for name, values in _calendar(rows, features, tz).items():
        columns[name], available[name] = values, issued
    lagged = [(spec.target, "target", features.target_lags_days, features.target_daily_lags, None),
              *((e.variable, e.variable, e.lags_days, e.daily_lags, e) for e in features.exogenous)]
    for variable, label, hour_lags, day_lags, exo in lagged:
        known_at = partial(_plan_published, exo=exo) if exo is not None and exo.kind == "planned" else _end_of_local_day
        for k in hour_lags:
            columns[f"{label}_lag_{k}d"] = _hourly_lag(series[variable], rows, tz, k)
            available[f"{label}_lag_{k}d"] = known_at(rows, tz=tz, days=k)
        for k in day_lags:
            columns[f"{label}_day_total_{k}d"] = _daily_total_lag(series[variable], rows, tz, k)
            available[f"{label}_day_total_{k}d"] = known_at(rows, tz=tz, days=k)
    if features.running_day_plan:
        running = _running_day_features(series[spec.target], series[features.running_day_plan], rows, tz,
                                        1 - spec.issue_time.day)
        for name, (values, known) in running.items():
            columns[name], available[name] = values, known
    rows["y"] = series[spec.target].reindex(pd.DatetimeIndex(rows["target_ts"])).to_numpy(dtype=float)
    frame = FeatureFrame(rows.reset_index(drop=True), pd.DataFrame(columns), pd.DataFrame(available))
    check_available(frame, spec.name)
    return frame


def check_available(frame: FeatureFrame, model: str) -> None:
    """Every feature of every row must be known at that row's issue; else a ForecastError
    naming the feature (the builder's own guard against a leak)."""
    late = frame.available_at.gt(frame.rows["issued_at"], axis=0)
    if late.to_numpy().any():
        name = late.columns[late.any().to_numpy()][0]
        raise ForecastError(f"model {model!r}: feature {name!r} is known only after the issue time")


def training_mask(frame: FeatureFrame, cutoff: pd.Timestamp, excluded: np.ndarray | None = None) -> np.ndarray:
    """Rows a model refitted at ``cutoff`` may learn from: target hour ended by the cutoff,
    actual known, and not on an excluded (commissioning-failed) day."""
    mask = ((frame.rows["target_ts"] + HOUR) <= cutoff) & frame.rows["y"].notna()
    if excluded is not None:
        mask &= ~excluded
    return mask.to_numpy()


class LagBaseline:
    """A baseline as an estimator: predicts its one lag column (nothing to fit)."""

    def __init__(self, column: str):
        self.column = column

    def fit(self, X, y):
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.column].to_numpy(dtype=float)

    def __repr__(self) -> str:
        return f"LagBaseline({self.column!r})"


@dataclass
class FittedModel:
    estimator: object
    text: str
    features: list[str]
    search: dict = field(default_factory=dict)   # TPOT: generations, best MAE per generation, budget


def fit_model(spec: ModelSpec, X: pd.DataFrame, y: pd.Series, log=None, search_minutes: float | None = None,
              client=None) -> FittedModel:
    """Fit ``spec``'s learner on (X, y). ``log(str)`` receives progress (TPOT generations)."""
    if len(X) == 0:
        raise ForecastError(f"model {spec.name!r}: no training rows before the cutoff")
    if spec.learner in BASELINES:
        estimator = LagBaseline(X.columns[0])
        return FittedModel(estimator, repr(estimator), list(X.columns))
    if spec.learner == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        categorical = [c for c in CATEGORICAL if c in X.columns]  # split on any subset of hours, not thresholds
        estimator = HistGradientBoostingRegressor(loss="absolute_error", max_iter=300, learning_rate=0.05,
                                                  categorical_features=categorical or None, random_state=spec.seed)
        with threadpool_limits(limits=1, user_api="openmp"):  # OpenMP threads spinning on a busy shared
            estimator.fit(X, y)                                 # machine made a backtest 14x slower
        return FittedModel(estimator, repr(estimator), list(X.columns))
    if spec.learner == "tpot":
        from .forecasting_tpot import fit_tpot

        return fit_tpot(spec, X, y, log=log, minutes=search_minutes, client=client)
    raise ForecastError(f"model {spec.name!r}: unknown learner {spec.learner!r}")


def predict(model: FittedModel, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.estimator.predict(X[model.features]), dtype=float)
