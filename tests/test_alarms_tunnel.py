"""The tunnel rule (actual against the champion's forecast) on hand-built frames and on hand-built
ml tables following the contract of docs/alarms.md (ml.forecasts, ml.model_status)."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from bemp_assets.domain.alarms import evaluate_all, state_changes, tunnel_triggers
from bemp_assets.domain.config import AlarmsConfig, TunnelRule

H0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


def hour(i):
    return H0 + pd.Timedelta(hours=i)


def tunnel(**kw):
    return TunnelRule(**{"name": "tunnel", "severity": "error", "select": [{"pattern": "*"}], "type": "tunnel", **kw})


def hourly(actual, forecast=10.0, mae=1.0, hours=None):
    hours = hours if hours is not None else list(range(len(actual)))
    return pd.DataFrame({"subject": "m.load", "ts": [hour(i) for i in hours], "value": [float(a) for a in actual],
                         "forecast": forecast, "mae": mae})


def events_of(frame, rule):
    found = state_changes(tunnel_triggers(frame, rule), {}, rule.name)
    return [(e, t, v) for e, t, v in zip(found["event"], found["data_ts"], found["value"])]


def test_outside_for_n_minus_one_hours_raises_nothing_and_n_hours_raises():
    rule = tunnel(k=3, hours=3)  # bound = 3 x MAE 1 = 3 around the forecast 10
    # hours 1, 2 outside (14, 6.5): N-1; hour 3 inside (12.9); hours 4..6 outside: raise at 6; 7 inside: clear
    actual = [10, 14, 6.5, 12.9, 13.5, 14, 20, 10]
    assert events_of(hourly(actual), rule) == [("raised", hour(6), 20.0), ("cleared", hour(7), 10.0)]
    assert events_of(hourly(actual[:3] + [10]), rule) == []


def test_margin_or_mae_whichever_is_wider():
    frame = hourly([12.5, 12.5], mae=0.5)
    assert events_of(frame, tunnel(margin=2, k=3, hours=2)) == [("raised", hour(1), 12.5)]  # bound max(2, 1.5) = 2
    assert events_of(frame.assign(mae=1.0), tunnel(margin=2, k=3, hours=2)) == []  # bound max(2, 3) = 3


def test_a_missing_hour_breaks_the_run():
    assert events_of(hourly([20, 20, 20], hours=[0, 1, 3]), tunnel(hours=3)) == []
    assert events_of(hourly([20, 20, 20], hours=[0, 1, 2]), tunnel(hours=3)) == [("raised", hour(2), 20.0)]


def test_champion_forecasts_issued_before_the_hour(con, config):
    """Only the champion's forecasts count, and for each hour the latest issued no later than
    its start; a hindcast (issued after) is ignored. The actual is the hour's mean (sum NULL:
    not energy)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    con.execute("CREATE TABLE ml.forecasts (variable_id VARCHAR, target_ts TIMESTAMPTZ, value DOUBLE, model_id VARCHAR, issued_at TIMESTAMPTZ)")
    con.execute("CREATE TABLE ml.model_status (model_id VARCHAR, target VARCHAR, role VARCHAR, backtest_mae DOUBLE)")
    con.execute("INSERT INTO ml.model_status VALUES ('gbm', 'm.load', 'champion', 1.0), ('naive', 'm.load', 'baseline', 0.1)")
    actual = [10, 15, 15, 15, 10]
    for i, value in enumerate(actual):
        con.execute("""INSERT INTO agg.hourly (variable_id, hour, mean, min, max, sum, n, coverage)
                       VALUES ('m.load', ?, ?, ?, ?, NULL, 4, 1)""", [hour(i), value, value, value])
        con.execute("INSERT INTO ml.forecasts VALUES ('m.load', ?, 10, 'gbm', ?)", [hour(i), hour(i - 24)])
        con.execute("INSERT INTO ml.forecasts VALUES ('m.load', ?, 15, 'naive', ?)", [hour(i), hour(i - 1)])
        con.execute("INSERT INTO ml.forecasts VALUES ('m.load', ?, 15, 'gbm', ?)", [hour(i), hour(i) + pd.Timedelta(minutes=1)])
    con.execute("""INSERT INTO meta.variables VALUES ('m.load', 'test', 's', 'm', 'load', NULL, 'kW', 'instantaneous', NULL,
                   'UTC', 900, ?, ?)""", [H0, H0])
    cfg = config.model_copy(update={"alarms": AlarmsConfig(rules=[tunnel(k=3, hours=3)])})
    evaluate_all(con, cfg, datetime(2024, 3, 2, tzinfo=timezone.utc))
    found = con.execute("SELECT event, data_ts, value FROM ops.alarm_events ORDER BY data_ts").fetchall()
    assert found == [("raised", hour(3).to_pydatetime(), 15.0), ("cleared", hour(4).to_pydatetime(), 10.0)]


def test_without_ml_tables_a_tunnel_rule_raises_nothing(con, config):
    cfg = config.model_copy(update={"alarms": AlarmsConfig(rules=[tunnel()])})
    assert [r.events_in_window for r in evaluate_all(con, cfg, datetime(2024, 3, 2, tzinfo=timezone.utc))] == [0]
