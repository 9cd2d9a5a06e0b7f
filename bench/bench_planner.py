"""Benchmark: the planner's HDD regression against the CalTRACK daily model of opendsm (the
eemeter successor), on the same buildings and days (BENCHMARKS.md, "Planner").

    python bench/bench_planner.py                    # the sample: 15 Cambridge buildings
    python bench/bench_planner.py --json out.json

Data: data/sample/heating (Cambridge estates daily gas and Bedford daily mean temperature, MIT,
see data/sample/ATTRIBUTION.md), loaded and cleaned by the planner's own code (whole zero days
on cold days are gaps). For each building:
* in-sample: fitted on 2018-01-01 .. 2018-12-31, CV(RMSE) over those days;
* out-of-sample: the same fit predicting 2019-01-01 .. 2019-02-07 (38 days, measured
  temperature standing in for a forecast), CV(RMSE) over those days.
CV(RMSE) = sqrt(mean(residual²)) / mean(observed), the same formula for every model (no
degrees-of-freedom correction, so models with more parameters are not penalised).
Models: BEMP (E = a + b x HDD, base 15.5 °C, and base searched 10..20 °C as an option),
opendsm DailyModel 'legacy' (CalTRACK 2.0: HDD/CDD balance points searched, intercept-only
candidate) and 'current' (opendsm's improved daily model: seasons and weekday/weekend split).

This is a measuring script, not a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bemp_assets.domain import planner, planner_model  # noqa: E402
from bemp_assets.domain.warehouse import prepare  # noqa: E402

HEATING = ROOT / "data" / "sample" / "heating"
TRAIN = (date(2018, 1, 1), date(2018, 12, 31))
TEST = (date(2019, 1, 1), date(2019, 2, 7))


def load_days() -> pd.DataFrame:
    con = prepare(duckdb.connect())
    planner.load_measured(con, HEATING / "cambridge_daily_gas.csv", HEATING / "bedford_daily_temperature.csv", 15.5,
                          datetime.now(timezone.utc))
    days = planner.training_days(con, 15.5)
    days["day"] = pd.to_datetime(days["day"]).dt.date
    return days


def cv_rmse(observed, predicted) -> float:
    observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
    return float(np.sqrt(np.mean((observed - predicted) ** 2)) / observed.mean())


def split(days: pd.DataFrame, window) -> pd.DataFrame:
    return days[(days["day"] >= window[0]) & (days["day"] <= window[1])]


def bemp_fixed(train, test, base=15.5):
    train, test = train.assign(hdd=planner.hdd(train["temp_mean_c"], base)), test.assign(hdd=planner.hdd(test["temp_mean_c"], base))
    line = planner_model.fit_lines(train).iloc[0]
    return (line["intercept"] + line["slope"] * train["hdd"]).clip(lower=0), (line["intercept"] + line["slope"] * test["hdd"]).clip(lower=0)


def bemp_search(train, test):
    """The planner's own search (planner.yaml base_temperature_search: [10, 20]): least squares every 0.5 °C."""
    best = planner_model.fit_with_base(train, planner_model.candidate_bases(15.5, [10, 20]))["base_temperature"].iloc[0]
    return bemp_fixed(train, test, best)


def opendsm_model(kind: str):
    def fit_predict(train, test):
        from opendsm import eemeter

        def frame(part):
            index = pd.DatetimeIndex(pd.to_datetime(part["day"])).tz_localize("UTC")
            return pd.DataFrame({"observed": part["energy_kwh"].to_numpy(), "temperature": part["temp_mean_c"].to_numpy() * 9 / 5 + 32}, index=index)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            baseline = eemeter.DailyBaselineData(frame(train), is_electricity_data=False)
            model = eemeter.DailyModel(model=kind).fit(baseline, ignore_disqualification=True)
            fitted = model.predict(baseline, ignore_disqualification=True)
            reporting = eemeter.DailyReportingData(frame(test).assign(observed=np.nan), is_electricity_data=False)
            predicted = model.predict(reporting, ignore_disqualification=True)
        return fitted["predicted"].reindex(frame(train).index).to_numpy(), predicted["predicted"].reindex(frame(test).index).to_numpy()
    return fit_predict


MODELS = {"bemp_hdd_15.5": bemp_fixed, "bemp_hdd_base_searched": bemp_search,
          "caltrack_legacy (opendsm)": opendsm_model("legacy"), "opendsm_current": opendsm_model("current")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the per-building results here")
    parser.add_argument("--without-opendsm", action="store_true", help="only the BEMP models (seconds instead of minutes)")
    args = parser.parse_args()
    days = load_days()
    rows = []
    for building, group in days.groupby("building_id"):
        train, test = split(group, TRAIN), split(group, TEST)
        for name, fit_predict in MODELS.items():
            if args.without_opendsm and not name.startswith("bemp"):
                continue
            started = time.perf_counter()
            fitted, predicted = fit_predict(train, test)
            rows.append({"building": building, "model": name, "train_days": len(train), "test_days": len(test),
                         "cv_rmse_in": cv_rmse(train["energy_kwh"], fitted), "cv_rmse_out": cv_rmse(test["energy_kwh"], predicted),
                         "seconds": time.perf_counter() - started})
    table = pd.DataFrame(rows)
    summary = table.groupby("model").agg(buildings=("building", "size"), median_cv_rmse_in=("cv_rmse_in", "median"),
                                         mean_cv_rmse_in=("cv_rmse_in", "mean"), median_cv_rmse_out=("cv_rmse_out", "median"),
                                         mean_cv_rmse_out=("cv_rmse_out", "mean"), seconds=("seconds", "sum"))
    print(summary.round(3).to_markdown())
    wide = table.pivot(index="building", columns="model", values=["cv_rmse_in", "cv_rmse_out"]).round(3)
    print(wide.to_markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
