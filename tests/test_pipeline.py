"""End to end through a real Dagster instance and a real DuckDB file.

Expected values are computed here from the CSV files with the csv module and plain Python,
independently of the project's DuckDB SQL.
"""
import csv
import os
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, instance_for_test

from bemp_assets.cli import run, seed_sample

from .conftest import REAL, SAMPLE, make_settings, write_csv

UTC, ROME, SEOUL = timezone.utc, ZoneInfo("Europe/Rome"), ZoneInfo("Asia/Seoul")
GRID = "7f6eca13160d9ddd2584"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("home"))
    seed_sample(settings)
    with instance_for_test() as instance:
        assert run(settings, "2016-10-22", "2016-11-12", None, instance=instance) == 0
        assert run(settings, "2017-12-31", "2018-12-31", None, instance=instance) == 0
        yield settings, instance


def query(settings, sql, params=None):
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def steel_records():
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def opsd_counter(column):
    with open(REAL / "opsd_household_data_60min_DE_KN_residential4_2017extract.csv") as handle:
        return {datetime.strptime(r["utc_timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC): float(r[column])
                for r in csv.DictReader(handle) if r[column]}


def test_steel_year_total_energy(pipeline):
    settings, _ = pipeline
    expected = sum(float(r["Usage_kWh"]) for r in steel_records())
    var = "daewoo_gwangyang.active_energy"
    clean = query(settings, "SELECT sum(value), count(*) FROM clean.measurements WHERE variable_id = ?", [var])[0]
    hourly = query(settings, "SELECT sum(sum), sum(n) FROM agg.hourly WHERE variable_id = ?", [var])[0]
    assert clean[0] == pytest.approx(expected, rel=1e-9) and clean[1] == 35040
    assert hourly[0] == pytest.approx(expected, rel=1e-9) and hourly[1] == 35040


def test_steel_hourly_mean_of_power_factor(pipeline):
    settings, _ = pipeline
    # hour 10:00-11:00 KST on 15 March 2018 holds the intervals stamped (end) 10:15 .. 11:00
    stamps = {"15/03/2018 10:15", "15/03/2018 10:30", "15/03/2018 10:45", "15/03/2018 11:00"}
    values = [float(r["Lagging_Current_Power_Factor"]) for r in steel_records() if r["date"] in stamps]
    assert len(values) == 4
    hour = datetime(2018, 3, 15, 10, tzinfo=SEOUL).astimezone(UTC)
    mean, lo, hi, total, n, coverage = query(
        settings, "SELECT mean, min, max, sum, n, coverage FROM agg.hourly WHERE variable_id = ? AND hour = ?",
        ["daewoo_gwangyang.power_factor_lagging", hour])[0]
    assert mean == pytest.approx(sum(values) / 4) and (lo, hi) == (min(values), max(values))
    assert total is None and n == 4 and coverage == 1.0


@pytest.mark.parametrize("day", ["2016-10-25", "2016-10-30", "2016-11-01"])
def test_deaccumulated_day_equals_counter_difference(pipeline, day):
    """2016-10-30 has 25 hours (autumn DST); 2016-11-01 is in both overlapping exports."""
    settings, _ = pipeline
    counter = opsd_counter("DE_KN_residential4_grid_import")
    start = datetime.fromisoformat(day).replace(tzinfo=ROME)
    end = (start + timedelta(days=1, hours=2)).replace(hour=0)
    expected = counter[end.astimezone(UTC)] - counter[start.astimezone(UTC)]
    got, hours = query(settings, "SELECT sum(value), count(*) FROM clean.measurements WHERE variable_id = ? AND ts >= ? AND ts < ?",
                       [f"{GRID}.active_energy", start, end])[0]
    assert got == pytest.approx(expected, abs=1e-9)
    assert hours == (25 if day == "2016-10-30" else 24)


@pytest.mark.parametrize("day, samples", [("2018-03-25", 92), ("2018-10-28", 100), ("2018-06-01", 96)])
def test_daily_coverage_counts_the_local_day_length(pipeline, day, samples):
    """Rome days of 23, 25 and 24 hours, every 15-minute interval present: coverage 1."""
    settings, _ = pipeline
    n, coverage = query(settings, "SELECT n, coverage FROM agg.daily WHERE variable_id = 'daewoo_gwangyang.active_energy' AND day = ?",
                        [day])[0]
    assert (n, coverage) == (samples, 1.0)


def test_layers_metadata_and_no_duplicates(pipeline):
    settings, instance = pipeline
    assert query(settings, "SELECT count(*) - count(DISTINCT (variable_id, ts)) FROM clean.measurements")[0][0] == 0
    # the two REACH exports overlap on 2016-11-01: stored once
    overlap = query(settings, "SELECT count(*) FROM raw.measurements WHERE variable_id = ? AND ts >= '2016-10-31 23:00:00Z' AND ts < '2016-11-01 23:00:00Z'",
                    [f"{GRID}.active_energy"])[0][0]
    assert overlap == 24
    assert query(settings, "SELECT count(*) FROM raw.rejects")[0][0] == 0
    event = instance.get_latest_materialization_event(AssetKey(["agg", "hourly"]))
    metadata = event.asset_materialization.metadata
    assert metadata["dagster/row_count"].value > 0
    assert [c.name for c in metadata["dagster/column_schema"].schema.columns][:3] == ["variable_id", "hour", "mean"]
    assert "| variable_id" in metadata["preview"].value


def test_rerun_is_idempotent_and_revision_is_logged(pipeline):
    settings, instance = pipeline
    tables = ["meta.variables", "raw.measurements", "raw.rejects", "clean.measurements", "agg.hourly"]

    def snapshot():
        return {t: query(settings, f"SELECT count(*), sum(hash(COLUMNS(*))) FROM (SELECT * EXCLUDE (updated_at) FROM {t})"
                          if t == "meta.variables" else f"SELECT count(*), sum(hash(COLUMNS(*))) FROM {t}") for t in tables}

    before = snapshot()
    assert run(settings, "2016-10-24", "2016-10-26", None, instance=instance) == 0
    assert snapshot() == before
    # a newer export corrects one reading: the newest file wins and the change is logged
    source = settings.inbox / "reach_residential4_2016-10.csv"
    old = f'{GRID},Energia attiva,02:00:00 25/10/2016,"3652,6740"'
    assert old in source.read_text()
    text = source.read_text().replace(old, old.replace("3652,6740", "3662,6740"))
    write_csv(settings.inbox / "reach_residential4_2016-10_fix.csv", text)
    os.utime(settings.inbox / "reach_residential4_2016-10_fix.csv", (time.time() + 5, time.time() + 5))
    assert run(settings, "2016-10-24", "2016-10-26", None, instance=instance) == 0
    revised = query(settings, "SELECT variable_id, old_value, new_value, new_source_file FROM raw.revisions")
    assert len(revised) == 1 and revised[0][0].endswith(".active_energy") and revised[0][3].endswith("_fix.csv")
    assert revised[0][1:3] == (3652.674, 3662.674)


def test_bad_file_fails_its_check_and_keeps_the_rest(pipeline):
    settings, instance = pipeline
    before = query(settings, "SELECT count(*) FROM raw.measurements")[0][0]
    write_csv(settings.inbox / "meter_export.csv", "Device;Param;Date;Value\nx;y;z;1\n")
    write_csv(settings.inbox / "meter_ok.csv", "Dispositivo,Parametro,Data,Valore\n"
              'm1,Potenza attiva,10:00:00 05/11/2016,"1,5"\nm1,Potenza attiva,10:01:00 05/11/2016,"x"\n')
    assert run(settings, "2016-11-05", "2016-11-05", "key:raw/reach_meters", instance=instance) == 0
    assert query(settings, "SELECT count(*) FROM raw.measurements")[0][0] == before + 1
    rejects = query(settings, "SELECT source_file, line, reason FROM raw.rejects ORDER BY source_file")
    assert rejects[0][:2] == ("meter_export.csv", 1) and "matches no known shape" in rejects[0][2]
    assert rejects[1][:2] == ("meter_ok.csv", 3) and rejects[1][2].startswith("bad number 'x'")
    key = AssetCheckKey(AssetKey(["raw", "reach_meters"]), "files_parsed")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.passed is False and "meter_export.csv" in str(evaluation.metadata["failed_files"].value)
