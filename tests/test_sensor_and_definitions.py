"""The inbox sensor (build_sensor_context) and the Definitions as a whole."""
import json
import os
import shutil

from dagster import AssetKey, DagsterInstance, build_sensor_context, instance_for_test
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.definitions import build_definitions
from bemp_assets.assets.common import WAREHOUSE_POOL

from .conftest import SAMPLE, write_csv


def evaluate(defs, cursor=None):
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with instance_for_test() as instance:
        return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_sensor_requests_each_file_version_once(settings):
    settings.inbox.mkdir(parents=True)
    shutil.copy2(SAMPLE / "reach_residential4_2016-11.csv", settings.inbox)
    defs = build_definitions(settings)
    first = evaluate(defs)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    # the file holds 2016-11-01 .. 2016-11-11 local; padded by a day each side
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2016-10-31", "2016-11-12")
    assert request.run_key.startswith("reach_residential4_2016-11.csv:")
    assert request.job_name in (None, "bemp_pipeline")
    # same cursor, nothing new: no run
    again = evaluate(defs, first.cursor)
    assert again.run_requests == [] and again.skip_message == "no new or changed files"
    # rewritten file: a new version, a new run key
    target = settings.inbox / "reach_residential4_2016-11.csv"
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = evaluate(defs, first.cursor)
    assert len(changed.run_requests) == 1 and changed.run_requests[0].run_key != request.run_key
    assert json.loads(changed.cursor)["reach_residential4_2016-11.csv"]["version"].startswith(str(target.stat().st_mtime_ns))


REACH = ["reach_residential4_2016-10.csv", "reach_residential4_2016-11.csv"]


