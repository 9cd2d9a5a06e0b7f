"""Watch the inbox and request one run per new file version over the days it holds.

The cursor maps file name -> version (mtime and size); the run key repeats that version, so a
file is processed once per version even if a cursor update is lost. The sensor reads only the
CSV's timestamp column in an in-memory DuckDB; it never opens the warehouse.
"""

import json
from pathlib import Path

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.inbox import file_days, list_inbox, source_for


def clip_days(partitions: TimeWindowPartitionsDefinition, first, last, now=None) -> tuple[str, str] | None:
    """The partition keys covering [first, last], clipped to existing partitions."""
    keys = partitions.get_partition_keys(current_time=now)
    if not keys:
        return None
    lo, hi = max(first.isoformat(), keys[0]), min(last.isoformat(), keys[-1])
    return (lo, hi) if lo <= hi else None


def build_inbox_sensor(job, inbox: Path, config: BempConfig, partitions: TimeWindowPartitionsDefinition):
    @sensor(name="inbox_sensor", job=job, minimum_interval_seconds=30,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Requests a run for each new or changed CSV in {inbox}, over the days it holds.")
    def inbox_sensor(context: SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        current, requests, skipped = {}, [], []
        for f in list_inbox(inbox):
            current[f.name] = f.version
            if seen.get(f.name) == f.version:
                continue
            source = source_for(f.name, config)
            days = file_days(f.path, source, config) if source else None
            span = clip_days(partitions, *days) if days else None
            if span is None:
                skipped.append(f"{f.name}: no source pattern matches" if source is None
                               else f"{f.name}: no readable timestamps inside the partitions; runs will report it")
                continue
            context.log.info(f"{f.name} ({source.name}): requesting {span[0]} .. {span[1]}")
            requests.append(RunRequest(
                run_key=f"{f.name}:{f.version}",
                tags={ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[1],
                      "bemp/file": f.name},
            ))
        for reason in skipped:
            context.log.warning(reason)
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps(current, sort_keys=True),
            skip_reason=None if requests else SkipReason("; ".join(skipped) or "no new or changed files"),
        )

    return inbox_sensor
