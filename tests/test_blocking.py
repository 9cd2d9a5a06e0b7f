"""A failing blocking commissioning check stops its downstream asset in a real materialize."""

from dagster import AssetKey, asset, instance_for_test, materialize

from bemp_assets.definitions import build_definitions
from bemp_assets.partitions import daily_partitions

from .conftest import SAMPLE


def kpi_downstream_of_daily(config):
    @asset(key=["kpi", "probe"], deps=[AssetKey(["agg", "daily"])], partitions_def=daily_partitions(config.site))
    def probe() -> None:
        """Stands in for a KPI: must not run on an incomplete day."""
    return probe


def run_day(settings, config, instance, day):
    defs = build_definitions(settings)
    return materialize([*defs.assets, kpi_downstream_of_daily(config)], instance=instance, resources=defs.resources,
                       partition_key=day, raise_on_error=False,
                       selection=["raw/reach_residential", "clean/measurements", "agg/hourly", "agg/daily", "kpi/probe"])


def test_incomplete_day_blocks_downstream(settings, config):
    settings.inbox.mkdir(parents=True)
    lines = (SAMPLE / "reach_residential4_2016-10.csv").read_text().splitlines(keepends=True)
    # drop every reading between 08:00 and 19:59 local on 25 October: 12 of 24 hours missing
    gap = [f"{h:02d}:00:00 25/10/2016" for h in range(8, 20)]
    (settings.inbox / "reach_residential4_2016-10.csv").write_text("".join(l for l in lines if not any(g in l for g in gap)))
    with instance_for_test() as instance:
        bad = run_day(settings, config, instance, "2016-10-25")
        assert not bad.success
        assert instance.get_latest_materialization_event(AssetKey(["agg", "daily"])) is not None  # written, but gated
        assert instance.get_latest_materialization_event(AssetKey(["kpi", "probe"])) is None
        failed = [e.event_specific_data for e in bad.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and not e.event_specific_data.passed]
        assert [(f.asset_key.to_user_string(), f.check_name) for f in failed] == [("agg/daily", "completeness")]
        worst = failed[0].metadata["observed_worst"].value
        assert {w["observed"] for w in worst} == {0.5} and {w["day"] for w in worst} == {"2016-10-25"}

        good = run_day(settings, config, instance, "2016-10-24")
        assert good.success
        assert instance.get_latest_materialization_event(AssetKey(["kpi", "probe"])).asset_materialization.partition == "2016-10-24"
