"""The real alarms of the sample data, after what `make run` does (CSV pipeline, then the live
pipeline over the reference servers, then the status board and the alarms), through a real
Dagster instance. Every expected event is computed here from the sample files with the csv
module and plain Python, independently of the engine's pandas and SQL."""
from __future__ import annotations

import csv
import gzip
import shutil
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster import instance_for_test

from bemp_assets.cli import reference_servers, run, seed_sample
from bemp_assets.domain.alarms import evaluate_all, rule_version, rules_without_variables
from bemp_assets.domain.config import load_config
from bemp_assets.domain.summary import warehouse_summary

from .conftest import CONFIG_DIR, SAMPLE, make_settings

UTC = timezone.utc
REACH_METERS = ["7f6eca13160d9ddd2584", "48d87c2603e06eb63d1c", "8687ff6f40894aaeb8b1", "133a422928db040ab58d",
                "69babb4bdd17bdb846c8"]
EV = "69babb4bdd17bdb846c8"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("home"))
    seed_sample(settings)
    with instance_for_test() as instance, reference_servers(settings) as (first, last):
        assert run(settings, None, None, None, instance=instance, refresh_status=False) == 0
        assert run(settings, first, last, None, instance=instance, job_name="bemp_live") == 0
    return settings


def query(settings, sql, params=None):
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def events(settings, rule):
    return query(settings, """SELECT event, data_ts, value, subject FROM ops.alarm_events
                              WHERE rule = ? AND superseded_at IS NULL ORDER BY subject, data_ts, event DESC""", [rule])


def gateway_rows(sn):
    with gzip.open(SAMPLE / "gateway" / f"{sn}.csv.gz", "rt", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(line for line in handle if not line.startswith("#"))]


