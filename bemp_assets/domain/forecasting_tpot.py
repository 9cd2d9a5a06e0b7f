"""The TPOT 1.x search: MAE as the scorer, a time budget, a fixed seed, an in-process Dask
client (``Client(LocalCluster(processes=False))``: threads of this process, no pickling of
the data to worker processes on a 2-core machine).

Progress is reported live: TPOT 1.x prints "Generation: N" and "Best <objective> score: S"
after every generation when ``verbose >= 3`` (it has no callback), so the search runs with
its standard output redirected into ``GenerationLog``, which turns those two lines into one
"generation N, best MAE so far X" line for ``log`` (the Dagster log in the assets) while the
search goes on; TPOT's other output is dropped.

Missing lag values are imputed (median of the training rows) in front of the searched
pipeline, so every pipeline TPOT tries sees finite inputs, and the saved pipeline holds the
imputer too.
"""
from __future__ import annotations

import io
import re
import time
import warnings
from contextlib import nullcontext, redirect_stderr, redirect_stdout

import pandas as pd

from .config import ModelSpec


def _local_client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    return Client(cluster)


class GenerationLog(io.TextIOBase):
    """A text stream for TPOT's printed output: each "Generation: N" followed by its "Best
    mean_absolute_error score: S" (S is the negated MAE) becomes one call of ``log``."""

    GENERATION = re.compile(r"^Generation:\s+(\d+)")
    BEST = re.compile(r"^Best mean_absolute_error score:\s+(\S+)")

    def __init__(self, model: str, log):
        self.model, self.log, self.started = model, log, time.monotonic()
        self.buffer, self.generation, self.reported = "", None, []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self._line(line.strip())
        return len(text)

    def _line(self, line: str) -> None:
        generation, best = self.GENERATION.match(line), self.BEST.match(line)
        if generation:
            self.generation = int(generation.group(1))
        elif best and self.generation is not None:
            mae = -float(best.group(1))
            self.reported.append({"generation": self.generation, "best_mae": mae})
            if self.log:
                self.log(f"TPOT {self.model}: generation {self.generation}, best MAE so far {mae:.3f} "
                         f"({time.monotonic() - self.started:.0f} s into the search)")


def search_space(name: str, seed: int):
    """TPOT's template spaces by name, plus ``trees``: one tree ensemble, chosen and tuned by
    the search: HistGradientBoosting with absolute-error loss (TPOT's own node for it offers
    only classification losses), ExtraTrees or RandomForest."""
    if name != "trees":
        return name
    from ConfigSpace import ConfigurationSpace, Float, Integer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from tpot.config import get_search_space
    from tpot.search_spaces.nodes import EstimatorNode
    from tpot.search_spaces.pipelines import ChoicePipeline

    boosting = EstimatorNode(HistGradientBoostingRegressor, ConfigurationSpace(space={
        "loss": "absolute_error", "random_state": seed, "max_iter": Integer("max_iter", (100, 600)),
        "learning_rate": Float("learning_rate", (0.01, 0.3), log=True),
        "max_leaf_nodes": Integer("max_leaf_nodes", (7, 63)), "min_samples_leaf": Integer("min_samples_leaf", (5, 200)),
        "l2_regularization": Float("l2_regularization", (1e-6, 10.0), log=True)}))
    forests = [get_search_space(n, random_state=seed) for n in ("ExtraTreesRegressor", "RandomForestRegressor")]
    return ChoicePipeline([boosting, *forests])


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
    progress_log = GenerationLog(spec.name, log)
    with (_local_client() if owned else nullcontext(client)) as dask_client, warnings.catch_warnings(), \
            redirect_stdout(progress_log), redirect_stderr(io.StringIO()):  # stderr: TPOT's tqdm bar
        warnings.simplefilter("ignore")
        search = tpot.TPOTRegressor(
            search_space=search_space(budget.search_space, spec.seed), scorers=["neg_mean_absolute_error"], scorers_weights=[1],
            cv=budget.cv, max_time_mins=minutes, max_eval_time_mins=max(minutes / 4, 0.05), n_jobs=1,
            client=dask_client, random_state=spec.seed, population_size=budget.population_size, verbose=3, **extra)
        search.fit(imputer.transform(X), y.to_numpy())
        if owned:
            dask_client.cluster.close()
    progress = generation_progress(search.evaluated_individuals)
    pipeline = make_pipeline(imputer, search.fitted_pipeline_)
    return FittedModel(pipeline, str(search.fitted_pipeline_), list(X.columns),
                       {"budget_minutes": minutes, "generations": len(progress), "progress": progress,
                        "search_space": budget.search_space, "seed": spec.seed})
