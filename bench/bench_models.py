"""Quality benchmark of the models (BENCHMARKS.md, "Models"): steel plant, day-ahead hourly
active energy, backtest 2018-10-01 .. 2018-12-31 (Asia/Seoul), monthly origins (refit on
everything before 1 October, 1 November, 1 December), daily issues at 00:00 local.

    .venv/bin/python bench/bench_models.py [--warehouse FILE] [--tpot-minutes 5] [--no-tpot]

Without --warehouse it builds one: the steel CSV through the real pipeline (a Dagster run) in
a temporary BEMP_HOME. Prints one Markdown row per model (every configured model, learner and
feature-set variants, both baselines, TPOT with its budget and chosen pipeline) with train and
backtest times, and whether the issue's quality target is met.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bemp_assets.domain.config import BASELINES, ForecastingConfig, ModelSpec, load_config  # noqa: E402
from bemp_assets.domain.forecasting_eval import backtest, score_backtests  # noqa: E402
from bemp_assets.domain.forecasting_jobs import baseline_specs, history_frame  # noqa: E402

START, END = date(2018, 10, 1), date(2018, 12, 31)
TARGET = "daewoo_gwangyang.active_energy"
CALENDAR = ["hour", "weekday", "day_of_year", "weekend", "holiday", "tou_period"]
OFF = ["New Year's Day", "Korean New Year", "Chuseok", "Workers' Day", "Christmas Day"]
LAGS = {"target_lags_days": [1, 2, 3, 7, 14], "target_daily_lags": [1, 7]}
PLAN_CALENDAR = ["hour", "weekday", "day_of_year", "weekend", "holiday"]
PLAN = {"variable": "daewoo_gwangyang.load_type", "kind": "planned", "lags_days": [0], "daily_lags": [0, 1]}


def variants() -> list[ModelSpec]:
    """Feature-set variants beyond the configured models, to show what each part brings."""
    base = dict(target=TARGET, timezone="Asia/Seoul", learner="hist_gradient_boosting")
    return [
        ModelSpec(name="v_calendar_no_tou", features={"calendar": ["hour", "weekday", "day_of_year", "weekend"]}, **base),
        ModelSpec(name="v_calendar_every_holiday_off", features={"calendar": CALENDAR, "holidays_country": "KR"}, **base),
        ModelSpec(name="v_lags_only", features={"calendar": ["hour"], **LAGS}, **base),
        ModelSpec(name="v_calendar_long_lags", features={
            "calendar": CALENDAR, "holidays_country": "KR", "off_holidays": OFF, "target_lags_days": [1, 7, 14, 21, 28],
            "target_daily_lags": [1, 7, 14, 21, 28]}, **base),
        # with the production plan (the assumption of steel_plan)
        ModelSpec(name="v_plan_calendar", features={"calendar": PLAN_CALENDAR, "holidays_country": "KR",
                                                    "exogenous": [PLAN]}, **base),
        ModelSpec(name="v_plan_steel_calendar", features={"calendar": CALENDAR, "holidays_country": "KR", "off_holidays": OFF,
                                                          "exogenous": [PLAN]}, **base),
        ModelSpec(name="v_plan_running_day_lags_d1_d7", features={
            "calendar": PLAN_CALENDAR, "holidays_country": "KR", "exogenous": [PLAN], "running_day_plan": PLAN["variable"],
            "target_lags_days": [1, 7], "target_daily_lags": [1, 7]}, **base),
        ModelSpec(name="v_plan_no_day_of_year", features={
            "calendar": ["hour", "weekday", "weekend", "holiday"], "holidays_country": "KR", "exogenous": [PLAN],
            "running_day_plan": PLAN["variable"]}, **base),
    ]


def tou_match(frame) -> float:
    """Share of the hours whose derived tou_period equals the export's Load_Type, read here from
    the CSV itself (independently of its ingested copy). Rows are stamped at the end of
    their 15 minutes, '0:00' meaning 24:00 of that date."""
    import pandas as pd

    export = pd.read_csv(ROOT / "data" / "sample" / "Steel_industry_data.csv", encoding="utf-8-sig")
    end = pd.to_datetime(export["date"], format="%d/%m/%Y %H:%M")
    end = end.where((end.dt.hour > 0) | (end.dt.minute > 0), end + pd.Timedelta(days=1))
    hour = (end - pd.Timedelta(minutes=15)).dt.floor("h")
    period = export["Load_Type"].map({"Light_Load": 0, "Medium_Load": 1, "Maximum_Load": 2})
    by_hour = period.groupby(hour).first()
    local = pd.DatetimeIndex(frame.rows["target_ts"]).tz_convert("Asia/Seoul").tz_localize(None)
    return float((frame.X["tou_period"].to_numpy() == by_hour.reindex(local).to_numpy()).mean())


def build_warehouse(home: Path) -> Path:
    from dagster import instance_for_test

    from bemp_assets.cli import run
    from bemp_assets.domain.settings import Settings

    settings = Settings.from_env({"BEMP_HOME": str(home), "BEMP_CONFIG": str(ROOT / "data" / "config")})
    settings.inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "data" / "sample" / "Steel_industry_data.csv", settings.inbox)
    with instance_for_test() as instance:
        run(settings, "2017-12-31", "2018-12-31", None, instance=instance)
    return settings.warehouse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", help="a warehouse holding the steel plant's 2018 in agg.hourly")
    parser.add_argument("--tpot-minutes", type=float, default=5.0, help="TPOT budget per refit (3 refits)")
    parser.add_argument("--no-tpot", action="store_true")
    parser.add_argument("--tpot-only", action="store_true", help="TPOT models and the baselines only")
    parser.add_argument("--search-space", help="TPOT search space instead of the configured one (e.g. trees)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these models and variants only (and the baselines)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bemp-bench-models-"))
    path = Path(args.warehouse) if args.warehouse else build_warehouse(home)
    copy = home / "bench.duckdb"
    shutil.copy2(path, copy)
    config = load_config(ROOT / "data" / "config")
    models = [m for m in config.forecasting.models if m.target == TARGET and (m.learner != "tpot" or not args.no_tpot)]
    if args.tpot_only:
        models = [m for m in models if m.learner == "tpot"]
    if args.search_space:
        models = [m.model_copy(update={"tpot": m.tpot.model_copy(update={"search_space": args.search_space})})
                  if m.learner == "tpot" else m for m in models]
    specs = [*[b for b in baseline_specs(config) if b.target == TARGET], *models, *([] if args.tpot_only else variants())]
    if args.only:
        specs = [s for s in specs if s.name in args.only or s.learner in BASELINES]
    settings = config.forecasting.model_copy(update={"backtest_start": START, "backtest_end": END})
    config = config.model_copy(update={"forecasting": ForecastingConfig(**settings.model_dump())})
    con = duckdb.connect(str(copy))
    con.execute("SET TimeZone = 'UTC'")
    results, seconds, chosen = {}, {}, {}
    for spec in specs:
        frame, excluded, _ = history_frame(con, spec, config)
        if "tou_period" in frame.X:
            print(f"{spec.name}: tou_period = Load_Type on {tou_match(frame):.1%} of the hours", file=sys.stderr)
        fits = []

        def fit(spec_, X, y, **_):
            from bemp_assets.domain.forecasting import fit_model

            model = fit_model(spec_, X, y, search_minutes=args.tpot_minutes if spec_.learner == "tpot" else None)
            fits.append(model)
            return model

        started = time.perf_counter()
        results[spec.name] = backtest(spec, frame, START, END, excluded, min_training_rows=28 * 24, fit=fit)
        seconds[spec.name] = time.perf_counter() - started
        if spec.learner == "tpot":
            chosen[spec.name] = " / ".join(m.text.replace("\n", " ") for m in fits)
        print(f"{spec.name}: {seconds[spec.name]:.1f} s", file=sys.stderr)
    scores = score_backtests(results).set_index("model_id")
    print(f"| model | learner | MAE kWh | RMSE | rMAE | skill vs persistence | skill vs last week | days | 3 refits + backtest s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for spec in specs:
        s = scores.loc[spec.name]
        learner = spec.learner + (f" ({spec.tpot.search_space}, {args.tpot_minutes:g} min/refit)" if spec.learner == "tpot" else "")
        print(f"| {spec.name} | {learner} | {s.mae:.2f} | {s.rmse:.2f} | {s.rmae:.4f} | {s.skill_persistence:.1%} | "
              f"{s.skill_week:.1%} | {s.days_scored} | {seconds[spec.name]:.1f} |")
    for name, text in chosen.items():
        print(f"\nTPOT {name} pipelines (per origin): {' '.join(text.split())}")
    best = scores.drop(index=["persistence", "same_hour_last_week"]).sort_values("mae").iloc[0]
    met = best.skill_persistence >= 0.45 and best.skill_week >= 0.33 and best.rmae <= 0.058
    print(f"\nbest: {best.name} MAE {best.mae:.2f}, {best.skill_persistence:.1%} below persistence (target 45 %), "
          f"{best.skill_week:.1%} below last week (target 33 %), rMAE {best.rmae:.4f} (target 0.058): "
          f"target {'MET' if met else 'NOT met'}")
    con.close()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
