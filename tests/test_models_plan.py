"""Planned exogenous inputs (a production plan known the day before): the steel plant's
Load_Type ingested as daewoo_gwangyang.load_type, the D-day value allowed only for a variable
its source declares planned, measured variables still refused past the issue time.
No warehouse run: the configuration, a hand-made hourly frame and the parser on the real CSV.
"""
from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bemp_assets.domain.config import ConfigError, ModelSpec, load_config
from bemp_assets.domain.forecasting import ForecastError, build_features
from bemp_assets.domain.parsing import parse_file

from .conftest import CONFIG_DIR, SAMPLE

TARGET = "daewoo_gwangyang.active_energy"
PLAN = "daewoo_gwangyang.load_type"
CODES = {"Light_Load": 0.0, "Medium_Load": 1.0, "Maximum_Load": 2.0}


def models_yaml(tmp_path: Path, exogenous: str, issue: str = "") -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    (folder / "models.yaml").write_text(f"""forecasting:
  models:
    - name: m
      target: {TARGET}
      learner: hist_gradient_boosting
      {issue}
      features: {{calendar: [hour], exogenous: [{exogenous}]}}
""", encoding="utf-8")
    return folder


def test_the_target_days_value_is_allowed_only_for_a_declared_planned_variable(tmp_path):
    accepted = load_config(models_yaml(tmp_path / "a", f"{{variable: {PLAN}, kind: planned, lags_days: [0], daily_lags: [0]}}"))
    assert accepted.forecasting.models[0].features.exogenous[0].lags_days == [0]
    shipped = {m.name: m for m in load_config(CONFIG_DIR).forecasting.models}
    assert [(e.variable, e.kind, e.lags_days) for e in shipped["steel_plan"].features.exogenous] == [(PLAN, "planned", [0])]

    # a measured variable at D (lag 0) is still a configuration error, naming file and key
    with pytest.raises(ConfigError) as measured:
        load_config(models_yaml(tmp_path / "b", f"{{variable: {PLAN}, lags_days: [0]}}"))
    assert "models.yaml: key 'forecasting.models[0]'" in str(measured.value)
    assert "features.exogenous[0].lags_days [0]: a lag shorter than 1 day(s) looks past the issue time" in str(measured.value)

    # calling a measured variable planned does not make it one: its source must declare it
    with pytest.raises(ConfigError) as undeclared:
        load_config(models_yaml(tmp_path / "c", "{variable: daewoo_gwangyang.reactive_energy_lagging, kind: planned, lags_days: [0]}"))
    assert "key 'forecasting.models[0].features.exogenous[0]'" in str(undeclared.value)
    assert "'daewoo_gwangyang.reactive_energy_lagging' is not declared planned" in str(undeclared.value)

    # a plan published at 00:00 of D is too late for an issue at 10:00 of D-1; one published
    # at 08:00 of D-1 is in time
    gate = 'issue_time: {day: -1, time: "10:00"}'
    with pytest.raises(ConfigError, match=r"exogenous\[0\].lags_days \[0\]: the plan .* is published \(day 0, 00:00\) after"):
        load_config(models_yaml(tmp_path / "d", f"{{variable: {PLAN}, kind: planned, lags_days: [0]}}", gate))
    early = f'{{variable: {PLAN}, kind: planned, published: {{day: -1, time: "08:00"}}, lags_days: [0]}}'
    assert load_config(models_yaml(tmp_path / "e", early, gate)).forecasting.models[0].issue_time.day == -1


def hourly_frame() -> pd.DataFrame:
    """Ten Seoul days (UTC hour index): energy = 100 x day number + local hour; the plan is 1 at
    every hour, except days 3, 4 and 8 (all 0: the plant stands still)."""
    local = pd.date_range("2018-03-01", periods=240, freq="h", tz="Asia/Seoul")
    day = np.arange(240) // 24 + 1
    plan = np.where(np.isin(day, [3, 4, 8]), 0.0, 1.0)
    return pd.DataFrame({TARGET: 100.0 * day + local.hour, PLAN: plan}, index=local.tz_convert("UTC"))


def plan_spec() -> dict:
    return dict(name="p", target=TARGET, timezone="Asia/Seoul", learner="hist_gradient_boosting")


def test_builder_reads_the_plan_at_issue_and_refuses_a_measured_variable_at_d():
    hourly = hourly_frame()
    spec = ModelSpec(**plan_spec(), features={"calendar": ["hour"], "running_day_plan": PLAN,
                                              "exogenous": [{"variable": PLAN, "kind": "planned", "lags_days": [0],
                                                             "daily_lags": [0]}]})
    frame = build_features(hourly, spec, "Asia/Seoul", date(2018, 3, 2), date(2018, 3, 10))
    days = pd.Series([d.day for d in frame.rows["local_day"]])
    hours = frame.X["hour"].to_numpy()
    # the target day's own plan, known at its publication, 00:00 of D = the issue
    assert (frame.available_at[f"{PLAN}_lag_0d"] == frame.rows["issued_at"]).all()
    assert list(frame.X[f"{PLAN}_day_total_0d"]) == [0.0 if d in (3, 4, 8) else 24.0 for d in days]
    # the last running day before D: day 2 for days 3-5, day 7 for days 8-9, else D-1
    last = days.map(lambda d: {3: 2, 4: 2, 5: 2, 8: 7, 9: 7}.get(d, d - 1))
    np.testing.assert_array_equal(frame.X["target_last_running_day"], 100.0 * last + hours)
    np.testing.assert_array_equal(frame.X["target_last_running_day_total"], (2400.0 * last + 276).to_numpy())
    ends = pd.to_datetime([f"2018-03-{d + 1:02d}" for d in last]).tz_localize("Asia/Seoul").tz_convert("UTC")
    assert (pd.DatetimeIndex(frame.available_at["target_last_running_day"]) == ends).all()

    # a measured variable read at D, past the validation (model_construct), is refused by the builder
    measured = ModelSpec(**plan_spec(), features={"exogenous": [{"variable": PLAN, "lags_days": [1]}]})
    leak = measured.features.exogenous[0].model_copy(update={"lags_days": [0]})
    leaking = measured.model_copy(update={"features": measured.features.model_copy(update={"exogenous": [leak]})})
    with pytest.raises(ForecastError, match=f"feature '{PLAN}_lag_0d' is known only after the issue time"):
        build_features(hourly, leaking, "Asia/Seoul", date(2018, 3, 2), date(2018, 3, 10))


def test_ingested_load_type_equals_the_csv_labels(con, config):
    source = config.source("steel_plant")
    parsed = parse_file(con, SAMPLE / "Steel_industry_data.csv", source, config.timezone_of(source), "t")
    assert parsed.error is None and len(parsed.rejects) == 0
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig", newline="") as handle:
        expected = {line: CODES[row["Load_Type"]] for line, row in enumerate(csv.DictReader(handle), start=2)}
    got = dict(con.execute("SELECT line, value FROM t WHERE variable_id = ?", [PLAN]).fetchall())
    assert len(expected) == 35040 and got == expected
    counts = {code: sum(v == code for v in expected.values()) for code in CODES.values()}
    stored = dict(con.execute("SELECT value, count(*) FROM t WHERE variable_id = ? GROUP BY value", [PLAN]).fetchall())
    assert stored == counts
