"""Rolling-origin backtests, scores, champion/challenger promotion and the drift trigger.

A backtest refits a model at the first issue of every month of the evaluation window, on
rows whose target hour ended before that issue, and issues every day of the month as
production would (the features of a day come from data known at its issue). Scores are
computed over the rows where the actual, the model and both baselines all exist, so the
skills compare like with like. No Dagster here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from .config import BASELINES, ModelSpec
from .forecasting import FeatureFrame, fit_model, predict, training_mask


def month_origins(start: date, end: date) -> list[date]:
    """start, then the first of every later month up to end: the refit origins."""
    firsts = pd.date_range(pd.Timestamp(start) + pd.offsets.MonthBegin(0), pd.Timestamp(end), freq="MS").date
    return sorted({start, *[d for d in firsts if d > start]})


def backtest(spec: ModelSpec, frame: FeatureFrame, start: date, end: date, excluded: np.ndarray | None = None,
             min_training_rows: int = 24, fit=fit_model, **fit_options) -> pd.DataFrame:
    """Forecasts of ``spec`` for the local days start .. end: one refit per monthly origin
    (cutoff = that origin's first issue), each day issued from its own features. Returns
    target_ts, local_day, issued_at, y, forecast, origin, train_end."""
    days = pd.Series(frame.rows["local_day"])
    out = []
    origins = month_origins(start, end)
    for i, origin in enumerate(origins):
        until = origins[i + 1] if i + 1 < len(origins) else None
        in_month = (days >= origin) & (days <= end) & ((days < until) if until else True)
        if not in_month.any():
            continue
        cutoff = frame.rows.loc[in_month, "issued_at"].min()
        train = training_mask(frame, cutoff, excluded)
        if train.sum() < min_training_rows:
            continue
        model = fit(spec, frame.X[train], frame.rows["y"][train], **fit_options)
        month = frame.subset(in_month)
        result = month.rows.copy()
        result["forecast"] = predict(model, month.X)
        result["origin"], result["train_end"] = origin, cutoff
        out.append(result)
    columns = ["target_ts", "local_day", "issued_at", "y", "forecast", "origin", "train_end"]
    return pd.concat(out, ignore_index=True)[columns] if out else pd.DataFrame(columns=columns)


def score(actual, forecast, persistence, week) -> dict:
    """MAE, RMSE, rMAE (MAE over the actuals' range), skills against both baselines and the
    days scored, over the rows where all four values exist."""
    table = pd.DataFrame({"y": actual, "f": forecast, "p": persistence, "w": week}).dropna()
    if table.empty:
        return {"mae": None, "rmse": None, "rmae": None, "skill_persistence": None, "skill_week": None,
                "rows_scored": 0}
    mae = float((table.y - table.f).abs().mean())
    span = float(table.y.max() - table.y.min())
    baseline = {k: float((table.y - table[c]).abs().mean()) for k, c in (("persistence", "p"), ("week", "w"))}
    return {"mae": mae, "rmse": float(np.sqrt(((table.y - table.f) ** 2).mean())),
            "rmae": mae / span if span > 0 else None,
            "skill_persistence": 1 - mae / baseline["persistence"] if baseline["persistence"] > 0 else None,
            "skill_week": 1 - mae / baseline["week"] if baseline["week"] > 0 else None,
            "rows_scored": int(len(table))}


def score_backtests(forecasts: dict[str, pd.DataFrame], excluded_ts: set | None = None) -> pd.DataFrame:
    """One score row per model from backtest frames keyed by model name, which must include
    both baselines; excluded target hours (commissioning) are not scored."""
    missing = [b for b in BASELINES if b not in forecasts]
    if missing:
        raise ValueError(f"baselines {missing} are needed to score")
    base = {b: forecasts[b].set_index("target_ts")["forecast"] for b in BASELINES}
    rows = []
    for name, result in forecasts.items():
        table = result.set_index("target_ts")
        if excluded_ts:
            table = table[~table.index.isin(excluded_ts)]
        scores = score(table["y"], table["forecast"], base["persistence"].reindex(table.index),
                       base["same_hour_last_week"].reindex(table.index))
        kept = table.assign(p=base["persistence"].reindex(table.index), w=base["same_hour_last_week"].reindex(table.index))
        scored = kept.dropna(subset=["y", "forecast", "p", "w"])
        rows.append({"model_id": name, **scores, "days_scored": int(scored["local_day"].nunique())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Promotion:
    target: str
    model_id: str
    previous: str | None
    model_mae: float
    previous_mae: float | None
    reason: str


def decide_roles(scores: pd.DataFrame, champions: dict[str, str], margin: float) -> tuple[pd.DataFrame, list[Promotion]]:
    """Roles per (model_id, target) from backtest scores (model_id, target, mae,
    skill_persistence): baselines stay baselines; a model that does not beat persistence
    (skill <= 0) is never champion; without a champion the best eligible model becomes one;
    a challenger replaces the champion only when its MAE is lower by ``margin`` (a share)."""
    roles, promotions = [], []
    for target, group in scores.groupby("target", sort=True):
        models = group[~group["model_id"].isin(BASELINES)]
        eligible = models[models["skill_persistence"].fillna(-1) > 0].sort_values(["mae", "model_id"])
        current = champions.get(target)
        current_mae = models.loc[models["model_id"] == current, "mae"]
        current_ok = current in set(eligible["model_id"])
        champion = current if current_ok else None
        best = eligible.iloc[0] if len(eligible) else None
        if best is not None and best["model_id"] != champion:
            if champion is None:
                why = ("first champion" if current is None else f"champion {current} no longer beats persistence") \
                    + f": best backtest MAE {best['mae']:.3f}, skill vs persistence {best['skill_persistence']:.3f}"
                champion = best["model_id"]
                promotions.append(Promotion(target, champion, current, float(best["mae"]),
                                            float(current_mae.iloc[0]) if len(current_mae) else None, why))
            elif best["mae"] < float(current_mae.iloc[0]) * (1 - margin):
                why = (f"backtest MAE {best['mae']:.3f} < {1 - margin:.2f} x champion's {float(current_mae.iloc[0]):.3f}")
                promotions.append(Promotion(target, best["model_id"], champion, float(best["mae"]),
                                            float(current_mae.iloc[0]), why))
                champion = best["model_id"]
        for model_id in group["model_id"]:
            role = "baseline" if model_id in BASELINES else "champion" if model_id == champion else "challenger"
            roles.append({"model_id": model_id, "target": target, "role": role})
    return pd.DataFrame(roles, columns=["model_id", "target", "role"]), promotions


def drift_reasons(status: pd.DataFrame, factor: float) -> list[str]:
    """A retrain request per champion whose live rMAE (last days) exceeds ``factor`` times its
    backtest rMAE, each saying why."""
    champions = status[(status["role"] == "champion") & status["live_rmae"].notna() & status["backtest_rmae"].notna()]
    drifting = champions[champions["live_rmae"] > factor * champions["backtest_rmae"]]
    return [f"{r.model_id} ({r.target}): live rMAE {r.live_rmae:.4f} > {factor} x backtest rMAE {r.backtest_rmae:.4f}"
            for r in drifting.itertuples()]
