"""clean.measurements is a view: filtered rows are stored, an unfiltered variable's raw readings
are shown over the spans clean has processed. The spans merge and split as windows are cleaned
and chains come and go, every reading shows exactly once, a re-run writes nothing, and a
warehouse whose clean was a table keeps its rows. Expected values come from the CSV lines
written here (value = minute + 0.5), never from the code under test."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from bemp_assets.domain.chains import FilterChain
from bemp_assets.domain.cleaning import rebuild_clean
from bemp_assets.domain.parsing import partition_range
from bemp_assets.domain.raw_ingest import ingest_files
from bemp_assets.domain.warehouse import prepare

from .conftest import write_csv

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
HEADER = "Dispositivo,Parametro,Data,Valore\n"
POWER = "d1.active_power"
# site days 1, 2 and 3 November 2016 (Europe/Rome, UTC+1)
DAY = [datetime(2016, 10, 31, 23, tzinfo=UTC) + timedelta(days=i) for i in range(4)]
CLIP = FilterChain.model_validate({"name": "cap", "select": {"parameter": "active_power"},
                                   "steps": [{"clip": {"min": 0, "max": 2}}]})


def readings(day: int) -> list[str]:
    """Six power readings of d1 at 10:00 .. 10:05 local time on ``day`` November, value = minute + 0.5."""
    return [f'd1,Potenza attiva,10:{m:02d}:00 {day:02d}/11/2016,"{m},5"' for m in range(6)]


@pytest.fixture
def three_days(con, config, tmp_path):
    only_day_1 = [line.replace("d1,", "d2,") for line in readings(1)]
    path = write_csv(tmp_path / "d1.csv", HEADER + "\n".join(readings(1) + readings(2) + readings(3) + only_day_1) + "\n")
    ingest_files(con, [path], config.source("reach_meters"), config, (DAY[0], DAY[3]), NOW,
                 partition_range(config.site, NOW))
    return con


def spans(con, variable: str = POWER) -> list[tuple[datetime, datetime]]:
    return [(s, e) for s, e in con.execute("SELECT start_ts, end_ts FROM clean.passthrough WHERE variable_id = ? "
                                          "ORDER BY start_ts", [variable]).fetchall()]


def shown(con) -> list[tuple[int, int, float]]:
    """(day, minute, value) of every clean reading of d1, in time order (all at 10:mm local)."""
    rows = con.execute("SELECT ts, value FROM clean.measurements WHERE variable_id = ? ORDER BY ts", [POWER]).fetchall()
    assert all(ts.hour == 9 for ts, _ in rows)  # 10:mm in Rome is 09:mm UTC in November
    return [((ts - DAY[0]).days + 1, ts.minute, value) for ts, value in rows]


def clean_day(con, day: int, chains: list[FilterChain]):
    return rebuild_clean(con, DAY[day - 1], DAY[day], chains, NOW)


def test_spans_merge_as_windows_are_cleaned_in_any_order(three_days):
    con = three_days
    assert shown(con) == []  # nothing is clean before clean ran
    first = clean_day(con, 1, [])
    assert (first.rows, first.passed_through, first.inserted) == (12, 12, 0)
    assert first.changed_variables == {POWER, "d2.active_power"}
    clean_day(con, 3, [])
    assert spans(con) == [(DAY[0], DAY[1]), (DAY[2], DAY[3])]
    assert [d for d, _, _ in shown(con)] == [1] * 6 + [3] * 6
    clean_day(con, 2, [])
    assert spans(con) == [(DAY[0], DAY[3])]  # three touching spans are one
    assert spans(con, "d2.active_power") == [(DAY[0], DAY[1])]  # no span where it has no reading
    assert shown(con) == [(d, m, m + 0.5) for d in (1, 2, 3) for m in range(6)]
    assert con.execute("SELECT count(*) FROM clean.stored").fetchone()[0] == 0  # nothing copied

    again = clean_day(con, 2, [])
    assert (again.rows, again.changed_variables, again.inserted, again.deleted) == (6, set(), 0, 0)
    assert spans(con) == [(DAY[0], DAY[3])]


def test_a_chain_on_one_day_splits_the_span_and_its_removal_joins_it(three_days):
    con = three_days
    for day in (1, 2, 3):
        clean_day(con, day, [])
    capped = clean_day(con, 2, [CLIP])
    assert (capped.changed_variables, capped.inserted, capped.passed_through) == ({POWER}, 6, 0)
    assert spans(con) == [(DAY[0], DAY[1]), (DAY[2], DAY[3])]
    expected = [(d, m, min(m + 0.5, 2.0) if d == 2 else m + 0.5) for d in (1, 2, 3) for m in range(6)]
    assert shown(con) == expected  # day 2 clipped at 2, days 1 and 3 as read, each reading once
    assert con.execute("SELECT count(DISTINCT chain), min(chain) FROM clean.measurements "
                       "WHERE ts >= ? AND ts < ?", [DAY[1], DAY[2]]).fetchone() == (1, "cap")

    same = clean_day(con, 2, [CLIP])
    assert (same.changed_variables, same.inserted, same.deleted) == (set(), 0, 0)

    uncapped = clean_day(con, 2, [])
    assert (uncapped.changed_variables, uncapped.deleted, uncapped.passed_through) == ({POWER}, 6, 6)
    assert spans(con) == [(DAY[0], DAY[3])]
    assert shown(con) == [(d, m, m + 0.5) for d in (1, 2, 3) for m in range(6)]


def test_a_chain_over_a_window_inside_a_span_keeps_both_ends(three_days):
    con = three_days
    for day in (1, 2, 3):
        clean_day(con, day, [])
    noon = DAY[1] + timedelta(hours=10, minutes=3)  # 10:03 local on day 2: a window cut inside the span
    rebuild_clean(con, DAY[1], noon, [CLIP], NOW)
    assert spans(con) == [(DAY[0], DAY[1]), (noon, DAY[3])]
    expected = [(d, m, min(m + 0.5, 2.0) if d == 2 and m < 3 else m + 0.5) for d in (1, 2, 3) for m in range(6)]
    assert shown(con) == expected


def test_a_clean_table_from_before_the_view_keeps_its_rows(tmp_path, config):
    """An old warehouse's clean.measurements held copies of unfiltered readings: prepare()
    renames it clean.stored, the view shows its rows, and cleaning a window again replaces that
    window's copies by a span, leaving the other windows' copies as they were."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as old:
        old.execute("CREATE SCHEMA clean; CREATE TABLE clean.measurements (variable_id VARCHAR NOT NULL, "
                    "ts TIMESTAMPTZ NOT NULL, value DOUBLE NOT NULL, chain VARCHAR, chain_version VARCHAR)")
        for day in (1, 2):
            for m in range(6):
                old.execute("INSERT INTO clean.measurements VALUES (?, ?, ?, NULL, NULL)",
                            [POWER, DAY[day - 1] + timedelta(hours=10, minutes=m), m + 0.5])
    con = prepare(duckdb.connect(str(path)))
    try:
        kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables "
                                 "WHERE table_schema = 'clean'").fetchall())
        assert kinds == {"measurements": "VIEW", "stored": "BASE TABLE", "passthrough": "BASE TABLE"}
        assert shown(con) == [(d, m, m + 0.5) for d in (1, 2) for m in range(6)]

        csv = write_csv(tmp_path / "d1.csv", HEADER + "\n".join(readings(1) + readings(2)) + "\n")
        ingest_files(con, [csv], config.source("reach_meters"), config, (DAY[0], DAY[2]), NOW,
                     partition_range(config.site, NOW))
        report = clean_day(con, 2, [])
        assert (report.deleted, report.passed_through) == (6, 6)
        assert shown(con) == [(d, m, m + 0.5) for d in (1, 2) for m in range(6)]  # once each
        stored_days = con.execute("SELECT DISTINCT ts::DATE FROM clean.stored").fetchall()
        assert stored_days == [(datetime(2016, 11, 1).date(),)]  # day 1's copies untouched
    finally:
        con.close()
