"""The TPOT 1.x search: MAE as the scorer, a time budget, a fixed seed, an in-process Dask
client (``Client(LocalCluster(processes=False))``: threads of this process, no pickling of
the data to worker processes on a 2-core machine).

Missing lag values are imputed (median of the training rows) in front of the searched
pipeline, so every pipeline TPOT tries sees finite inputs, and the saved pipeline holds the
imputer too.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext

import pandas as pd

from .config import ModelSpec


def _local_client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    return Client(cluster)


def generation_progress(evaluated: pd.DataFrame) -> list[dict]:
    """Best MAE so far after each generation, from TPOT's evaluated individuals."""
    scores = evaluated[["Generation", "mean_absolute_error"]].dropna()
    best = (-scores.groupby("Generation")["mean_absolute_error"].max()).cummin()
    return [{"generation": int(g), "best_mae": float(m)} for g, m in best.items()]


def fit_tpot(spec: ModelSpec, X: pd.DataFrame, y: pd.Series, log=None, minutes: float | None = None, client=None):
    """Search a pipeline for ``spec`` within its budget (``minutes`` overrides it); returns a
    FittedModel whose estimator is imputer + TPOT's fitted pipeline."""
    import tpot
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    from .forecasting import FittedModel

    budget = spec.tpot
    minutes = minutes or budget.minutes
    extra = {"generations": budget.generations} if budget.generations else {}
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(X)
    owned = client is None
    with (_local_client() if owned else nullcontext(client)) as dask_client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = tpot.TPOTRegressor(
            search_space=budget.search_space, scorers=["neg_mean_absolute_error"], scorers_weights=[1],
            cv=budget.cv, max_time_mins=minutes, max_eval_time_mins=max(minutes / 4, 0.05), n_jobs=1,
            client=dask_client, random_state=spec.seed, population_size=budget.population_size, verbose=0, **extra)
        search.fit(imputer.transform(X), y.to_numpy())
        if owned:
            dask_client.cluster.close()
    progress = generation_progress(search.evaluated_individuals)
    for step in progress:
        if log:
            log(f"TPOT {spec.name}: generation {step['generation']}, best MAE so far {step['best_mae']:.3f}")
    pipeline = make_pipeline(imputer, search.fitted_pipeline_)
    return FittedModel(pipeline, str(search.fitted_pipeline_), list(X.columns),
                       {"budget_minutes": minutes, "generations": len(progress), "progress": progress,
                        "search_space": budget.search_space, "seed": spec.seed})
