"""Commissioning rules on crafted histories: numbers computed by hand."""
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from bemp_assets.checks import Judging, judge
from bemp_assets.domain import commissioning as rules
from bemp_assets.domain.status import (ExportError, board_time, coverage_matrix, current_board, export_series,
                                       installation_status, source_heatmaps)

UTC = timezone.utc
T0 = datetime(2021, 3, 1, tzinfo=UTC)  # a Monday, no DST change near it


def seed(con, variable, offsets_min, values, kind="instantaneous", interval_s=600, source="test", parameter="temperature"):
    now = datetime.now(UTC)
    # meta.variables has no key to replace on (portable DDL): delete, then insert
    con.execute("DELETE FROM meta.variables WHERE variable_id = ?", [variable])
    con.execute("INSERT INTO meta.variables VALUES (?, ?, 'site', ?, ?, NULL, NULL, ?, NULL, 'UTC', ?, ?, ?)",
                [variable, source, variable.split(".")[0], parameter, kind, interval_s, now, now])
    frame = pd.DataFrame({"variable_id": variable, "ts": [T0 + timedelta(minutes=m) for m in offsets_min],
                          "value": values, "source_file": "crafted.csv", "source_line": 0, "ingested_at": now})
    con.register("_seed", frame)
    con.execute("INSERT INTO raw.measurements SELECT * FROM _seed")
    con.unregister("_seed")


@pytest.fixture
def rules_ready(con, config):
    """Call once the variables are seeded: their thresholds (commissioning.rule_thresholds)."""
    def thresholds():
        return rules.rule_thresholds(con, config)
    return thresholds


def outcome(rule, stats, upper=True):
    return rules.evaluate(rule, stats, upper_bound=upper)


def test_correctness_range_and_counter_decreases(con, config, rules_ready):
    seed(con, "room.temperature", [0, 10, 20, 30], [21.0, 85.0, -40.0, 22.0])           # two outside -30..60
    seed(con, "ok.temperature", [0, 10], [20.0, 20.5])
    seed(con, "m.active_energy", [0, 10, 20, 30, 40], [100, 101, 100.5, 2, 3], kind="cumulative", parameter="active_energy")
    thresholds = rules_ready()
    stats = rules.correctness_stats(con, thresholds, T0, T0 + timedelta(days=1), "UTC", ["room.temperature", "ok.temperature", "m.active_energy"], 0.1)
    result = outcome("correctness", stats)
    got = dict(zip(result.details["variable_id"], result.details["observed"]))
    # 101 -> 100.5 is a glitch (not a reset); 100.5 -> 2 drops below 10 %: a reset
    assert got == {"room.temperature": 2, "ok.temperature": 0, "m.active_energy": 1}
    assert not result.passed and result.failed == 2
    assert [w["variable_id"] for w in result.worst()] == ["room.temperature", "m.active_energy"]


def test_frequency_median_interval(con, config, rules_ready):
    seed(con, "slow.temperature", [0, 20, 40, 60], [20, 20, 20, 20])                   # every 20 min, expected 10
    seed(con, "fine.temperature", [0, 10, 20, 35], [20, 20, 20, 20])                   # median 10 min
    thresholds = rules_ready()
    result = outcome("frequency", rules.frequency_stats(con, thresholds, T0, T0 + timedelta(days=1), "UTC", ["slow.temperature", "fine.temperature"]))
    got = dict(zip(result.details["variable_id"], result.details["observed"]))
    assert got == {"slow.temperature": pytest.approx(1.0), "fine.temperature": pytest.approx(0.0)}
    assert result.failed == 1 and result.worst()[0]["threshold"] == 0.5


