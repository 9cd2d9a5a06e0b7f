"""Commissioning rules on crafted histories: numbers computed by hand."""
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from bemp_assets.domain import commissioning as rules
from bemp_assets.domain.status import coverage_matrix, export_series, ExportError, installation_status

UTC = timezone.utc
T0 = datetime(2021, 3, 1, tzinfo=UTC)  # a Monday, no DST change near it


def seed(con, variable, offsets_min, values, kind="instantaneous", interval_s=600, source="test", parameter="temperature"):
    now = datetime.now(UTC)
    con.execute("INSERT OR REPLACE INTO meta.variables VALUES (?, ?, 'site', ?, ?, NULL, NULL, ?, NULL, 'UTC', ?, ?, ?)",
                [variable, source, variable.split(".")[0], parameter, kind, interval_s, now, now])
    frame = pd.DataFrame({"variable_id": variable, "ts": [T0 + timedelta(minutes=m) for m in offsets_min],
                          "value": values, "source_file": "crafted.csv", "source_line": 0, "ingested_at": now})
    con.register("_seed", frame)
    con.execute("INSERT INTO raw.measurements SELECT * FROM _seed")
    con.unregister("_seed")


@pytest.fixture
def rules_ready(con, config):
    def _register():
        return rules.register_rules(con, config)
    return _register


def outcome(rule, stats, upper=True):
    return rules.evaluate(rule, stats, upper_bound=upper)


def test_correctness_range_and_counter_decreases(con, config, rules_ready):
    seed(con, "room.temperature", [0, 10, 20, 30], [21.0, 85.0, -40.0, 22.0])           # two outside -30..60
    seed(con, "ok.temperature", [0, 10], [20.0, 20.5])
    seed(con, "m.active_energy", [0, 10, 20, 30, 40], [100, 101, 100.5, 2, 3], kind="cumulative", parameter="active_energy")
    rules_ready()
    stats = rules.correctness_stats(con, T0, T0 + timedelta(days=1), ["room.temperature", "ok.temperature", "m.active_energy"], 0.1)
    result = outcome("correctness", stats)
    got = dict(zip(result.details["variable_id"], result.details["observed"]))
    # 101 -> 100.5 is a glitch (not a reset); 100.5 -> 2 drops below 10 %: a reset
    assert got == {"room.temperature": 2, "ok.temperature": 0, "m.active_energy": 1}
    assert not result.passed and result.failed == 2
    assert [w["variable_id"] for w in result.worst()] == ["room.temperature", "m.active_energy"]


def test_frequency_median_interval(con, config, rules_ready):
    seed(con, "slow.temperature", [0, 20, 40, 60], [20, 20, 20, 20])                   # every 20 min, expected 10
    seed(con, "fine.temperature", [0, 10, 20, 35], [20, 20, 20, 20])                   # median 10 min
    rules_ready()
    result = outcome("frequency", rules.frequency_stats(con, T0, T0 + timedelta(days=1), ["slow.temperature", "fine.temperature"]))
    got = dict(zip(result.details["variable_id"], result.details["observed"]))
    assert got == {"slow.temperature": pytest.approx(1.0), "fine.temperature": pytest.approx(0.0)}
    assert result.failed == 1 and result.worst()[0]["threshold"] == 0.5


def test_completeness_per_day_counts_from_first_reading(con, config, rules_ready):
    # 10-minute sensor: day 1 from 12:00 (first reading) fully present, day 2 has 72 of 144 samples
    day1 = list(range(12 * 60, 24 * 60, 10))
    day2 = [24 * 60 + m for m in range(0, 12 * 60, 10)]
    seed(con, "gap.temperature", day1 + day2, [20.0] * (len(day1) + len(day2)))
    seed(con, "full.temperature", list(range(0, 48 * 60, 10)), [20.0] * 288)  # source ends at day 2's end
    rules_ready()
    stats = rules.completeness_stats(con, T0, T0 + timedelta(days=2), "UTC", ["gap.temperature", "full.temperature"])
    result = outcome("completeness", stats, upper=False)
    got = {(v, str(pd.Timestamp(d).date())): o for v, d, o in zip(result.details["variable_id"], result.details["day"], result.details["observed"])}
    assert got == {("gap.temperature", "2021-03-01"): 1.0, ("gap.temperature", "2021-03-02"): 0.5,
                   ("full.temperature", "2021-03-01"): 1.0, ("full.temperature", "2021-03-02"): 1.0}
    assert result.failed == 1 and result.worst() == [{"variable_id": "gap.temperature", "day": "2021-03-02", "observed": 0.5, "threshold": 0.9}]


