"""`bemp alarms list|ack|history` on a real warehouse file, the alarm schedule on a real Dagster
instance, and no-data alarms raised within one schedule interval without new data."""
from __future__ import annotations

import re
import shutil
from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pytest
from dagster import DagsterRunStatus, build_schedule_context, instance_for_test
from dagster._core.test_utils import create_run_for_test

from bemp_assets.cli import main
from bemp_assets.definitions import build_definitions
from bemp_assets.domain.alarms import evaluate_all
from bemp_assets.domain.config import load_config
from bemp_assets.domain.warehouse import prepare

from .conftest import CONFIG_DIR, make_settings
from .test_alarms_engine import add_readings

RULES = """alarms:
  rules:
    - {name: hot, severity: critical, type: threshold, upper: 10, select: {pattern: "room.*"}}
    - {name: quiet, severity: warning, type: no_data, threshold: 1h, select: {pattern: "room.*"}}
"""
RAISED = datetime(2024, 1, 1, 0, 10, tzinfo=timezone.utc)


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    (folder / "alarms.yaml").write_text(RULES, encoding="utf-8")
    settings = make_settings(tmp_path / "home")
    monkeypatch.setenv("BEMP_HOME", str(settings.home))
    monkeypatch.setenv("BEMP_CONFIG", str(folder))
    settings.home.mkdir(parents=True)
    with duckdb.connect(str(settings.warehouse)) as con:
        prepare(con)
        frame = pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:10"], utc=True), "value": [9.0, 12.0]})
        add_readings(con, "room.temp", frame, RAISED)
        evaluate_all(con, load_config(folder), datetime.now(timezone.utc))
    return settings


def bemp(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def elapsed_seconds(text):
    hours, minutes, seconds = re.fullmatch(r"(\d+)h(\d\d):(\d\d)", text).groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


def test_list_ack_and_history(home, capsys):
    before = datetime.now(timezone.utc)
    code, out, _ = bemp(capsys, "alarms", "list", "--active")
    after = datetime.now(timezone.utc)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["alarm_id", "raised_at", "severity", "rule", "subject", "last_value", "elapsed", "state", "acked_by"]
    rows = [line.split() for line in lines[1:]]
    # critical first; hot raised at 00:10 (12 > 10); quiet raised 1 h after the last reading
    assert [(r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("2024-01-01", "00:10", "critical", "hot", "room.temp", "12"), ("2024-01-01", "01:10", "warning", "quiet", "room.temp", "12")]
    for row, raised in zip(rows, (RAISED, RAISED + timedelta(hours=1))):
        assert (before - raised).total_seconds() - 1 <= elapsed_seconds(row[7]) <= (after - raised).total_seconds() + 1
    hot_id = rows[0][0]
    assert bemp(capsys, "alarms", "list", "--active", "--severity", "warning")[1].count("quiet") == 1
    assert "hot" not in bemp(capsys, "alarms", "list", "--active", "--severity", "warning")[1]
    code, out, _ = bemp(capsys, "alarms", "ack", hot_id, "--by", "ana", "--note", "window open")
    assert code == 0 and out.startswith(f"alarm {hot_id} (hot on room.temp) acknowledged by ana at ")
    code, out, _ = bemp(capsys, "alarms", "list", "--active", "--severity", "critical")
    assert out.splitlines()[1].split()[-2:] == ["acknowledged", "ana"]
    code, _, err = bemp(capsys, "alarms", "ack", hot_id, "--by", "bob")
    assert code == 2 and err == f"bemp alarms: alarm {hot_id} is already acknowledged by ana\n"
    code, _, err = bemp(capsys, "alarms", "ack", "abc", "--by", "bob")
    assert code == 2 and err == "bemp alarms: no active alarm with id 'abc' (see `bemp alarms list --active`)\n"
    code, out, _ = bemp(capsys, "alarms", "history", "--rule", "hot")
    assert code == 0 and [line.split()[2] for line in out.splitlines()[1:]] == ["raised", "acknowledged"]
    code, _, err = bemp(capsys, "alarms", "history", "--rule", "hott")
    assert code == 2 and err == "bemp alarms: --rule 'hott': no events; rules with events: ['hot', 'quiet']\n"
    code, out, _ = bemp(capsys, "alarms", "list")
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["active", "acknowledged"]  # newest first


def test_no_warehouse_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEMP_HOME", str(tmp_path / "nothing"))
    monkeypatch.setenv("BEMP_CONFIG", str(CONFIG_DIR))
    code, _, err = bemp(capsys, "alarms", "list")
    assert code == 2 and err.startswith("bemp alarms: warehouse ") and err.count("\n") == 1


def test_no_data_raises_within_one_interval_without_new_data(con, config):
    """Evaluations every 5 minutes and no new reading: the alarm appears at the first one after
    its threshold passes (last reading 00:10 + 1 h = 01:10)."""
    rules = load_config_text_rules(config)
    add_readings(con, "room.temp", pd.DataFrame({"ts": pd.to_datetime(["2024-01-01 00:10"], utc=True), "value": [1.0]}), RAISED)
    tick = datetime(2024, 1, 1, 0, 12, tzinfo=timezone.utc)
    while tick < datetime(2024, 1, 1, 1, 30, tzinfo=timezone.utc):
        evaluate_all(con, rules, tick)
        tick += timedelta(minutes=5)
    raised, detected = con.execute("SELECT data_ts, detected_at FROM ops.alarm_events WHERE rule = 'quiet'").fetchall()[0]
    assert raised == datetime(2024, 1, 1, 1, 10, tzinfo=timezone.utc)
    assert detected == datetime(2024, 1, 1, 1, 12, tzinfo=timezone.utc)  # the first tick after 01:10


def load_config_text_rules(config):
    import yaml

    from bemp_assets.domain.config import AlarmsSection

    return config.model_copy(update={"alarms": AlarmsSection.model_validate(yaml.safe_load(RULES)).alarms})


def test_schedule_every_five_minutes_and_skips_while_a_run_is_unfinished(settings):
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("bemp_alarms_every")
    assert schedule.cron_schedule == "*/5 * * * *" and schedule.default_status.value == "RUNNING"
    with instance_for_test() as instance:
        context = build_schedule_context(instance=instance, repository_def=defs.get_repository_def())
        first = schedule.evaluate_tick(context)
        assert [sorted(k.to_user_string() for k in r.asset_selection) for r in first.run_requests] == [
            ["alarms/events", "alarms/notifications"]]
        waiting = create_run_for_test(instance, job_name="bemp_alarms", status=DagsterRunStatus.STARTED)
        skipped = schedule.evaluate_tick(build_schedule_context(instance=instance, repository_def=defs.get_repository_def()))
        assert skipped.run_requests == [] and skipped.skip_message == f"alarm run {waiting.run_id} is still queued or running"