def test_completeness_per_day_counts_from_first_reading(con, config, rules_ready):
    # 10-minute sensor: day 1 from 12:00 (first reading) fully present, day 2 has 72 of 144 samples
    day1 = list(range(12 * 60, 24 * 60, 10))
    day2 = [24 * 60 + m for m in range(0, 12 * 60, 10)]
    seed(con, "gap.temperature", day1 + day2, [20.0] * (len(day1) + len(day2)))
    seed(con, "full.temperature", list(range(0, 48 * 60, 10)), [20.0] * 288)  # source ends at day 2's end
    thresholds = rules_ready()
    life = rules.life_of(con, "UTC")
    stats = rules.completeness_stats(con, thresholds, life, T0, T0 + timedelta(days=2), "UTC", ["gap.temperature", "full.temperature"])
    result = outcome("completeness", stats, upper=False)
    got = {(v, str(pd.Timestamp(d).date())): o for v, d, o in zip(result.details["variable_id"], result.details["day"], result.details["observed"])}
    assert got == {("gap.temperature", "2021-03-01"): 1.0, ("gap.temperature", "2021-03-02"): 0.5,
                   ("full.temperature", "2021-03-01"): 1.0, ("full.temperature", "2021-03-02"): 1.0}
    assert result.failed == 1 and result.worst() == [{"variable_id": "gap.temperature", "variable": "gap.temperature", "day": "2021-03-02",
                                                      "observed": 0.5, "threshold": 0.9, "verdict": "fail"}]


def test_duplicates_in_clean_per_day(con, config, rules_ready):
    seed(con, "a.temperature", [0, 10], [1.0, 2.0])
    con.execute("INSERT INTO clean.stored VALUES ('a.temperature', ?, 1, NULL, NULL), ('a.temperature', ?, 1, NULL, NULL), "
                "('a.temperature', ?, 2, NULL, NULL)", [T0, T0, T0 + timedelta(days=1)])
    thresholds = rules_ready()
    dup = outcome("duplicates", rules.duplicate_stats(con, "clean.measurements", T0, T0 + timedelta(days=2), "UTC"))
    got = {str(pd.Timestamp(d).date()): o for d, o in zip(dup.details["day"], dup.details["observed"])}
    assert not dup.passed and got == {"2021-03-01": 1, "2021-03-02": 0}


def test_freshness_per_day_of_life(con, config, rules_ready):
    """a stops after 10 minutes on day 1, b of the same source reports on day 4 only: a is
    judged at each day's end (at as_of on day 4), b only on day 4, nothing after day 4."""
    seed(con, "a.temperature", [0, 10], [1.0, 2.0])
    seed(con, "b.temperature", [(3 * 24 + 6) * 60], [1.0])
    thresholds = rules_ready()
    life = rules.life_of(con, "UTC")
    as_of = T0 + timedelta(days=3, hours=12)
    stats = rules.freshness_stats(con, thresholds, life, T0 - timedelta(days=30), T0 + timedelta(days=30), "UTC", as_of,
                                  ["a.temperature", "b.temperature"])
    fresh = outcome("freshness", stats)
    got = {(v, str(pd.Timestamp(d).date())): (o, p) for v, d, o, p in
           zip(fresh.details["variable_id"], fresh.details["day"], fresh.details["observed"], fresh.details["passed"])}
    day, limit = 86400, 2 * 86400
    assert got == {("a.temperature", "2021-03-01"): (day - 600, True), ("a.temperature", "2021-03-02"): (2 * day - 600, True),
                   ("a.temperature", "2021-03-03"): (3 * day - 600, False), ("a.temperature", "2021-03-04"): (3.5 * day - 600, False),
                   ("b.temperature", "2021-03-04"): (6 * 3600, True)}
    assert set(fresh.details["threshold"]) == {limit}
    words = rules.day_verdicts(fresh, {"a.temperature": "room a"})
    assert words[date(2021, 3, 3)].description == "1 of 1 variables fail: room a silent for 2 d 23 h (limit 2 d)"
    assert not words[date(2021, 3, 3)].passed and not words[date(2021, 3, 4)].passed and words[date(2021, 3, 2)].passed


def test_status_colours_green_red_black(con, config, rules_ready):
    as_of = T0 + timedelta(days=30)
    seed(con, "gw1.temperature", [0, 29 * 1440], [20.0, 20.0])              # healthy: seen a day ago
    seed(con, "gw1.humidity", [0, 9 * 1440], [50.0, 50.0], parameter="humidity")  # stopped three weeks ago
    thresholds = rules_ready()
    board = installation_status(con, thresholds, as_of, expected=["gw2.co2_concentration"])
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