def test_duplicates_in_clean_and_freshness(con, config, rules_ready):
    seed(con, "a.temperature", [0, 10], [1.0, 2.0])
    con.execute("INSERT INTO clean.measurements VALUES ('a.temperature', ?, 1, NULL, NULL), ('a.temperature', ?, 1, NULL, NULL), "
                "('a.temperature', ?, 2, NULL, NULL)", [T0, T0, T0 + timedelta(minutes=10)])
    rules_ready()
    dup = outcome("duplicates", rules.duplicate_stats(con, "clean.measurements", T0, T0 + timedelta(days=1)))
    assert not dup.passed and dup.details["observed"].tolist() == [1]
    as_of = T0 + timedelta(days=3)
    fresh = outcome("freshness", rules.freshness_stats(con, as_of, ["a.temperature"]))
    assert not fresh.passed and fresh.details["observed"].tolist() == [3 * 86400 - 600]
    fresh = outcome("freshness", rules.freshness_stats(con, T0 + timedelta(days=1), ["a.temperature"]))
    assert fresh.passed


def test_status_colours_green_red_black(con, config, rules_ready):
    as_of = T0 + timedelta(days=30)
    seed(con, "gw1.temperature", [0, 29 * 1440], [20.0, 20.0])              # healthy: seen a day ago
    seed(con, "gw1.humidity", [0, 9 * 1440], [50.0, 50.0], parameter="humidity")  # stopped three weeks ago
    rules_ready()
    board = installation_status(con, as_of, expected=["gw2.co2_concentration"])
    sensors = board[board["level"] == "sensor"].set_index("variable_id")["status"].to_dict()
    devices = board[board["level"] == "device"].set_index("device")["status"].to_dict()
    assert sensors == {"gw1.temperature": "green", "gw1.humidity": "red", "gw2.co2_concentration": "black"}
    assert devices == {"gw1": "green", "gw2": "black"}  # a gateway can be green while a sensor is red
    red = board[board["variable_id"] == "gw1.humidity"].iloc[0]
    assert pd.Timestamp(red["last_seen"]) == pd.Timestamp(T0 + timedelta(days=9))


def test_heat_map_matches_hand_count(con, config):
    seed(con, "h.temperature", list(range(0, 1440, 10)) + list(range(1440, 1440 + 360, 10)), [1.0] * 180)
    matrix = coverage_matrix(con, T0, T0 + timedelta(days=3), "UTC")
    # day 1: 144 of 144, day 2: 36 of 144, day 3: none
    assert matrix.loc["h.temperature"].tolist() == [1.0, 0.25, 0.0]
    assert [str(d) for d in matrix.columns] == ["2021-03-01", "2021-03-02", "2021-03-03"]


def test_export_round_trip_and_errors(con, tmp_path):
    seed(con, "e.temperature", [0, 10, 20], [20.5, 21.25, 22.0])
    out = tmp_path / "e.csv"
    assert export_series(con, "e.temperature", T0, T0 + timedelta(days=1), "raw", out) == 3
    back = pd.read_csv(out, parse_dates=["ts"])
    assert back["value"].tolist() == [20.5, 21.25, 22.0]
    assert back["ts"].tolist() == [pd.Timestamp(T0 + timedelta(minutes=m)) for m in (0, 10, 20)]
    with pytest.raises(ExportError, match=r"unknown variable 'e.temp'; did you mean \['e.temperature'\]"):
        export_series(con, "e.temp", T0, T0 + timedelta(days=1), "raw", out)
    with pytest.raises(ExportError, match="no raw rows between .* its raw data runs"):
        export_series(con, "e.temperature", T0 + timedelta(days=5), T0 + timedelta(days=6), "raw", out)
    with pytest.raises(ExportError, match="unknown layer 'gold'"):
        export_series(con, "e.temperature", T0, T0 + timedelta(days=1), "gold", out)
