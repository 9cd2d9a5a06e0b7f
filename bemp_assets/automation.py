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
updated, unless a dependency or the target itself is still running.

No double work: a ``bemp_pipeline`` or ``bemp_live`` run materialises raw, clean and agg of its
days in one run, each after its dependencies, so ``since_last_handled`` sees those clean and
agg partitions updated after their raw days and requests none of them; only the ops
snapshots, which the run leaves out, follow it. Clean day D reads raw D-1 .. D+1, so the days
just outside the run's window are candidates too: ``any_deps_updated`` skips a dependency
update made by a run whose asset selection holds the target, but Dagster checks that only on
the dependency's latest materialisation (the window's last day). So the day after the window
is not requested and the day before it is, once (it reads the window's first day: a real
dependency, and a cheap rerun, as clean rewrites only rows that change). For the check to work
at all a run must name its assets: `bemp run`, the inbox sensor and the live sensors do
(tests/test_automation.py).

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
