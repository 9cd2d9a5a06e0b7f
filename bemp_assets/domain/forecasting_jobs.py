"""What the ml assets and the CLI do, as plain functions over a warehouse connection:
train the configured models, backtest them against both baselines and assign roles, issue a
day's forecasts. No Dagster here; ``log`` is any callable taking a line of text.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from .config import BASELINES, BempConfig, ModelSpec
from .forecasting import ForecastError, build_features, feature_spec_of, fit_model, issue_instants, predict, training_mask
from .forecasting_eval import backtest, decide_roles, score_backtests
from .forecasting_store import (
    blocked_days,
    current_champions,
    excluded_rows,
    load_artifact,
    load_hourly,
    model_variables,
    record_model,
    refresh_status,
    save_artifact,
    version_before,
    write_backtest,
    write_forecasts,
    write_promotions,
)


def model_tz(spec: ModelSpec, config: BempConfig) -> str:
    return spec.timezone or config.site.timezone


def baseline_specs(config: BempConfig) -> list[ModelSpec]:
    """Both baselines for every target, in the time zone and issue time of its first model."""
    first = {}
    for spec in config.forecasting.models:
        first.setdefault(spec.target, spec)
    return [ModelSpec(name=b, target=t, learner=b, category="baseline", timezone=s.timezone, issue_time=s.issue_time,
                      description=f"{b.replace('_', ' ')} of {t}") for t, s in first.items() for b in BASELINES]


def select_specs(config: BempConfig, names: list[str] | None = None, include_tpot: bool = False) -> list[ModelSpec]:
    """Configured models by name (all when None; TPOT ones only when named or asked for)."""
    if names:
        missing = [n for n in names if n not in {s.name for s in config.forecasting.models}]
        if missing:
            raise ForecastError(f"no model named {missing}; configured: {[s.name for s in config.forecasting.models]}")
        return [s for s in config.forecasting.models if s.name in names]
    return [s for s in config.forecasting.models if include_tpot or s.learner != "tpot"]


def history_frame(con, spec: ModelSpec, config: BempConfig, first_day: date | None = None, last_day: date | None = None):
    """Feature frame of ``spec`` over the days its data covers (or the given ones), the rows
    excluded by failed blocking commissioning days, and how many such days it holds."""
    tz = model_tz(spec, config)
    variables = model_variables(spec)
    hourly = load_hourly(con, variables)
    if hourly.empty or hourly[spec.target].dropna().empty:
        raise ForecastError(f"model {spec.name!r}: agg.hourly holds no data for {spec.target!r}")
    known = hourly[spec.target].dropna().index.tz_convert(tz)
    frame = build_features(hourly, spec, tz, first_day or known[0].date(), last_day or known[-1].date())
    excluded = excluded_rows(frame, blocked_days(con, variables), config.site.timezone)
    return frame, excluded, int(pd.Series(frame.rows["local_day"])[excluded].nunique())


def train_one(con, spec: ModelSpec, config: BempConfig, artifacts: Path, cutoff=None, log=print, **fit_options) -> dict:
    """Fit ``spec`` on every usable row whose target hour ended by ``cutoff`` (default: the end
    of its data), save the artifact and record the version in ml.models."""
    frame, excluded, n_excluded = history_frame(con, spec, config)
    if cutoff is None:
        cutoff = frame.rows.loc[frame.rows["y"].notna(), "target_ts"].max() + pd.Timedelta(hours=1)
    mask = training_mask(frame, cutoff, excluded)
    fitted = fit_model(spec, frame.X[mask], frame.rows["y"][mask], log=log, **fit_options)
    version, path = save_artifact(fitted, spec, artifacts / "models")
    start = frame.rows.loc[mask, "target_ts"].min()
    record_model(con, spec, version, path, fitted, start, cutoff, int(mask.sum()), n_excluded)
    log(f"trained {spec.name} ({spec.learner}) version {version} on {int(mask.sum())} hours up to {cutoff}; "
        f"{n_excluded} commissioning-failed days excluded")
    return {"model_id": spec.name, "model_version": version, "train_end": cutoff, "rows": int(mask.sum()),
            "excluded_days": n_excluded, "pipeline": fitted.text, "search": fitted.search}


def default_window(con, spec: ModelSpec, config: BempConfig) -> tuple[date, date]:
    """The configured backtest window, else the last three whole local months of the target."""
    settings = config.forecasting
    if settings.backtest_start and settings.backtest_end:
        return settings.backtest_start, settings.backtest_end
    last = con.execute("SELECT max(hour) FROM agg.hourly WHERE variable_id = ?", [spec.target]).fetchall()[0][0]
    if last is None:
        raise ForecastError(f"agg.hourly holds no data for {spec.target!r}")
    end = pd.Timestamp(last).tz_convert(model_tz(spec, config)).date()
    start = (pd.Timestamp(end) - pd.offsets.MonthBegin(3)).date()
    return settings.backtest_start or start, settings.backtest_end or end


def backtest_target(con, target: str, specs: list[ModelSpec], config: BempConfig, log=print, **fit_options) -> pd.DataFrame:
    """Backtest ``specs`` and both baselines of one target over its window; store and return the scores."""
    baselines = [b for b in baseline_specs(config) if b.target == target]
    start, end = default_window(con, baselines[0], config)
    results, excluded_ts, n_excluded = {}, set(), 0
    for spec in [*baselines, *specs]:
        frame, excluded, n_excluded = history_frame(con, spec, config)
        excluded_ts |= set(frame.rows.loc[excluded, "target_ts"])
        results[spec.name] = backtest(spec, frame, start, end, excluded,
                                      min_training_rows=config.forecasting.min_training_days * 24, **fit_options)
        log(f"backtest {spec.name} ({target}) {start} .. {end}: {len(results[spec.name])} hours forecast")
    scores = score_backtests(results, excluded_ts)
    write_backtest(con, target, scores, results, start, end, n_excluded)
    return scores.assign(target=target)


def run_backtests(con, config: BempConfig, names: list[str] | None = None, include_tpot: bool = False, log=print,
                  **fit_options) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Backtest every selected model per target, then decide roles (promotion margin), record
    promotions and rebuild ml.model_status. Returns scores, roles, promotions."""
    specs = select_specs(config, names, include_tpot)
    scores = []
    for target in sorted({s.target for s in specs}):
        try:
            scores.append(backtest_target(con, target, [s for s in specs if s.target == target], config, log, **fit_options))
        except ForecastError as exc:  # a target without data yet: said, not fatal
            log(f"not backtested: {exc}")
    scores = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(columns=["model_id", "target", "mae"])
    stored = con.execute("SELECT model_id, target, mae, skill_persistence FROM ml.backtests").df()
    roles, promotions = decide_roles(stored, current_champions(con), config.forecasting.promotion_margin)
    write_promotions(con, promotions, config.forecasting.promotion_margin)
    refresh_status(con, config.forecasting.models, roles, config.forecasting.live_window_days)
    for p in promotions:
        log(f"promoted {p.model_id} to champion of {p.target}: {p.reason}")
    return scores, roles, promotions