def utc(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_silent_gateways_and_their_sensors(sample):
    """gateway_silent (14 days): every sensor and every registered gateway is silent since its
    last reading in the sample (Feb .. May 2016); GW-BE-0010 never reported: counted from its
    installation day (2016-05-01, as UTC midnight)."""
    config = load_config(CONFIG_DIR)
    two_weeks = timedelta(days=14)
    expected = {}
    for gateway in config.gateways:
        path = SAMPLE / "gateway" / f"{gateway.sn}.csv.gz"
        rows = gateway_rows(gateway.sn) if path.exists() else []
        for row in rows:
            variable = f"{row['sn']}.ch{row['channel']}_{row['medium']}"
            expected[variable] = max(expected.get(variable, utc(row["time"])), utc(row["time"]))
        last = max((utc(r["time"]) for r in rows), default=datetime(gateway.installed.year, gateway.installed.month,
                                                                      gateway.installed.day, tzinfo=UTC))
        expected[gateway.sn] = last
    board = query(sample, "SELECT subject, raised_at, severity, source, state FROM ops.alarms_active WHERE rule = 'gateway_silent'")
    assert sorted(board) == sorted((s, t + two_weeks, "error", "gateway", "active") for s, t in expected.items())
    assert ("GW-BE-0010", datetime(2016, 5, 15, tzinfo=UTC), "error", "gateway", "active") in board
    assert len(board) == 30  # 20 sensors and 10 gateways
    # nothing stopped inside the sample: every raise is the final silence, none cleared
    assert [e for e in events(sample, "gateway_silent") if e[0] == "cleared"] == []


def reach_readings():
    """(device, parameter) -> sorted UTC times and values, from the two REACH exports
    (Europe/Rome; the repeated 02:00 hour of 30 Oct is summer time first, then winter time;
    the overlap day of the two files is counted once)."""
    rome = ZoneInfo("Europe/Rome")
    series: dict[tuple, dict] = {}
    for name in ("reach_residential4_2016-10.csv", "reach_residential4_2016-11.csv"):
        with open(SAMPLE / name, encoding="utf-8") as handle:
            seen_fold: dict[tuple, bool] = {}
            for row in csv.DictReader(handle):
                key = (row["Dispositivo"], row["Parametro"])
                local = datetime.strptime(row["Data"], "%H:%M:%S %d/%m/%Y")
                fold = 1 if local == datetime(2016, 10, 30, 2) and seen_fold.get(key) else 0
                if local == datetime(2016, 10, 30, 2):
                    seen_fold[key] = True
                ts = local.replace(tzinfo=rome, fold=fold).astimezone(UTC)
                series.setdefault(key, {})[ts] = float(row["Valore"].replace(",", "."))
    return {key: sorted(values.items()) for key, values in series.items()}


def test_reach_meters_silent_since_their_last_reading(sample):
    readings = reach_readings()
    expected = sorted((f"{device}.{'active_energy' if p == 'Energia attiva' else 'active_power'}",
                       points[-1][0] + timedelta(days=2), "warning", "reach_residential")
                      for (device, p), points in readings.items())
    board = query(sample, "SELECT subject, raised_at, severity, source FROM ops.alarms_active WHERE rule = 'reach_meter_silent'")
    assert sorted(board) == expected and len(board) == 6
    assert readings[("7f6eca13160d9ddd2584", "Potenza attiva")][-1][0] == datetime(2016, 11, 11, 22, tzinfo=UTC)


def steel_power_factor():
    """(UTC start of interval, lagging power factor) from the wide export: stamps label the end
    of a 15-min interval in Asia/Seoul (UTC+9, no DST), '0:00' under the date of the day it closes."""
    out = []
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            end = datetime.strptime(row["date"], "%d/%m/%Y %H:%M")
            if end.hour == 0 and end.minute == 0:
                end += timedelta(days=1)
            out.append((end - timedelta(minutes=15) - timedelta(hours=9), float(row["Lagging_Current_Power_Factor"])))
    return sorted((ts.replace(tzinfo=UTC), value) for ts, value in out)


def test_steel_power_factor_pinned_stretches(sample):
    """constant, 12 h, tolerance 0: raised at the first sample 12 h after an unchanged stretch
    began, cleared at the sample that changes it (idle weekends at 100 %)."""
    expected, start, previous, active = [], None, None, False
    for ts, value in steel_power_factor():
        if previous is None or value != previous:
            if active:
                expected.append(("cleared", ts, value))
                active = False
            start = ts
        if not active and ts - start >= timedelta(hours=12):
            expected.append(("raised", ts, value))
            active = True
        previous = value
    found = [(e, ts, v) for e, ts, v, _ in events(sample, "steel_power_factor_pinned")]
    assert found == expected
    assert len(expected) == 114 and all(v == 100.0 for e, _, v in expected if e == "raised")


def test_bathroom_humidity_with_hysteresis_and_delays(sample):
    """threshold upper 70 %, hysteresis 5, on/off delay 30 min on D05's humidity, replayed in
    plain Python over the gateway file."""
    rows = sorted((utc(r["time"]), float(r["value"])) for r in gateway_rows("GW-BE-0005") if r["channel"] == "2")
    expected, state, run_kind, run_start = [], False, None, None
    for ts, value in rows:
        kind = 1 if value > 70 else (-1 if value <= 65 else 0)
        if kind != run_kind:
            run_kind, run_start = kind, ts
        if kind == 1 and not state and ts - run_start >= timedelta(minutes=30):
            expected.append(("raised", ts, value))
            state = True
        elif kind == -1 and state and ts - run_start >= timedelta(minutes=30):
            expected.append(("cleared", ts, value))
            state = False
    found = [(e, ts, v) for e, ts, v, _ in events(sample, "bathroom_humidity_high")]
    assert found == expected and len(expected) == 130


def test_the_board_in_bemp_summary(sample):
    text = warehouse_summary(sample.warehouse)
    assert "  alarms: 36 active (30 error, 6 warning); bemp alarms list --active" in text
    with duckdb.connect(str(sample.warehouse), read_only=True) as con:
        assert rules_without_variables(con, load_config(CONFIG_DIR)) == []  # every shipped rule selects something


def ev_hourly_energy():
    """The ev meter's energy per hour from its counter: the advance between two readings,
    labelled with the hour that ends at the later one (no resets in the sample)."""
    points = reach_readings()[(EV, "Energia attiva")]
    return [(a[0], b[1] - a[1]) for a, b in zip(points, points[1:])]


def test_replay_when_the_reach_counter_rule_changes(sample, tmp_path):
    """A first draft of reach_counter_stuck without ``ignore_value: 0`` raises on the ev meter's
    idle days (its energy is 0 for more than a day); the shipped rule ignores zero. Going from
    one to the other replays over all stored data: the draft's events stay, superseded."""
    stretches, start, previous = [], None, None
    for ts, energy in ev_hourly_energy():
        if previous is None or energy != previous:
            start = ts
        if start is not None and ts - start >= timedelta(days=1) and (not stretches or stretches[-1][0] != start):
            stretches.append((start, ts))
        previous = energy
    expected_raises = [raised for _, raised in stretches]
    assert len(expected_raises) == 5
    path = tmp_path / "copy.duckdb"
    shutil.copy(sample.warehouse, path)
    config = load_config(CONFIG_DIR)
    shipped = next(r for r in config.alarms.rules if r.name == "reach_counter_stuck")
    draft = shipped.model_copy(update={"ignore_value": None})
    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        assert con.execute("SELECT count(*) FROM ops.alarm_events WHERE rule = 'reach_counter_stuck'").fetchone()[0] == 0
        evaluate_all(con, config.model_copy(update={"alarms": config.alarms.model_copy(update={"rules": [draft]})}),
                     datetime.now(UTC))
        raised = con.execute("""SELECT subject, data_ts FROM ops.alarm_events WHERE rule = 'reach_counter_stuck'
                                AND event = 'raised' AND superseded_at IS NULL ORDER BY data_ts""").fetchall()
        assert raised == [(f"{EV}.active_energy", ts) for ts in expected_raises]
        evaluate_all(con, config, datetime.now(UTC))
        by_version = con.execute("""SELECT rule_version, superseded_at IS NOT NULL, count(*) FROM ops.alarm_events
                                    WHERE rule = 'reach_counter_stuck' GROUP BY ALL""").fetchall()
    assert by_version == [(rule_version(draft), True, 10)]
