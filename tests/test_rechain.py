"""Changing a filter chain: clean and its downstream show stale, a backfill re-applies the
chain from raw, and variables the change does not affect are not rewritten."""
import shutil

import duckdb
from dagster import AssetKey, instance_for_test
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from bemp_assets.cli import run
from bemp_assets.definitions import build_definitions
from bemp_assets.domain.settings import Settings

from .conftest import CONFIG_DIR, SAMPLE

CLEAN, HOURLY = AssetKey(["clean", "measurements"]), AssetKey(["agg", "hourly"])
POWER = "7f6eca13160d9ddd2584.active_power"


def statuses(settings, instance, partition="2016-10-25"):
    graph = build_definitions(settings).resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return resolver.get_status(CLEAN, partition), resolver.get_status(HOURLY, partition), resolver.get_stale_causes(CLEAN, partition)


def clean_rows(settings, variable):
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        return con.execute("SELECT count(*), max(value), any_value(chain_version) FROM clean.measurements WHERE variable_id = ?",
                           [variable]).fetchone()


def test_changed_chain_marks_stale_and_backfill_recomputes(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    settings = Settings.from_env({"BEMP_HOME": str(tmp_path / "home"), "BEMP_CONFIG": str(config)})
    settings.inbox.mkdir(parents=True)
    for name in ("reach_residential4_2016-10.csv",):
        shutil.copy2(SAMPLE / name, settings.inbox)
    with instance_for_test() as instance:
        assert run(settings, "2016-10-24", "2016-10-26", None, instance=instance) == 0
        assert statuses(settings, instance)[:2] == (StaleStatus.FRESH, StaleStatus.FRESH)
        count, peak, version_before = clean_rows(settings, POWER)
        assert peak > 1.0
        energy_before = clean_rows(settings, "7f6eca13160d9ddd2584.active_energy")

        # an operator caps grid power at 1 kW
        filters = config / "filters.yaml"
        filters.write_text(filters.read_text().replace("clip: {min: 0, max: 30, mode: clip}", "clip: {min: 0, max: 1, mode: clip}"))
        clean_status, hourly_status, causes = statuses(settings, instance)
        assert clean_status == StaleStatus.STALE and hourly_status == StaleStatus.STALE
        assert any("code version" in cause.reason for cause in causes)

        assert run(settings, "2016-10-24", "2016-10-26", "key:clean/measurements+", instance=instance) == 0
        assert statuses(settings, instance)[:2] == (StaleStatus.FRESH, StaleStatus.FRESH)
        count_after, peak_after, version_after = clean_rows(settings, POWER)
        assert count_after == count and peak_after == 1.0 and version_after != version_before
        assert clean_rows(settings, "7f6eca13160d9ddd2584.active_energy") == energy_before
        event = instance.get_latest_materialization_event(CLEAN)
        assert event.asset_materialization.metadata["variables_changed"].value == [POWER]
        hourly = instance.get_latest_materialization_event(HOURLY)
        assert hourly.run_id == event.run_id  # downstream recomputed in the same backfill run
