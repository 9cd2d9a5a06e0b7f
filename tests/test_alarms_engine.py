"""Alarm engine on hand-built series: exact events per rule type, the state machine, and the
warehouse lifecycle (idempotency, restart, incremental = full, replay, acknowledgement)."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest

from bemp_assets.domain.alarms import (
    acknowledge,
    constant_triggers,
    evaluate_all,
    format_elapsed,
    no_data_triggers,
    rule_version,
    state_changes,
    threshold_triggers,
)
from bemp_assets.domain.config import AlarmsConfig, ConstantRule, NoDataRule, ThresholdRule
from bemp_assets.domain.warehouse import prepare

from .conftest import ROOT

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")


def series(values, step_min=10, subject="v.x", start=T0):
    return pd.DataFrame({"subject": subject, "ts": [start + pd.Timedelta(minutes=step_min * i) for i in range(len(values))],
                         "value": [float(v) for v in values]})


def at(minutes):
    return T0 + pd.Timedelta(minutes=minutes)


def events_of(triggers, open_alarms=None):
    found = state_changes(triggers, open_alarms or {}, "r")
    return [(e, ts, v) for e, ts, v in zip(found["event"], found["data_ts"], found["value"])]


def threshold(**kw):
    return ThresholdRule(**{"name": "hot", "severity": "warning", "select": [{"pattern": "*"}], "type": "threshold", **kw})


def constant(**kw):
    return ConstantRule(**{"name": "stuck", "severity": "info", "select": [{"pattern": "*"}], "type": "constant", **kw})


def no_data(**kw):
    return NoDataRule(**{"name": "silent", "severity": "error", "select": [{"pattern": "*"}], "type": "no_data", **kw})


CHATTER = [9, 11, 9.5, 11, 11, 11, 9.5, 8.5, 11, 8.5, 8.5, 8.5, 8.9]


def test_threshold_hysteresis_and_delays_stop_chattering():
    # on-delay 20 min: the run of 11s starting at 30 min holds at 50; 9.5 is inside the band
    # (9 < 9.5 <= 10) so it neither raises nor clears; the run of 8.5s from 90 min holds at 110
    rule = threshold(upper=10, hysteresis=1, on_delay="20min", off_delay="20min")
    assert events_of(threshold_triggers(series(CHATTER), rule)) == [("raised", at(50), 11.0), ("cleared", at(110), 8.5)]


def test_threshold_without_hysteresis_or_delays_chatters():
    rule = threshold(upper=10)
    assert events_of(threshold_triggers(series(CHATTER), rule)) == [
        ("raised", at(10), 11.0), ("cleared", at(20), 9.5), ("raised", at(30), 11.0),
        ("cleared", at(60), 9.5), ("raised", at(80), 11.0), ("cleared", at(90), 8.5)]


def test_threshold_lower_limit_band():
    rule = threshold(lower=5, hysteresis=1)
    assert events_of(threshold_triggers(series([6, 4, 5.5, 6.5]), rule)) == [("raised", at(10), 4.0), ("cleared", at(30), 6.5)]


def test_threshold_on_delay_one_sample_short_raises_nothing():
    rule = threshold(upper=10, on_delay="30min")
    assert events_of(threshold_triggers(series([9, 11, 11, 11, 9]), rule)) == []  # held 20 min only
    assert events_of(threshold_triggers(series([9, 11, 11, 11, 11, 9]), rule)) == [("raised", at(40), 11.0), ("cleared", at(50), 9.0)]


def test_constant_stuck_value_that_recovers():
    # stretch starts at 10 min (2); 2.02 and 1.99 stay within 0.05 of the sample before;
    # 30 min after the stretch began (40 min) it raises; 3 at 60 min leaves the stretch
    rule = constant(duration="30min", tolerance=0.05)
    found = events_of(constant_triggers(series([1, 2, 2, 2.02, 1.99, 2, 3, 3]), rule))
    assert found == [("raised", at(40), 1.99), ("cleared", at(60), 3.0)]


def test_constant_ignores_a_legitimate_zero():
    values = [0, 0, 0, 0, 0, 5]
    assert events_of(constant_triggers(series(values), constant(duration="30min"))) == [("raised", at(30), 0.0), ("cleared", at(50), 5.0)]
    assert events_of(constant_triggers(series(values), constant(duration="30min", ignore_value=0))) == []


def test_no_data_gap_exactly_at_threshold():
    rule = no_data(threshold="1h")
    gap = pd.DataFrame({"subject": "v.x", "ts": [at(0), at(10), at(70)], "value": [1.0, 2.0, 3.0]})
    assert events_of(no_data_triggers(gap, rule, at(80))) == [("raised", at(70), 2.0), ("cleared", at(70), 3.0)]
    short = gap.assign(ts=[at(0), at(10), at(69)])
    assert events_of(no_data_triggers(short, rule, at(80))) == []


def test_no_data_raises_at_the_threshold_without_new_data():
    rule = no_data(threshold="1h")
    data = series([1, 2])  # last sample at 10 min
    assert events_of(no_data_triggers(data, rule, at(69))) == []
    assert events_of(no_data_triggers(data, rule, at(70))) == [("raised", at(70), 2.0)]


def test_state_machine_starts_from_an_open_alarm():
    triggers = pd.DataFrame({"subject": ["a", "a"], "ts": [at(0), at(10)], "value": [5.0, 1.0], "trigger": [1, -1]})
    found = state_changes(triggers, {"a": at(-60)}, "r")
    assert list(found["event"]) == ["cleared"]  # the raise at 0 repeats an alarm already active
    same = state_changes(pd.DataFrame({"subject": ["a"], "ts": [at(-60)], "value": [5.0], "trigger": [1]}), {}, "r")
    assert found["alarm_id"].iloc[0] == same["alarm_id"].iloc[0]  # the clear closes the stored alarm


def test_elapsed_format():
    assert format_elapsed(200 * 3600 + 59 * 60 + 37) == "200h59:37"
    assert format_elapsed(59) == "0h00:59"


# --- the warehouse lifecycle --------------------------------------------------------------

def add_readings(con, variable, frame, ingested_at):
    """A variable with readings in meta, raw and clean (as the pipeline would leave them)."""
    con.execute("""INSERT INTO meta.variables SELECT ?, 'test', 'site', split_part(?, '.', 1), split_part(?, '.', 2),
                   NULL, NULL, 'instantaneous', NULL, 'UTC', 600, ?, ? WHERE ? NOT IN (SELECT variable_id FROM meta.variables)""",
                [variable, variable, variable, ingested_at, ingested_at, variable])
    rows = frame.assign(variable_id=variable)
    con.register("_rows", rows)
    con.execute("INSERT INTO raw.measurements SELECT variable_id, ts, value, 'test.csv', NULL, ? FROM _rows", [ingested_at])
    con.execute("INSERT INTO clean.stored SELECT variable_id, ts, value, NULL, NULL FROM _rows")
    con.unregister("_rows")


def with_rules(config, *rules):
    return config.model_copy(update={"alarms": AlarmsConfig(rules=list(rules))})


def stored_events(con, current_only=True):
    where = "WHERE superseded_at IS NULL" if current_only else ""
    return con.execute(f"SELECT rule, subject, event, data_ts, value, event_id, alarm_id, detected_at, rule_version "
                       f"FROM ops.alarm_events {where} ORDER BY data_ts, event DESC").df()


HOT = threshold(upper=10, hysteresis=1, on_delay="20min", off_delay="20min")
NOW = datetime(2024, 1, 2, tzinfo=timezone.utc)


def test_same_window_twice_adds_no_event(con, config):
    cfg = with_rules(config, HOT)
    add_readings(con, "room.temp", series(CHATTER).drop(columns="subject"), NOW)
    evaluate_all(con, cfg, NOW)
    first = stored_events(con)
    assert [(e, t) for e, t in zip(first["event"], first["data_ts"])] == [("raised", at(50)), ("cleared", at(110))]
    evaluate_all(con, cfg, NOW)
    evaluate_all(con, cfg, NOW + timedelta(minutes=5))
    again = stored_events(con)
    pd.testing.assert_frame_equal(first, again)  # same ids, first detection time kept


def test_incremental_evaluation_equals_one_over_all_history(tmp_path, config):
    rules = [HOT, constant(duration="30min", tolerance=0.05), no_data(threshold="1h")]
    values = CHATTER + [2, 2, 2.02, 1.99, 2, 3] * 5
    full = series(values).drop(columns="subject")
    full = full[full.index != 20].reset_index(drop=True)  # a 20-min gap: no no_data event
    late_gap = full.assign(ts=full["ts"].where(full.index < 30, full["ts"] + pd.Timedelta(hours=2)))
    once = prepare(duckdb.connect(str(tmp_path / "once.duckdb")))
    add_readings(once, "room.temp", late_gap, NOW)
    evaluate_all(once, with_rules(config, *rules), NOW)
    steps = prepare(duckdb.connect(str(tmp_path / "steps.duckdb")))
    for i, (lo, hi) in enumerate([(0, 12), (12, 31), (31, len(late_gap))]):
        add_readings(steps, "room.temp", late_gap.iloc[lo:hi], NOW + timedelta(seconds=i))
        evaluate_all(steps, with_rules(config, *rules), NOW + timedelta(seconds=i))
    columns = ["rule", "subject", "event", "data_ts", "value", "event_id", "alarm_id"]
    expected = stored_events(once)[columns]
    assert len(expected) >= 6 and set(expected["rule"]) == {"hot", "stuck", "silent"}
    pd.testing.assert_frame_equal(stored_events(steps)[columns], expected)


def test_a_new_process_continues_an_active_alarm(tmp_path, config):
    path = tmp_path / "w.duckdb"
    con = prepare(duckdb.connect(str(path)))
    add_readings(con, "room.temp", series([9, 11, 11, 11]).drop(columns="subject"), NOW)
    cfg = with_rules(config, HOT)
    evaluate_all(con, cfg, NOW)
    raised = stored_events(con)
    assert list(raised["event"]) == ["raised"]
    add_readings(con, "room.temp", series([8, 8, 8], start=at(40)).drop(columns="subject"), NOW + timedelta(minutes=1))
    con.close()
    script = (
        "import duckdb, datetime as d; from bemp_assets.domain.config import load_config, AlarmsConfig, ThresholdRule;"
        "from bemp_assets.domain.alarms import evaluate_all; from bemp_assets.domain.warehouse import prepare;"
        f"c = load_config({str(ROOT / 'data' / 'config')!r});"
        "r = ThresholdRule(name='hot', severity='warning', select=[{'pattern': '*'}], type='threshold', upper=10,"
        " hysteresis=1, on_delay='20min', off_delay='20min');"
        "c = c.model_copy(update={'alarms': AlarmsConfig(rules=[r])});"
        f"evaluate_all(prepare(duckdb.connect({str(path)!r})), c, d.datetime(2024, 1, 2, 0, 5, tzinfo=d.timezone.utc))")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    after = stored_events(con)
    assert list(after["event"]) == ["raised", "cleared"]
    assert after["data_ts"].iloc[1] == at(60)  # 8 from 40 min, off-delay 20 min
    assert after["alarm_id"].iloc[1] == raised["alarm_id"].iloc[0]
    assert after["event_id"].iloc[0] == raised["event_id"].iloc[0]
    assert con.execute("SELECT count(*) FROM ops.alarms_active").fetchone()[0] == 0


def test_replay_after_rule_change_keeps_old_events_for_audit(con, config):
    add_readings(con, "room.temp", series(CHATTER).drop(columns="subject"), NOW)
    evaluate_all(con, with_rules(config, HOT), NOW)
    old = stored_events(con)
    changed = threshold(upper=10)  # no hysteresis, no delays: the chattering events
    evaluate_all(con, with_rules(config, changed), NOW + timedelta(hours=1))
    current = stored_events(con)
    assert len(current) == 6 and set(current["rule_version"]) == {rule_version(changed)}
    everything = stored_events(con, current_only=False)
    audit = everything[everything["rule_version"] == rule_version(HOT)]
    assert list(audit["event_id"]) == list(old["event_id"])
    sup = con.execute("SELECT DISTINCT superseded_at FROM ops.alarm_events WHERE rule_version = ?", [rule_version(HOT)]).fetchall()
    assert sup == [(NOW + timedelta(hours=1),)]
    assert rule_version(HOT) != rule_version(changed)
    assert rule_version(HOT) == rule_version(HOT.model_copy(update={"description": "text only"}))


def test_acknowledgement_survives_re_evaluation(con, config):
    add_readings(con, "room.temp", series([9, 11, 11, 11]).drop(columns="subject"), NOW)
    cfg = with_rules(config, HOT)
    evaluate_all(con, cfg, NOW)
    alarm_id = con.execute("SELECT alarm_id FROM ops.alarms_active").fetchone()[0]
    acknowledge(con, cfg, alarm_id, "ana", "ventilation checked", NOW + timedelta(minutes=1))
    evaluate_all(con, cfg, NOW + timedelta(minutes=5))
    evaluate_all(con, cfg, NOW + timedelta(minutes=10))
    row = con.execute("SELECT alarm_id, state, acked_by, acked_at FROM ops.alarms_active").fetchall()
    assert row == [(alarm_id, "acknowledged", "ana", NOW + timedelta(minutes=1))]
    kinds = con.execute("SELECT event, count(*) FROM ops.alarm_events GROUP BY ALL ORDER BY 1").fetchall()
    assert kinds == [("acknowledged", 1), ("raised", 1)]
    with pytest.raises(ValueError, match="already acknowledged by ana"):
        acknowledge(con, cfg, alarm_id, "bob", None, NOW + timedelta(minutes=11))
    with pytest.raises(ValueError, match="no active alarm with id 'nope'"):
        acknowledge(con, cfg, "nope", "bob", None, NOW)


def test_no_data_per_gateway_counts_from_installation(con, config):
    """A registered gateway silent since installation raises; one whose sensors report does
    not, even when one of its sensors is silent (that one raises per variable)."""
    rule = no_data(threshold="1h", per_gateway=True, select=[{"pattern": "GW-*"}])
    first = config.gateways[0]
    installed = pd.Timestamp(first.installed, tz="UTC")
    ticks = pd.DataFrame({"ts": [installed + pd.Timedelta(minutes=10 * i) for i in range(13)], "value": 1.0})
    add_readings(con, f"{first.sn}.ch1_temperature", ticks, NOW)
    add_readings(con, f"{first.sn}.ch2_humidity", ticks.iloc[:2], NOW)
    now = installed + pd.Timedelta(minutes=150)
    evaluate_all(con, with_rules(config, rule), now.to_pydatetime())
    board = con.execute("SELECT subject_kind, subject, raised_at FROM ops.alarms_active ORDER BY 1, 2").fetchall()
    others = [(g.sn, installed + pd.Timedelta(hours=1)) for g in config.gateways[1:] if g.installed == first.installed]
    expected_gateways = [("gateway", sn, ts) for sn, ts in others]
    assert [b for b in board if b[0] == "gateway"][:len(expected_gateways)] == expected_gateways
    assert first.sn not in [b[1] for b in board if b[0] == "gateway"]
    assert ("variable", f"{first.sn}.ch2_humidity", installed + pd.Timedelta(minutes=70)) in board


def test_a_gap_exactly_at_the_threshold_leaves_the_board_empty(con, config):
    """Raised and cleared at the same instant: the clear is the last event, nothing is active,
    and a later evaluation starting after it does not reopen it."""
    add_readings(con, "room.temp", pd.DataFrame({"ts": [at(0), at(60)], "value": [1.0, 2.0]}), NOW)
    cfg = with_rules(config, no_data(threshold="1h"))
    evaluate_all(con, cfg, at(70).to_pydatetime())
    assert [(e, t) for e, t in zip(stored_events(con)["event"], stored_events(con)["data_ts"])] == [
        ("raised", at(60)), ("cleared", at(60))]
    assert con.execute("SELECT count(*) FROM ops.alarms_active").fetchone()[0] == 0
    add_readings(con, "room.temp", pd.DataFrame({"ts": [at(24 * 60 * 3 + i * 10) for i in range(3)], "value": 3.0}),
                 NOW + timedelta(days=1))
    evaluate_all(con, cfg, at(24 * 60 * 3 + 25).to_pydatetime())
    assert list(stored_events(con)["event"]) == ["raised", "cleared", "raised", "cleared"]  # the 3-day gap
    assert con.execute("SELECT count(*) FROM ops.alarms_active").fetchone()[0] == 0
