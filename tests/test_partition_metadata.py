"""A single-run backfill reaching weeks beyond the data: each partition gets its own metadata
and its own check evaluations, and nothing is judged outside the source's life.

Expected numbers come from the REACH CSV files read with the csv module (their time stamps are
site-local, Europe/Rome, so a row's partition is the date written in it).
"""
import csv
from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, instance_for_test


from .conftest import SAMPLE, make_settings
from .test_blocking import run_days

FIRST, LAST = "2016-10-18", "2016-11-30"
FILES = ["reach_residential4_2016-10.csv", "reach_residential4_2016-11.csv"]
ROME = ZoneInfo("Europe/Rome")


def partition_keys():
    day, last, keys = date.fromisoformat(FIRST), date.fromisoformat(LAST), []
    while day <= last:
        keys.append(day.isoformat())
        day += timedelta(days=1)
    return keys


def csv_readings():
    """Distinct readings of both exports: (device, parameter, local stamp, n-th time seen in its
    file), so the repeated DST hour counts twice and the day both files hold counts once."""
    readings = set()
    for name in FILES:
        seen = Counter()
        with open(SAMPLE / name, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                key = (row["Dispositivo"], row["Parametro"], row["Data"])
                seen[key] += 1
                readings.add((*key, seen[key]))
    return readings


def local_day(stamp: str) -> str:
    return datetime.strptime(stamp, "%H:%M:%S %d/%m/%Y").date().isoformat()


@pytest.fixture(scope="module")
def backfill(tmp_path_factory, config):
    settings = make_settings(tmp_path_factory.mktemp("home"))
    settings.inbox.mkdir(parents=True)
    for name in FILES:
        (settings.inbox / name).write_bytes((SAMPLE / name).read_bytes())
    with instance_for_test() as instance:
        result = run_days(settings, config, instance, FIRST, LAST)
        yield settings, instance, result


def materializations(instance, key):
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(key)), limit=1000).records
    return {r.partition_key: r for r in records}


def test_range_beyond_the_life_passes_and_records_only_life_days(backfill):
    settings, instance, result = backfill
    assert result.success
    assert sorted(materializations(instance, ["kpi", "probe"])) == partition_keys()
    readings = csv_readings()
    first_day = {}
    for device, parameter, stamp, _ in readings:
        day = local_day(stamp)
        first_day[(device, parameter)] = min(first_day.get((device, parameter), day), day)
    source_last = max(local_day(stamp) for _, _, stamp, _ in readings)
    expected = sum((date.fromisoformat(source_last) - date.fromisoformat(d)).days + 1 for d in first_day.values())
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        rows = con.execute("SELECT count(*), min(day)::VARCHAR, max(day)::VARCHAR, count(*) FILTER (WHERE verdict <> 'pass') "
                           "FROM ops.commissioning_results WHERE rule = 'completeness'").fetchall()[0]
        outside = con.execute("SELECT count(*) FROM ops.commissioning_results WHERE day < ? OR day > ?",
                              [min(first_day.values()), source_last]).fetchall()[0][0]
    assert rows == (expected, min(first_day.values()), source_last, 0)
    assert outside == 0


def test_one_check_evaluation_per_judged_partition(backfill):
    """Every partition inside the source's life gets one evaluation of each check, pointing at
    that partition's materialisation, plus one run-level evaluation; the partitions outside the
    life stay planned (shown as skipped: not judged), and only those. (files_parsed is judged on
    the days the files hold, here the same days.)"""
    _, instance, _ = backfill
    life = {local_day(stamp) for _, _, stamp, _ in csv_readings()}
    outside = [k for k in partition_keys() if k not in life]
    assert len(life) == 21 and len(outside) == 23
    checks = {"raw/reach_residential": ["files_parsed", "correctness", "frequency", "freshness"],
              "clean/measurements": ["duplicates"], "agg/daily": ["completeness"]}
    for asset_key, names in checks.items():
        asset = AssetKey(asset_key.split("/"))
        materialized = materializations(instance, asset.path)
        for name in names:
            records = instance.event_log_storage.get_asset_check_execution_history(AssetCheckKey(asset, name), limit=1000)
            done = Counter(r.partition for r in records if r.status.value == "SUCCEEDED")
            planned = sorted(r.partition for r in records if r.status.value == "PLANNED")
            assert done == Counter({**{k: 1 for k in life}, None: 1}), (asset_key, name)
            assert planned == outside and len(records) == len(life) + 1 + len(outside), (asset_key, name)
            for record in records:
                evaluation = record.event.dagster_event.event_specific_data
                if record.partition is not None and record.status.value == "SUCCEEDED":
                    assert evaluation.partition == record.partition
                    assert evaluation.target_materialization_data.storage_id == materialized[record.partition].storage_id
                elif record.partition is None and name != "files_parsed":  # the run-level evaluation of a rule
                    assert evaluation.description.endswith("; 23 of 44 partition(s) outside every variable's life, not judged")


def test_row_counts_per_partition_equal_the_csv(backfill):
    _, instance, _ = backfill
    readings = csv_readings()
    per_day = Counter(local_day(stamp) for _, _, stamp, _ in readings)
    for key, record in materializations(instance, ["raw", "reach_residential"]).items():
        metadata = record.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == per_day.get(key, 0), key
        assert metadata["rows_written"].value == per_day.get(key, 0), key
        assert metadata["table_rows_total"].value == len(readings)
    assert per_day["2016-10-30"] == 6 * 25 and per_day["2016-11-01"] == 6 * 24  # DST day; the day both files hold


def test_preview_shows_the_first_readings_of_the_day(backfill):
    """A partition's preview: its first 5 rows by time, then variable (kept per day by min_by)."""
    _, instance, _ = backfill
    day = "2016-10-30"
    stamps = sorted({stamp for _, _, stamp, _ in csv_readings() if local_day(stamp) == day})
    first = datetime.strptime(stamps[0], "%H:%M:%S %d/%m/%Y").replace(tzinfo=ROME).astimezone(ZoneInfo("UTC"))
    preview = materializations(instance, ["raw", "reach_residential"])[day].asset_materialization.metadata["preview"].value
    rows = preview.splitlines()[2:]
    # six meters read at the day's first local time: the first 5 rows are 5 of them, in name order
    assert len(rows) == 5 and all(f"{first:%Y-%m-%d %H:%M:%S}+00:00" in row for row in rows)
    names = [row.split("|")[1].strip() for row in rows]
    assert names == sorted(names) and len(set(names)) == 5


def test_hourly_row_counts_per_partition_equal_hours_per_local_day(backfill):
    settings, instance, _ = backfill
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        hours = [h for (h,) in con.execute("SELECT hour FROM agg.hourly").fetchall()]
    per_day = Counter(h.astimezone(ROME).date().isoformat() for h in hours)
    records = materializations(instance, ["agg", "hourly"])
    assert sorted(records) == partition_keys()
    counts = {k: r.asset_materialization.metadata["dagster/row_count"].value for k, r in records.items()}
    assert counts == {k: per_day.get(k, 0) for k in partition_keys()}
    assert {r.asset_materialization.metadata["table_rows_total"].value for r in records.values()} == {len(hours)}
    assert "_no rows on this day_" in records["2016-11-30"].asset_materialization.metadata["preview"].value
