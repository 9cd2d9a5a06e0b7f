"""Models and forecasts on the real steel-plant data, run through the real pipeline.

The warehouse of this module holds January-March 2018 of the steel plant (Asia/Seoul, no DST),
ingested, cleaned and aggregated by a real Dagster run. Expected values are computed here
from the CSV with the csv module and plain Python.
"""
from __future__ import annotations

import csv
import shutil
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster import instance_for_test

from bemp_assets.cli import run
from bemp_assets.domain.config import ConfigError, ForecastingConfig, ModelSpec, load_config
from bemp_assets.domain.forecasting import ForecastError, build_features, check_available, fit_model, predict
from bemp_assets.domain.forecasting_eval import backtest, decide_roles, drift_reasons, score
from bemp_assets.domain.forecasting_jobs import forecast_day, history_frame, run_backtests, train_one
from bemp_assets.domain.forecasting_store import ensure_ml_tables, load_hourly
from bemp_assets.domain.warehouse import prepare

from .conftest import CONFIG_DIR, SAMPLE, make_settings

SEOUL = ZoneInfo("Asia/Seoul")
TARGET = "daewoo_gwangyang.active_energy"
CALENDAR = ["hour", "weekday", "day_of_year", "weekend", "holiday", "tou_period"]


def spec(name: str, learner: str, **features) -> ModelSpec:
    extra = {"tpot": {"minutes": 0.5, "generations": 2, "population_size": 4, "cv": 2}} if learner == "tpot" else {}
    return ModelSpec(name=name, target=TARGET, timezone="Asia/Seoul", learner=learner,
                     features=features or {}, **extra)


MODELS = [
    spec("calendar", "hist_gradient_boosting", calendar=CALENDAR, holidays_country="KR"),
    spec("lags_exogenous", "hist_gradient_boosting", calendar=["hour", "weekday"], target_lags_days=[1, 7],
         target_daily_lags=[1], exogenous=[{"variable": "daewoo_gwangyang.reactive_energy_lagging", "daily_lags": [1]}]),
]
PLAN_MODEL = spec("plan", "hist_gradient_boosting", calendar=["hour", "weekday"], running_day_plan="daewoo_gwangyang.load_type",
                  exogenous=[{"variable": "daewoo_gwangyang.load_type", "kind": "planned", "lags_days": [0], "daily_lags": [0]}])
SMALL_TPOT = spec("tiny_tpot", "tpot", calendar=["hour", "weekday"], target_lags_days=[1, 7])


@pytest.fixture(scope="module")
def steel(tmp_path_factory):
    """A warehouse with Jan-Mar 2018 of the steel plant, built by a real run."""
    settings = make_settings(tmp_path_factory.mktemp("home"))
    settings.inbox.mkdir(parents=True)
    shutil.copy2(SAMPLE / "Steel_industry_data.csv", settings.inbox)
    with instance_for_test() as instance:
        assert run(settings, "2017-12-31", "2018-03-31", None, instance=instance) == 0
    return settings


@pytest.fixture
def con(steel, tmp_path):
    """A private copy of the module's warehouse, so tests never see each other's writes."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy2(steel.warehouse, path)
    connection = prepare(duckdb.connect(str(path)))
    ensure_ml_tables(connection)
    yield connection
    connection.close()


def config_with(*models: ModelSpec, **settings):
    base = load_config(CONFIG_DIR)
    forecasting = ForecastingConfig(models=list(models), min_training_days=28, backtest_start=date(2018, 3, 1),
                                    backtest_end=date(2018, 3, 31), **settings)
    return base.model_copy(update={"forecasting": forecasting})


def csv_hourly_energy() -> dict[datetime, float]:
    """Usage_kWh per Seoul-local hour (start), from the CSV: a row stamped at the END of its
    15 minutes, '0:00' under the date of the day it closes (so it is the next midnight)."""
    totals = defaultdict(float)
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            end = datetime.strptime(row["date"], "%d/%m/%Y %H:%M")
            if end.hour == 0 and end.minute == 0:
                end += timedelta(days=1)
            start = end - timedelta(minutes=15)
            totals[start.replace(minute=0)] += float(row["Usage_kWh"])
    return totals


# --- configuration ---------------------------------------------------------------------------

def write_models_yaml(tmp_path, text: str):
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    (folder / "models.yaml").write_text(text, encoding="utf-8")
    return folder


def test_config_refuses_a_lag_that_looks_past_the_issue_time(tmp_path):
    folder = write_models_yaml(tmp_path, f"""forecasting:
  models:
    - name: gate_closure
      target: {TARGET}
      learner: hist_gradient_boosting
      issue_time: {{day: -1, time: "10:00"}}
      features: {{target_lags_days: [1, 7]}}