DAY = 24 * 60  # minutes


def every_10_min(days):
    """Offsets (minutes from T0) of a 10-minute sensor reporting all day on each of ``days`` (0 = T0's day)."""
    return [d * DAY + m for d in days for m in range(0, DAY, 10)]


def completeness_by_day(con, thresholds, start, end, variables, commissioned=None):
    life = rules.life_of(con, "UTC", commissioned)
    result = outcome("completeness", rules.completeness_stats(con, thresholds, life, start, end, "UTC", variables), upper=False)
    return result, {(v, str(pd.Timestamp(d).date())): (round(o, 4), verdict) for v, d, o, verdict in
                    zip(result.details["variable_id"], result.details["day"], result.details["observed"], result.details["verdict"])}


def test_completeness_over_years_judges_only_the_life(con, config, rules_ready):
    """A range from 2016 to 2026 around a sensor that lived two days: two verdicts, both pass,
    and only those two rows are recorded."""
    seed(con, "gw1.temperature", every_10_min([0, 1]), [20.0] * 288)
    thresholds = rules_ready()
    start, end = datetime(2016, 1, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC)
    result, got = completeness_by_day(con, thresholds, start, end, ["gw1.temperature"])
    assert got == {("gw1.temperature", "2021-03-01"): (1.0, "pass"), ("gw1.temperature", "2021-03-02"): (1.0, "pass")}
    assert result.passed and result.checked == 2
    assert rules.record(con, [result], "agg/daily", "run-1", T0) == 2
    assert con.execute("SELECT partition, day::VARCHAR, verdict FROM ops.commissioning_results ORDER BY day").fetchall() == [
        ("2021-03-01", "2021-03-01", "pass"), ("2021-03-02", "2021-03-02", "pass")]


def test_gap_inside_life_fails_and_a_silent_device_is_a_no_data_day(con, config, rules_ready):
    """Days 0..4 of one source. gw1 has two sensors: humidity misses day 2 while temperature
    reports (a fault: fail). gw2 sends nothing at all on day 2 (no data: its own verdict)."""
    seed(con, "gw1.temperature", every_10_min(range(5)), [20.0] * 720)
    seed(con, "gw1.humidity", every_10_min([0, 1, 3, 4]), [50.0] * 576, parameter="humidity")
    seed(con, "gw2.temperature", every_10_min([0, 1, 3, 4]), [20.0] * 576)
    thresholds = rules_ready()
    result, got = completeness_by_day(con, thresholds, T0, T0 + timedelta(days=5), ["gw1.temperature", "gw1.humidity", "gw2.temperature"])
    assert got[("gw1.humidity", "2021-03-03")] == (0.0, "fail")
    assert got[("gw2.temperature", "2021-03-03")] == (0.0, "no_data")
    assert {k: v for k, v in got.items() if k[1] != "2021-03-03"} == {
        (v, f"2021-03-0{d}"): (1.0, "pass") for v in ("gw1.temperature", "gw1.humidity", "gw2.temperature") for d in (1, 2, 4, 5)}
    assert got[("gw1.temperature", "2021-03-03")] == (1.0, "pass")
    days = rules.day_verdicts(result, {})
    assert days[date(2021, 3, 3)].blocking and days[date(2021, 3, 3)].no_data == 1 and days[date(2021, 3, 3)].failed == 1
    assert days[date(2021, 3, 3)].description.startswith("1 of 3 variables fail: gw1.humidity has 0% of its expected readings (0 of 144")


def test_no_data_day_alone_is_not_blocking(con, config, rules_ready):
    seed(con, "gw2.temperature", every_10_min([0, 2]), [20.0] * 288)
    thresholds = rules_ready()
    result, got = completeness_by_day(con, thresholds, T0, T0 + timedelta(days=3), ["gw2.temperature"])
    assert got[("gw2.temperature", "2021-03-02")] == (0.0, "no_data")
    day = rules.day_verdicts(result, {})[date(2021, 3, 2)]
    assert (day.passed, day.blocking, day.no_data) == (False, False, 1)
    assert day.description == "no data at all from gw2 (1 of 1 variables): a no-data day, not blocking"