def test_sensor_requests_nothing_that_a_run_ingested_in_full(settings, monkeypatch):
    """`bemp run` ingests the REACH exports; the sensor then requests nothing for them, one run
    for a rewritten file, and nothing for a file only touched."""
    import sensors.inbox
    from bemp_assets.cli import run

    settings.inbox.mkdir(parents=True)
    for name in REACH:
        shutil.copy2(SAMPLE / name, settings.inbox)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("inbox_sensor")
    hashed = []
    real_hash = sensors.inbox.sha256_of
    monkeypatch.setattr(sensors.inbox, "sha256_of", lambda path: hashed.append(path.name) or real_hash(path))
    with instance_for_test() as instance:
        def tick(cursor):
            return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

        assert run(settings, None, None, None, instance=instance, refresh_status=False) == 0
        first = tick(None)
        assert first.run_requests == [] and first.skip_message == f"2 new or changed file(s) already in the warehouse: {', '.join(REACH)}"
        assert sorted(hashed) == REACH
        hashed.clear()
        unchanged = tick(first.cursor)
        assert unchanged.run_requests == [] and unchanged.skip_message == "no new or changed files"
        assert hashed == []  # unchanged files are not read again

        # one value rewritten in the November export: exactly one run, for that file, over its days +-1
        target = settings.inbox / REACH[1]
        text = target.read_text(encoding="utf-8")
        target.write_text(text.replace('"2384,7600"', '"2384,7700"', 1), encoding="utf-8")
        assert target.read_text(encoding="utf-8") != text
        changed = tick(first.cursor)
        assert [r.tags["bemp/file"] for r in changed.run_requests] == [REACH[1]]
        tags = changed.run_requests[0].tags
        assert (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2016-10-31", "2016-11-12")
        assert {tuple(k.path) for k in changed.run_requests[0].asset_selection} == {
            ("raw", "reach_residential"), ("clean", "measurements"), ("agg", "hourly"), ("agg", "daily")}
        assert hashed == [REACH[1]]

        # the October export touched, content unchanged: nothing to do
        other = settings.inbox / REACH[0]
        os.utime(other, ns=(other.stat().st_atime_ns, other.stat().st_mtime_ns + 10**9))
        touched = tick(changed.cursor)
        assert touched.run_requests == [] and touched.skip_message.endswith(f"already in the warehouse: {REACH[0]}") and json.loads(touched.cursor)[REACH[0]]["version"].startswith(str(other.stat().st_mtime_ns))


def test_a_run_over_part_of_a_file_does_not_count_as_ingested(settings):
    from bemp_assets.cli import run

    settings.inbox.mkdir(parents=True)
    shutil.copy2(SAMPLE / REACH[1], settings.inbox)
    defs = build_definitions(settings)
    with instance_for_test() as instance:
        assert run(settings, "2016-11-03", "2016-11-05", None, instance=instance, refresh_status=False) == 0
        result = defs.resolve_sensor_def("inbox_sensor").evaluate_tick(
            build_sensor_context(instance=instance, cursor=None, definitions=defs))
        assert [r.tags["bemp/file"] for r in result.run_requests] == [REACH[1]]
        # the full span (file days 1..11 Nov, +-1) does count
        assert run(settings, "2016-10-31", "2016-11-12", None, instance=instance, refresh_status=False) == 0
        again = defs.resolve_sensor_def("inbox_sensor").evaluate_tick(
            build_sensor_context(instance=instance, cursor=None, definitions=defs))
        assert again.run_requests == []


def test_sensor_skips_unreadable_file_with_a_reason(settings):
    write_csv(settings.inbox / "notes.csv", "hello,world\n1,2\n")
    result = evaluate(build_definitions(settings))
    assert result.run_requests == []
    assert "notes.csv: no readable timestamps" in result.skip_message


def test_definitions_load_with_layers_pools_and_descriptions(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    keys = set(graph.get_all_asset_keys())
    assert keys == {AssetKey(["raw", "steel_plant"]), AssetKey(["raw", "steel_production"]), AssetKey(["raw", "reach_residential"]), AssetKey(["raw", "reach_meters"]),
                    AssetKey(["clean", "measurements"]), AssetKey(["agg", "hourly"]), AssetKey(["agg", "daily"]),
                    AssetKey(["ops", "installation_status"]), AssetKey(["ops", "coverage_heatmap"]),
                    AssetKey(["raw", "gateway_measurements"]), AssetKey(["raw", "ipanel_trips"]),
                    AssetKey(["raw", "ipanel_charger_status"]), AssetKey(["raw", "ipanel_charges"]),
                    AssetKey(["alarms", "events"]), AssetKey(["alarms", "notifications"]),
                    *(AssetKey(["ml", n]) for n in ("features", "models", "tpot_models", "backtests", "forecasts")),
                    *(AssetKey(["comfort", n]) for n in ("hourly", "daily", "monthly")),
                    *(AssetKey(["planner", n]) for n in ("measured_demand", "clusters", "models", "forecast")),
                    *(AssetKey(["kpi", n]) for n in ("energy_daily", "intensity", "ebus_monthly", "measures")),
                    *(AssetKey(["report", n]) for n in ("day_by_month", "category_summary", "bi_snapshot")),
                    AssetKey(["raw", "api"]), AssetKey(["ops", "api_audit"])}
    partitioned = {k for k in keys if k.path[0] not in ("ops", "ml", "alarms", "comfort", "planner", "kpi", "report")} | {AssetKey(["ml", "forecasts"])}
    for key in keys:
        node = graph.get(key)
        assert node.group_name == key.path[0]
        assert node.description
        assert node.pools == {WAREHOUSE_POOL}
        assert (node.backfill_policy is not None) == (key in partitioned)
    checks = {(k.asset_key.path[0], k.name) for k in graph.asset_check_keys}
    assert {("raw", "correctness"), ("raw", "frequency"), ("raw", "freshness"), ("raw", "files_parsed"),
            ("clean", "duplicates"), ("agg", "completeness"), ("raw", "registered_gateways"),
            ("ml", "champion_beats_persistence"), ("alarms", "outbox_drained"),
            ("alarms", "rules_select_variables")} == checks
    assert graph.get_check_spec(next(k for k in graph.asset_check_keys if k.name == "completeness")).blocking
    assert graph.get(AssetKey(["clean", "measurements"])).parent_keys == {
        k for k in keys if k.path[0] == "raw" and not k.path[1].startswith("ipanel")}
    assert defs.resolve_job_def("bemp_pipeline").partitions_def is not None
    assert defs.resolve_job_def("bemp_status").partitions_def is None
    for name in ("bemp_automation", "inbox_sensor", "api_landing_sensor", "gateway_sensor", "ipanel_sensor"):
        assert defs.resolve_sensor_def(name).default_status.value == "RUNNING"
    assert defs.resolve_schedule_def("bemp_daily").cron_schedule == "30 1 * * *"
    assert defs.resolve_schedule_def("ml_forecast_schedule").cron_schedule == "15 0 * * *"
    assert defs.resolve_schedule_def("ml_weekly_retrain").cron_schedule == "0 3 * * 1"
    resources = defs.resources
    assert os.path.isabs(resources["warehouse"].database) and resources["warehouse"].database == str(settings.warehouse)


def test_dagster_yaml_limits_the_duckdb_pool_to_one(tmp_path):
    shutil.copy(SAMPLE.parents[1] / ".dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    finally:
        instance.dispose()


def test_schedules_target_yesterday_and_the_repoll_window(settings):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dagster import build_schedule_context

    defs = build_definitions(settings)
    at = datetime(2024, 3, 31, 1, 30, tzinfo=ZoneInfo("Europe/Rome"))  # the morning of a DST change
    with instance_for_test() as instance:
        daily = defs.resolve_schedule_def("bemp_daily").evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=at,
                                                                      repository_def=defs.get_repository_def()))
        assert [r.partition_key for r in daily.run_requests] == ["2024-03-30"]
        repoll = defs.resolve_schedule_def("bemp_live_repoll").evaluate_tick(
            build_schedule_context(instance=instance, scheduled_execution_time=at.replace(hour=2),
                                   repository_def=defs.get_repository_def()))
    tags = repoll.run_requests[0].tags
    assert (tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2024-03-28", "2024-03-30")


def test_loading_the_definitions_warns_only_of_the_one_beta_feature_used_on_purpose(settings):
    """The warehouse assets' single-run backfills come from a stable parameter; the only
    BetaWarning left is clean's D-1..D+1 partition mapping at the edges of the partition set."""
    import warnings

    from dagster import BetaWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_definitions(settings)
    beta = [str(w.message) for w in caught if issubclass(w.category, BetaWarning)]
    assert len(beta) == 1 and "allow_nonexistent_upstream_partitions" in beta[0], beta