""")
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    message = str(caught.value)
    assert "models.yaml: key 'forecasting.models[0]'" in message
    assert "features.target_lags_days [1, 7]" in message and "use lags >= 2" in message


def test_config_names_key_of_unknown_learner_and_country(tmp_path):
    folder = write_models_yaml(tmp_path, f"""forecasting:
  models:
    - {{name: a, target: {TARGET}, learner: prophet}}
""")
    with pytest.raises(ConfigError, match=r"models.yaml: key 'forecasting.models\[0\].learner'"):
        load_config(folder)
    folder = write_models_yaml(tmp_path / "b", f"""forecasting:
  models:
    - {{name: a, target: {TARGET}, learner: hist_gradient_boosting, features: {{holidays_country: XX}}}}
""")
    with pytest.raises(ConfigError, match=r"key 'forecasting.models\[0\].features.holidays_country'"):
        load_config(folder)


def test_shipped_config_has_three_steel_models_and_tpot():
    models = load_config(CONFIG_DIR).forecasting.models
    steel = [m for m in models if m.target == TARGET]
    assert {m.learner for m in steel} == {"hist_gradient_boosting", "tpot"}
    assert sum(m.learner == "hist_gradient_boosting" for m in steel) >= 3
    assert any(m.features.exogenous for m in steel)


def test_builder_refuses_a_feature_known_after_the_issue(con):
    hourly = load_hourly(con, [TARGET])
    frame = build_features(hourly, MODELS[0], "Asia/Seoul", date(2018, 2, 1), date(2018, 2, 2))
    frame.available_at.iloc[5, 0] = frame.rows["issued_at"].iloc[5] + pd.Timedelta(minutes=1)
    with pytest.raises(ForecastError, match="known only after the issue time"):
        check_available(frame, "calendar")


# --- baselines against the CSV ---------------------------------------------------------------

def test_baselines_equal_the_csv_values_of_the_day_before_and_the_week_before(con, tmp_path):
    energy = csv_hourly_energy()
    day = date(2018, 3, 14)
    forecasts = forecast_day(con, config_with(*MODELS), tmp_path, day, store=False,
                             log=lambda _: None)
    for model_id, days_back in (("persistence", 1), ("same_hour_last_week", 7)):
        got = forecasts[forecasts["model_id"] == model_id].sort_values("target_ts")
        assert len(got) == 24
        for ts, value in zip(got["target_ts"], got["value"]):
            local = ts.tz_convert(SEOUL).replace(tzinfo=None) - timedelta(days=days_back)
            assert value == pytest.approx(energy[local], abs=1e-9), (model_id, ts)
        assert (got["issued_at"] == pd.Timestamp("2018-03-14", tz=SEOUL)).all()
        assert list(got["horizon_h"]) == list(range(24))


# --- leakage ---------------------------------------------------------------------------------

def noise_after(con, instant) -> None:
    """Replace every target value after ``instant`` with noise, in the warehouse."""
    con.execute("UPDATE agg.hourly SET sum = random() * 1000, mean = random() * 1000 "
                "WHERE variable_id = ? AND hour >= ?", [TARGET, instant])


@pytest.mark.parametrize("model", [*MODELS, PLAN_MODEL, spec("persistence", "persistence"),
                                   spec("same_hour_last_week", "same_hour_last_week"), SMALL_TPOT],
                         ids=lambda m: m.learner + ":" + m.name)
def test_noise_after_the_issue_leaves_that_issues_backtest_forecasts_unchanged(con, model):
    config = config_with(MODELS[0])  # site and time zones; the model itself is passed on
    day = date(2018, 3, 12)
    issue = pd.Timestamp(day, tz=SEOUL)

    def day_forecasts():
        frame, excluded, _ = history_frame(con, model, config)
        result = backtest(model, frame, date(2018, 3, 1), date(2018, 3, 31), excluded, min_training_rows=28 * 24)
        return result[result["local_day"] == day].sort_values("target_ts").reset_index(drop=True)

    before = day_forecasts()
    noise_after(con, issue.tz_convert("UTC").to_pydatetime())
    after = day_forecasts()
    assert len(before) == 24 and before["forecast"].notna().all()
    assert (after["y"] != before["y"]).any()  # the actuals did change
    pd.testing.assert_series_equal(before["forecast"], after["forecast"])


# --- forecasts table -------------------------------------------------------------------------

def test_forecasts_are_never_overwritten_and_backfills_use_earlier_versions(con, tmp_path):
    config = config_with(MODELS[0])
    day = date(2018, 3, 20)
    issue = pd.Timestamp(day, tz=SEOUL).tz_convert("UTC")
    late = train_one(con, MODELS[0], config, tmp_path, log=lambda _: None)   # trained on all data, to 1 April
    assert late["train_end"] > issue
    stored = forecast_day(con, config, tmp_path, day, log=lambda _: None)
    used = set(stored.loc[stored["model_id"] == "calendar", "model_version"])
    assert used and late["model_version"] not in used
    train_ends = con.execute("SELECT train_end FROM ml.models WHERE model_version IN (SELECT unnest(?))",
                             [list(used)]).fetchall()
    assert all(pd.Timestamp(t) <= issue for (t,) in train_ends)
    before = con.execute("SELECT model_id, target_ts, value FROM ml.forecasts ORDER BY ALL").fetchall()
    noise_after(con, pd.Timestamp("2018-03-01", tz=SEOUL).tz_convert("UTC").to_pydatetime())
    con.execute("DELETE FROM ml.models")  # a re-run must refit, on noisy history: different values
    forecast_day(con, config, tmp_path, day, log=lambda _: None)
    after = con.execute("SELECT model_id, target_ts, value FROM ml.forecasts ORDER BY ALL").fetchall()
    assert after == before and len(after) == 24 * 3


# --- scores, promotion, drift ----------------------------------------------------------------

def test_scores_by_hand():
    got = score([10, 20, 30, 40], [12, 18, 33, 40], [10, 10, 10, 10], [20, 20, 40, 40])
    mae = (2 + 2 + 3 + 0) / 4
    assert got["mae"] == pytest.approx(mae)
    assert got["rmse"] == pytest.approx(((4 + 4 + 9 + 0) / 4) ** 0.5)
    assert got["rmae"] == pytest.approx(mae / 30)
    assert got["skill_persistence"] == pytest.approx(1 - mae / ((0 + 10 + 20 + 30) / 4))
    assert got["skill_week"] == pytest.approx(1 - mae / ((10 + 0 + 10 + 0) / 4))


def crafted(maes: dict[str, float], persistence=50.0) -> pd.DataFrame:
    rows = [{"model_id": m, "target": "t", "mae": v, "skill_persistence": 1 - v / persistence} for m, v in maes.items()]
    rows.append({"model_id": "persistence", "target": "t", "mae": persistence, "skill_persistence": 0.0})
    return pd.DataFrame(rows)


def test_promotion_needs_the_margin_and_never_crowns_a_model_worse_than_persistence():
    roles, promotions = decide_roles(crafted({"a": 40.0, "b": 60.0}), {}, 0.05)
    assert dict(zip(roles.model_id, roles.role)) == {"a": "champion", "b": "challenger", "persistence": "baseline"}
    assert [(p.model_id, p.previous) for p in promotions] == [("a", None)]
    # b at 38.5 is better than a's 40 but not by 5 % (38.0): a stays
    roles, promotions = decide_roles(crafted({"a": 40.0, "b": 38.5}), {"t": "a"}, 0.05)
    assert not promotions and dict(zip(roles.model_id, roles.role))["a"] == "champion"
    roles, promotions = decide_roles(crafted({"a": 40.0, "b": 37.9}), {"t": "a"}, 0.05)
    assert [(p.model_id, p.previous, p.previous_mae) for p in promotions] == [("b", "a", 40.0)]
    assert "37.900 < 0.95 x champion's 40.000" in promotions[0].reason
    roles, promotions = decide_roles(crafted({"a": 55.0, "b": 51.0}), {}, 0.05)
    assert not promotions and "champion" not in set(roles.role)


def test_drift_requests_a_retrain_when_live_rmae_exceeds_the_factor():
    status = pd.DataFrame([
        {"model_id": "a", "target": "t", "role": "champion", "backtest_rmae": 0.06, "live_rmae": 0.0899},
        {"model_id": "b", "target": "u", "role": "champion", "backtest_rmae": 0.06, "live_rmae": 0.0901},
        {"model_id": "c", "target": "u", "role": "challenger", "backtest_rmae": 0.06, "live_rmae": 0.5},
    ])
    reasons = drift_reasons(status, 1.5)
    assert reasons == ["b (u): live rMAE 0.0901 > 1.5 x backtest rMAE 0.0600"]


# --- commissioning ---------------------------------------------------------------------------

def test_a_failed_blocking_commissioning_day_is_excluded_from_training_and_scoring(con, tmp_path):
    config = config_with(MODELS[0])
    clean = train_one(con, MODELS[0], config, tmp_path, log=lambda _: None)
    clean_scores, _, _ = run_backtests(con, config, log=lambda _: None)
    # one site-local (Europe/Rome) day fails completeness: 08:00 of 5 March .. 08:00 of 6 March in
    # Seoul, so both Seoul days are excluded whole
    insert = ("INSERT INTO ops.commissioning_results (checked_at, run_id, asset, partition, variable_id, day, rule, "
              "passed, observed, threshold, verdict) VALUES (now() - to_hours($age), 'r', 'agg/daily', $day, $v, "
              "$day::DATE, 'completeness', $passed, 0.5, 0.9, $verdict)")
    con.execute(insert, {"age": 0, "day": "2018-03-05", "v": TARGET, "passed": False, "verdict": "fail"})
    # an older failure later passed is not excluded: only the newest verdict counts
    con.execute(insert, {"age": 24, "day": "2018-02-10", "v": TARGET, "passed": False, "verdict": "fail"})
    con.execute(insert, {"age": 0, "day": "2018-02-10", "v": TARGET, "passed": True, "verdict": "pass"})
    # a day without any data is a warning, not a blocking failure
    con.execute(insert, {"age": 0, "day": "2018-02-20", "v": TARGET, "passed": False, "verdict": "no_data"})
    gated = train_one(con, MODELS[0], config, tmp_path, log=lambda _: None)
    assert clean["excluded_days"] == 0
    assert clean["rows"] - gated["rows"] == 48 and gated["excluded_days"] == 2
    scores, _, _ = run_backtests(con, config, log=lambda _: None)
    days = dict(zip(scores.model_id, scores.days_scored))
    assert days["calendar"] == dict(zip(clean_scores.model_id, clean_scores.days_scored))["calendar"] - 2
    stored = con.execute("SELECT excluded_days FROM ml.backtests WHERE model_id = 'calendar'").fetchall()
    assert stored == [(2,)]


# --- TPOT ------------------------------------------------------------------------------------

def test_tpot_tiny_search_is_reproducible_with_right_shaped_nan_free_forecasts(con):
    from dask.distributed import Client, LocalCluster

    hourly = load_hourly(con, [TARGET])
    frame = build_features(hourly, SMALL_TPOT, "Asia/Seoul", date(2018, 1, 1), date(2018, 3, 31))
    train = (frame.rows["local_day"] < date(2018, 3, 1)).to_numpy() & frame.rows["y"].notna().to_numpy()
    test = frame.subset(frame.rows["local_day"].eq(date(2018, 3, 2)).to_numpy())
    lines, runs = [], []
    for _ in range(2):
        with LocalCluster(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            model = fit_model(SMALL_TPOT, frame.X[train], frame.rows["y"][train], client=client,
                              log=lambda line: lines.append((time.monotonic(), line)))
            returned = time.monotonic()
        runs.append((model.text, predict(model, test.X), model.search["progress"], returned))
    (text_a, pred_a, _, first_returned), (text_b, pred_b, progress, returned) = runs
    assert pred_a.shape == (24,) and np.isfinite(pred_a).all()
    assert text_a == text_b
    np.testing.assert_array_equal(pred_a, pred_b)
    # progress is logged live, generation by generation: the first line of the second search
    # comes while it still runs (later generations and the final refit follow), and its last
    # "best so far" is the best cross-validated MAE TPOT recorded for the whole search
    second = [(at, line) for at, line in lines if at > first_returned]
    assert second and all("generation" in line and "best MAE so far" in line for _, line in lines)
    assert returned - second[0][0] > 0.05
    assert f"best MAE so far {progress[-1]['best_mae']:.3f}" in second[-1][1]


def test_no_forecast_is_issued_for_a_day_far_past_the_data(con, tmp_path):
    lines = []
    rows = forecast_day(con, config_with(MODELS[0]), tmp_path, date(2018, 6, 1), log=lines.append)
    assert rows.empty
    assert con.execute("SELECT count(*) FROM ml.forecasts").fetchall() == [(0,)]
    assert any("no daewoo_gwangyang.active_energy data in the 2 days before 2018-06-01" in line for line in lines)


def test_hourly_values_differing_in_their_last_bits_give_the_models_the_same_inputs(tmp_path):
    """DuckDB's parallel sums differ in the last bits between two builds of the same data; the
    models read hourly values rounded to 1e-6, so both builds train on identical numbers."""
    frames = []
    for name, noise in (("a", 0.0), ("b", 1.1e-13)):
        con = prepare(duckdb.connect(str(tmp_path / f"{name}.duckdb")))
        con.execute("INSERT INTO agg.hourly (variable_id, hour, mean, min, max, sum, n, coverage) VALUES "
                    "('v', TIMESTAMPTZ '2018-01-01 00:00:00+00', 1, 1, 1, ?, 4, 1), "
                    "('v', TIMESTAMPTZ '2018-01-01 01:00:00+00', 1, 1, 1, ?, 4, 1)", [31.2 + noise, 0.1 + 0.2 + noise])
        frames.append(load_hourly(con, ["v"]))
        con.close()
    assert frames[0].equals(frames[1])
    assert frames[0]["v"].tolist() == [31.2, 0.3]