def test_registered_commissioning_date_starts_the_life(con, config, rules_ready):
    """Registered two days before its first reading: those two days are judged (no data)."""
    seed(con, "gw3.temperature", every_10_min([0]), [20.0] * 144)
    thresholds = rules_ready()
    start = T0 - timedelta(days=10)
    _, got = completeness_by_day(con, thresholds, start, T0 + timedelta(days=1), ["gw3.temperature"],
                                 commissioned={"gw3.temperature": date(2021, 2, 27)})
    assert got == {("gw3.temperature", "2021-02-27"): (0.0, "no_data"), ("gw3.temperature", "2021-02-28"): (0.0, "no_data"),
                   ("gw3.temperature", "2021-03-01"): (1.0, "pass")}
    assert rules.commissioning_dates(config)["GW-BE-0010.ch4_co2"] == date(2016, 5, 1)


def test_plain_words(con):
    assert [rules.plain_duration(s) for s in (45, 600, 3660, 172800, 273600, 3 * 86400 - 600)] == [
        "45 s", "10 min", "1 h 1 min", "2 d", "3 d 4 h", "2 d 23 h"]
    seed(con, "7f6eca13160d9ddd2584.active_energy", [0], [1.0], parameter="active_energy")
    seed(con, "GW-BE-0001.ch1_temperature", [0], [1.0])
    assert rules.variable_labels(con) == {"7f6eca13160d9ddd2584.active_energy": "meter 7f6eca13 active_energy",
                                          "GW-BE-0001.ch1_temperature": "GW-BE-0001.ch1_temperature"}


def test_board_time_historical_versus_live(con, config):
    seed(con, "gw1.temperature", [0, 10], [20.0, 20.0])
    newest = T0 + timedelta(minutes=10)
    live = board_time(con, newest + timedelta(days=1), 2 * 86400)
    assert (live.as_of, live.basis, live.historical) == (newest + timedelta(days=1), "now", False)
    old = board_time(con, datetime(2026, 11, 25, tzinfo=UTC), 2 * 86400)
    assert (old.as_of, old.historical) == (newest, True)
    assert old.header() == "as of 2021-03-01 00:10 UTC (newest data; data is historical: nothing reported in the last 2 d)"
    asked = board_time(con, datetime(2026, 11, 25, tzinfo=UTC), 2 * 86400, given=T0)
    assert asked.as_of == T0 and asked.header() == "as of 2021-03-01 00:00 UTC (as asked)"
    when, board = current_board(con, config, datetime(2026, 11, 25, tzinfo=UTC))
    sensor = board[board["variable_id"] == "gw1.temperature"].iloc[0]
    assert when.historical and sensor["status"] == "green"  # judged when its data ended, not red against 2026


def test_heat_maps_per_source_over_their_own_life(con, tmp_path):
    import struct

    seed(con, "a1.temperature", every_10_min([0, 1]), [20.0] * 288, source="one")
    seed(con, "b1.temperature", every_10_min([40]) + [41 * DAY], [20.0] * 145, source="two")
    maps = {source: (matrix, path) for source, matrix, path in source_heatmaps(con, "UTC", tmp_path)}
    assert [str(d) for d in maps["one"][0].columns] == ["2021-03-01", "2021-03-02"]
    assert [str(d) for d in maps["two"][0].columns] == ["2021-04-10", "2021-04-11"]
    assert maps["two"][0].loc["b1.temperature"].tolist() == [1.0, 1 / 144]
    for _, path in maps.values():
        width, height = struct.unpack(">II", path.read_bytes()[16:24])  # PNG IHDR
        assert 300 <= width <= 900 and height < 400


