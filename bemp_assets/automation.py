"""The one automation condition of BEMP: refresh what follows new data, on any partition.

Why not ``AutomationCondition.eager()``: it is ``in_latest_time_window() & (newly_missing |
any_deps_updated).since_last_handled() & ~any_deps_missing() & ~any_deps_in_progress() &
~in_progress()``, and two of those clauses never let it fire on this project:

- ``~any_deps_missing()``: the raw assets have one partition per day since the configured
  start, and most of those days never held data (each source lives a few months). An
  unpartitioned ops snapshot depends on *every* raw partition, so it always has a missing
  dependency and is never requested; a clean partition next to a day without raw data neither.
- ``in_latest_time_window()``: only today's partition is considered, so a run that rewrites
  2016 partitions (a new CSV export, a backfill, a re-poll) would never propagate downstream.

So the condition keeps only the parts that fit a history: a target (partition) is requested
when one of its dependency partitions was updated since the target was last requested or
updated, unless a dependency or the target itself is still running. ``any_deps_updated``
already ignores an update made by a run that also planned the target, so a ``bemp_pipeline``
or ``bemp_live`` run (raw + clean + agg in one run) requests nothing more for clean and agg;
only the ops snapshots, which that run leaves out, follow it.

Left out on purpose: ``newly_missing`` (the partition set grows by one empty day every
midnight; requesting it would run clean and agg on a day nothing has arrived for yet) and
``code_version_changed`` (a filter chain edit would request every partition of the history in
one tick; re-applying a chain to history stays a deliberate backfill, docs/filters.md).

The requests become one backfill per tick (the sensor's ``emit_backfills``), and a backfill
honours each asset's ``BackfillPolicy.single_run()``: one run over the requested range, whose
steps queue on the ``duckdb`` pool like any other run.
"""
from __future__ import annotations

from dagster import (
    AssetSelection,
    AssetsDefinition,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

LABEL = "follows_upstream"


def follows_upstream() -> AutomationCondition:
    """Request a target (partition) after any of its dependency partitions changed."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label(LABEL)


def build_automation_sensor(assets: list[AssetsDefinition]) -> AutomationConditionSensorDefinition:
    """The sensor that evaluates every asset carrying a condition (clean, agg, ops today; any
    later layer that sets ``automation_condition=follows_upstream()`` joins without a change
    here). Declared RUNNING: an automation sensor defaults to STOPPED."""
    keys = [key for a in assets for key, condition in a.automation_conditions_by_key.items() if condition]
    return AutomationConditionSensorDefinition(
        "bemp_automation", target=AssetSelection.assets(*keys), default_status=DefaultSensorStatus.RUNNING,
        description=f"Refreshes {len(keys)} assets when their upstream partitions change ({LABEL}, bemp_assets/automation.py).")
