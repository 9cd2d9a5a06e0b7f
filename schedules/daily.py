"""Every night, process yesterday's partition (late files included: raw assets read the whole inbox)."""
from __future__ import annotations

from dagster import DefaultScheduleStatus, ScheduleDefinition, build_schedule_from_partitioned_job


def build_daily_schedule(job) -> ScheduleDefinition:
    return build_schedule_from_partitioned_job(
        job, hour_of_day=1, minute_of_hour=30, name="bemp_daily", default_status=DefaultScheduleStatus.RUNNING
    )