def test_long_silence_is_out_of_service_short_one_is_no_data(con, config, rules_ready):
    """gw1 reports days 0-1 (day 1 until noon, when the whole source stops), is silent for 40
    days, reports days 42-43, is silent 3 days, reports day 47. The 40 days are out of service
    (not judged, nothing recorded); the 3 days are no-data days; the half day before the long
    silence is complete (its source ended there)."""
    half_day = [DAY + m for m in range(0, 12 * 60, 10)]
    seed(con, "gw1.temperature", every_10_min([0]) + half_day + every_10_min([42, 43, 47]), [20.0] * (144 + 72 + 432))
    thresholds = rules_ready()
    assert rules.OUT_OF_SERVICE_DAYS == 30
    result, got = completeness_by_day(con, thresholds, T0 - timedelta(days=400), T0 + timedelta(days=400), ["gw1.temperature"])
    first = date(2021, 3, 1)
    day = lambda n: str(first + timedelta(days=n))  # noqa: E731
    assert got == {("gw1.temperature", day(n)): (1.0, "pass") for n in (0, 1, 42, 43, 47)} | {
        ("gw1.temperature", day(n)): (0.0, "no_data") for n in (44, 45, 46)}
    assert result.checked == 8


def test_heat_map_leaves_out_stretches_a_source_was_out_of_service():
    from datetime import date, timedelta

    import pandas as pd

    from bemp_assets.domain.status import drop_out_of_service

    days = [date(2016, 1, 1) + timedelta(days=i) for i in range(100)]
    matrix = pd.DataFrame(0.0, index=["a", "b"], columns=days)
    matrix.loc["a", days[:10]] = 1.0          # 10 days in service
    matrix.loc["b", days[10:12]] = 0.5        # then 2 days of one variable only
    matrix.loc["a", days[12:20]] = 0.0        # 8 silent days: a real outage, kept
    matrix.loc["b", days[20:25]] = 1.0
    matrix.loc["a", days[70:]] = 1.0          # 45 silent days (25..69): out of service, left out
    kept, gaps = drop_out_of_service(matrix)
    assert gaps == [(days[25], days[69])]
    assert list(kept.columns) == days[:25] + days[70:]


