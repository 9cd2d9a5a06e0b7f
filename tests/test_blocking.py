"""Blocking commissioning checks in real materialisations: a fault inside a variable's life
stops its downstream asset; a day on which the devices sent nothing at all does not."""

from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, BackfillPolicy, asset, instance_for_test, materialize
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.definitions import build_definitions
from bemp_assets.partitions import daily_partitions

from .conftest import SAMPLE

CSV = "reach_residential4_2016-10.csv"
SELECTION = ["raw/reach_residential", "clean/measurements", "agg/hourly", "agg/daily", "kpi/probe"]


def kpi_downstream_of_daily(config):
    @asset(key=["kpi", "probe"], deps=[AssetKey(["agg", "daily"])], partitions_def=daily_partitions(config.site),
           backfill_policy=BackfillPolicy.single_run())
    def probe() -> None:
        """Stands in for a KPI: must not run on an incomplete day."""
    return probe


def run_day(settings, config, instance, day):
    defs = build_definitions(settings)
    return materialize([*defs.assets, kpi_downstream_of_daily(config)], instance=instance, resources=defs.resources,
                       partition_key=day, raise_on_error=False, selection=SELECTION)


def run_days(settings, config, instance, first, last):
    """One run over the partitions first .. last (a single-run backfill)."""
    defs = build_definitions(settings)
    return materialize([*defs.assets, kpi_downstream_of_daily(config)], instance=instance, resources=defs.resources,
                       raise_on_error=False, selection=SELECTION,
                       tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})


def inbox_without(settings, stamps: list[str]) -> None:
    """The October REACH export without the lines whose time stamp contains one of ``stamps``."""
    settings.inbox.mkdir(parents=True)
    lines = (SAMPLE / CSV).read_text().splitlines(keepends=True)
    (settings.inbox / CSV).write_text("".join(line for line in lines if not any(s in line for s in stamps)))


def completeness_evaluations(result):
    return [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.event_specific_data.check_name == "completeness"]


def test_incomplete_day_blocks_downstream(settings, config):
    # drop every reading between 08:00 and 19:59 local on 25 October: 12 of 24 hours missing
    inbox_without(settings, [f"{h:02d}:00:00 25/10/2016" for h in range(8, 20)])
    with instance_for_test() as instance:
        bad = run_day(settings, config, instance, "2016-10-25")
        assert not bad.success
        assert instance.get_latest_materialization_event(AssetKey(["agg", "daily"])) is not None  # written, but gated
        assert instance.get_latest_materialization_event(AssetKey(["kpi", "probe"])) is None
        failed = [e.event_specific_data for e in bad.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and not e.event_specific_data.passed]
        # the day's own evaluation and the run-level one
        assert sorted((f.asset_key.to_user_string(), f.check_name, f.partition or "") for f in failed) == [
            ("agg/daily", "completeness", ""), ("agg/daily", "completeness", "2016-10-25")]
        day = next(f for f in failed if f.partition)
        assert day.severity == AssetCheckSeverity.ERROR and day.blocking
        worst = day.metadata["observed_worst"].value
        assert {w["observed"] for w in worst} == {0.5} and {w["day"] for w in worst} == {"2016-10-25"}
        assert "of its expected readings (12 of 24; limit 90%)" in day.description

        good = run_day(settings, config, instance, "2016-10-24")
        assert good.success
        assert instance.get_latest_materialization_event(AssetKey(["kpi", "probe"])).asset_materialization.partition == "2016-10-24"


def test_day_without_any_data_warns_and_does_not_block(settings, config):
    # every meter silent on 25 October: a no-data day inside the source's life
    inbox_without(settings, [" 25/10/2016"])
    with instance_for_test() as instance:
        result = run_days(settings, config, instance, "2016-10-24", "2016-10-26")
        assert result.success
        probes = instance.fetch_materializations(AssetKey(["kpi", "probe"]), limit=10).records
        assert sorted(r.partition_key for r in probes) == ["2016-10-24", "2016-10-25", "2016-10-26"]
        day = next(e for e in completeness_evaluations(result) if e.partition == "2016-10-25")
        assert not day.passed and day.severity == AssetCheckSeverity.WARN
        assert day.metadata["no_data"].value == 6 and day.metadata["failed"].value == 0
        assert day.description.startswith("no data at all from ") and day.description.endswith("a no-data day, not blocking")
        key = AssetCheckKey(AssetKey(["agg", "daily"]), "completeness")
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        assert sorted((r.partition or "", r.status.value) for r in records) == [
            ("", "FAILED"), ("2016-10-24", "SUCCEEDED"), ("2016-10-25", "FAILED"), ("2016-10-26", "SUCCEEDED")]
