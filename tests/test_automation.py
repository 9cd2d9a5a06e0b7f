"""The automation condition on the real definitions and a real instance: what it requests after
runs of the real pipeline (bemp_assets/automation.py says why it is not eager())."""
import shutil
from datetime import date, timedelta

import pytest
from dagster import AssetKey, evaluate_automation_conditions, instance_for_test

from bemp_assets.automation import LABEL
from bemp_assets.cli import run
from bemp_assets.definitions import build_definitions

from .conftest import SAMPLE, make_settings

CLEAN, HOURLY, DAILY = AssetKey(["clean", "measurements"]), AssetKey(["agg", "hourly"]), AssetKey(["agg", "daily"])
OPS = {AssetKey(["ops", "installation_status"]), AssetKey(["ops", "coverage_heatmap"])}
ALARMS = {AssetKey(["alarms", "events"]), AssetKey(["alarms", "notifications"])}
# the KPI and report layers that follow agg (kpi/ebus_monthly follows the iPanel tables only)
KPI_FOLLOW = {AssetKey(["kpi", n]) for n in ("energy_daily", "intensity", "measures")} | {
    AssetKey(["report", n]) for n in ("day_by_month", "category_summary", "bi_snapshot")}
# the API audit copy follows every raw asset of the pipeline job (raw/api included)
API_AUDIT = {AssetKey(["ops", "api_audit"])}
UNPARTITIONED = OPS | ALARMS | KPI_FOLLOW | API_AUDIT | {AssetKey(["kpi", "ebus_monthly"])}
FILE = "reach_residential4_2016-11.csv"  # 2016-11-01 .. 2016-11-11, source reach_residential


def days(first: str, last: str) -> set[str]:
    """Every day from first to last, as partition keys (computed here, not by Dagster)."""
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return {(a + timedelta(days=i)).isoformat() for i in range((b - a).days + 1)}


class Ticks:
    """Successive evaluations of the automation conditions, each continuing the last one's cursor."""

    def __init__(self, defs, instance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def requested(self) -> dict[AssetKey, set]:
        result = evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {key: set(result.get_requested_partitions(key)) for key in self.defs.resolve_asset_graph().get_all_asset_keys()
                if result.get_num_requested(key)}


@pytest.fixture
def ticks(tmp_path):
    settings = make_settings(tmp_path / "home")
    settings.inbox.mkdir(parents=True)
    shutil.copy2(SAMPLE / FILE, settings.inbox)
    defs = build_definitions(settings)
    with instance_for_test() as instance:
        evaluation = Ticks(defs, instance)
        assert evaluation.requested() == {}  # the first evaluation only records the state
        yield settings, instance, evaluation


def test_every_downstream_layer_carries_the_condition(settings):
    graph = build_definitions(settings).resolve_asset_graph()
    carried = {key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition is not None}
    assert carried == {CLEAN, HOURLY, DAILY, *UNPARTITIONED}
    assert {graph.get(key).automation_condition.get_label() for key in carried} == {LABEL}
    sensor = build_definitions(settings).resolve_sensor_def("bemp_automation")
    # several partitions in one tick become a backfill, which runs each single_run asset as one range run
    assert sensor.emit_backfills and set(sensor.asset_selection.resolve(graph)) == carried
    assert all(graph.get(key).backfill_policy.max_partitions_per_run is None for key in carried if key not in UNPARTITIONED)


def test_raw_only_run_requests_its_downstream_partitions_and_the_ops_snapshots(ticks):
    settings, instance, evaluation = ticks
    assert run(settings, "2016-11-03", "2016-11-05", "key:raw/reach_residential", instance=instance, refresh_status=False) == 0
    # clean day D reads raw D-1 .. D+1, so raw 3..5 Nov touches clean 2..6 Nov; hourly and daily follow clean
    around = days("2016-11-02", "2016-11-06")
    assert evaluation.requested() == {CLEAN: around, HOURLY: around, DAILY: around, **{key: {None} for key in OPS}}
    assert evaluation.requested() == {}  # requested once, not again on the next tick


def test_a_run_that_included_downstream_requests_only_what_it_left_out(ticks):
    """Nothing a run materialised is requested again. What it left out is: the ops snapshots, and
    clean on the day before its window, which reads the window's first raw day (Dagster skips a
    dependency update made by a run that included the target only for the dependency's latest
    materialisation, the window's last day, so the day after the window is not requested)."""
    settings, instance, evaluation = ticks
    # bemp_pipeline: raw, clean, hourly and daily of 3..5 Nov in one run; the ops snapshots are not in it.
    # Only raw/reach_residential has files on those days, so raw/api is not run and ops/api_audit,
    # which follows it alone, is not requested
    assert run(settings, "2016-11-03", "2016-11-05", None, instance=instance, refresh_status=False) == 0
    before = {"2016-11-02"}
    assert evaluation.requested() == {CLEAN: before, HOURLY: before, DAILY: before, **{key: {None} for key in OPS},
                                      **{key: {None} for key in ALARMS}, **{key: {None} for key in KPI_FOLLOW}}
    # `bemp run` refreshes the snapshots after its runs; a one-day run leaves nothing to request
    assert run(settings, "2016-11-08", "2016-11-08", None, instance=instance) == 0
    assert evaluation.requested() == {}