def test_rules_judged_a_chunk_at_a_time_equal_one_pass(con, config, rules_ready):
    """Ten days judged in chunks of 3 (as a year is judged 31 days at a time) give the rows one
    pass gives, including at the cuts: a counter glitch at the first reading of a chunk (compared
    with the previous chunk's last reading), a step spanning a cut, and freshness of a silent
    day after a cut (its newest reading lies in the chunk before)."""
    hours = [h * 60 for h in range(10 * 24)]
    silent = set(range(5 * 24, 7 * 24))  # days 6 and 7: nothing
    seed(con, "m.active_energy", [m for m in hours if m // 60 not in silent],
         [1000.0 + i - (5 if m == 3 * 24 * 60 else 0) for i, m in enumerate(m for m in hours if m // 60 not in silent)],
         kind="cumulative", interval_s=3600, parameter="active_energy")
    seed(con, "room.temperature", [m for m in hours if not 71 <= m // 60 <= 73], [20.0] * (len(hours) - 3),
         interval_s=3600)
    # a day before the run, a higher counter value: one pass over the run never compares with it
    con.execute("INSERT INTO raw.measurements VALUES ('m.active_energy', ?, 5000.0, 'crafted.csv', 0, ?)",
                [T0 - timedelta(days=1), T0])
    thresholds = rules_ready()
    start, end, variables = T0, T0 + timedelta(days=10), ["m.active_energy", "room.temperature"]
    assert [c[0].day for c in rules.day_chunks(start, end, "UTC", days=3)] == [1, 4, 7, 10]
    life = rules.life_of(con, "UTC")

    def judged(days):
        judging = Judging(thresholds, variables, "UTC", end, 0.1, life, chunk_days=days)
        names = ["correctness", "frequency", "freshness", "completeness"]
        return {outcome.rule: outcome.details for outcome in judge(con, judging, names, start, end)}

    chunked, whole = judged(3), judged(1000)
    for rule in whole:
        pd.testing.assert_frame_equal(chunked[rule], whole[rule], check_dtype=False)
    correctness = whole["correctness"].set_index(["variable_id", "day"])["observed"]
    # the counter drops by 4 at 2021-03-04 00:00, the first reading of the second chunk
    assert correctness[("m.active_energy", pd.Timestamp("2021-03-04"))] == 1
    assert correctness.sum() == 1
    frequency = whole["frequency"].set_index(["variable_id", "day"])["median_interval_s"]
    # 71:00 -> 74:00 crosses the cut at 72:00: the day of 74:00 keeps hourly steps and one of 3 h
    assert frequency[("room.temperature", pd.Timestamp("2021-03-04"))] == 3600
    fresh = whole["freshness"].set_index(["variable_id", "day"])["observed"]
    # day 7 (after the cut at day 7 00:00) is silent: its newest reading is day 5's 23:00
    assert fresh[("m.active_energy", pd.Timestamp("2021-03-07"))] == (2 * 24 + 1) * 3600


def test_life_registered_around_the_window_judges_as_the_whole_history(con, config, rules_ready):
    """life_of(window=...) groups only the readings within OUT_OF_SERVICE_DAYS + 2 days of
    the window by device and day; the days judged, their openings and closings and their
    statistics equal those from the whole history, for windows at a stretch out of service."""
    hours = lambda first, last: [h * 60 for h in range(first * 24, (last + 1) * 24)]  # noqa: E731 - days first..last
    away = hours(0, 9) + hours(50, 59)  # silent on days 10..49 (40 > OUT_OF_SERVICE_DAYS): out of service
    seed(con, "away.temperature", away, [20.0] * len(away), interval_s=3600)
    seed(con, "steady.temperature", hours(0, 59), [20.0] * 60 * 24, interval_s=3600)
    brief = hours(0, 40) + hours(48, 59)  # silent on days 41..47 only: in service, those days judged
    seed(con, "brief.temperature", brief, [20.0] * len(brief), interval_s=3600)
    thresholds = rules_ready()
    variables = ["away.temperature", "steady.temperature", "brief.temperature"]

    def judged(start_day, end_day, windowed):
        start, end = T0 + timedelta(days=start_day), T0 + timedelta(days=end_day)
        life = rules.life_of(con, "UTC", window=(start, end) if windowed else None,
                             variables=variables if windowed else None)
        days = life.device_days.num_rows
        return (days, rules.completeness_stats(con, thresholds, life, start, end, "UTC", variables),
                rules.freshness_stats(con, thresholds, life, start, end, "UTC", T0 + timedelta(days=60), variables))

    for start_day, end_day in ((5, 12), (45, 55), (0, 60)):
        whole, around = judged(start_day, end_day, False), judged(start_day, end_day, True)
        for full, part in zip(whole[1:], around[1:]):
            pd.testing.assert_frame_equal(full, part)
        if (start_day, end_day) == (45, 55):
            assert around[0] < whole[0]  # fewer device-days grouped (only 13..57 of 0..59)
            away_days = around[1].loc[around[1]["variable_id"] == "away.temperature", "day"]
            assert [pd.Timestamp(d).day for d in away_days] == [20, 21, 22, 23, 24]  # days 50..54 (March 1 + n)
            brief_days = around[1].loc[around[1]["variable_id"] == "brief.temperature"]
            assert len(brief_days) == 10 and (brief_days["observed"] == 0).sum() == 3  # days 45..47 empty


def test_a_reading_just_before_1970_counts_on_its_own_day(con, config, rules_ready):
    """Local days come from a lookup by UTC quarter hour: 23:50 on 31 Dec 1969 is in the quarter
    from 23:45 (floored), not in the one from 00:00 (DuckDB's // truncates toward zero)."""
    seed(con, "old.temperature", [0, 10], [90.0, 20.0])  # 90 is outside -30..60
    con.execute("UPDATE raw.measurements SET ts = ts - (TIMESTAMPTZ '2021-03-01 00:00:00+00' - "
                "TIMESTAMPTZ '1969-12-31 23:50:00+00') WHERE variable_id = 'old.temperature'")
    start = datetime(1969, 12, 31, tzinfo=UTC)
    stats = rules.correctness_stats(con, rules_ready(), start, start + timedelta(days=2), "UTC", ["old.temperature"], 0.1)
    assert [(str(d)[:10], o, n) for d, o, n in zip(stats["day"], stats["observed"], stats["n"])] == [("1969-12-31", 1, 1), ("1970-01-01", 0, 1)]