def _max_lag_days(spec: ModelSpec) -> int:
    features = feature_spec_of(spec)
    lags = [*features.target_lags_days, *features.target_daily_lags,
            *(k for e in features.exogenous for k in [*e.lags_days, *e.daily_lags])]
    return max(lags, default=0)


def _model_for_issue(con, spec: ModelSpec, config: BempConfig, artifacts: Path, issued, log) -> tuple[str, object] | None:
    """The newest version trained by ``issued``; else one fitted now with that cutoff (so a
    backfill is an honest backtest). TPOT models are never searched on the fly."""
    found = version_before(con, spec.name, spec.target, issued.to_pydatetime())
    if found is None and spec.learner == "tpot":
        log(f"{spec.name}: no TPOT version trained before {issued}; run `bemp models train {spec.name}`")
        return None
    if found is None:
        trained = train_one(con, spec, config, artifacts, cutoff=issued, log=log)
        found = version_before(con, spec.name, spec.target, issued.to_pydatetime())
        assert found and found["model_version"] == trained["model_version"]
    return found["model_version"], load_artifact(found["artifact_path"])


def forecast_day(con, config: BempConfig, artifacts: Path, day: date, names: list[str] | None = None,
                 store: bool = True, log=print) -> pd.DataFrame:
    """Issue the forecasts of local target day ``day`` for the selected models and both
    baselines, each with a version trained before the issue; store them (never overwriting)."""
    specs = select_specs(config, names, include_tpot=True)
    out = []
    for spec in [*[b for b in baseline_specs(config) if b.target in {s.target for s in specs}], *specs]:
        tz = model_tz(spec, config)
        issued = issue_instants(pd.Index([day]), spec, tz).iloc[0]
        first = day - timedelta(days=_max_lag_days(spec) + 1)
        try:
            frame, _, _ = history_frame(con, spec, config, first, day)
        except ForecastError as exc:
            log(f"not issued: {exc}")
            continue
        known = frame.rows[(frame.rows["target_ts"] < issued) & frame.rows["y"].notna()]
        if known.empty:  # a day far past the data: lags would all be missing
            log(f"{spec.name}: no {spec.target} data in the {(day - first).days} days before {day}; not issued")
            continue
        today = frame.subset(pd.Series(frame.rows["local_day"]).eq(day).to_numpy())
        chosen = _model_for_issue(con, spec, config, artifacts, issued, log)
        if chosen is None:
            continue
        version, model = chosen
        rows = today.rows.assign(variable_id=spec.target, model_id=spec.name, model_version=version,
                                 value=predict(model, today.X))
        rows["horizon_h"] = (rows["target_ts"] - rows["issued_at"]) / pd.Timedelta(hours=1)
        out.append(rows)
    forecasts = pd.concat(out, ignore_index=True) if out else pd.DataFrame()
    if store and len(forecasts):
        inserted = write_forecasts(con, forecasts)
        log(f"forecasts for {day}: {len(forecasts)} rows issued, {inserted} new (earlier issues are kept)")
    return forecasts


def live_drift(status: pd.DataFrame, config: BempConfig) -> list[str]:
    from .forecasting_eval import drift_reasons

    return drift_reasons(status, config.forecasting.drift_factor)

