"""Every night, process yesterday's partition: late files in the inbox are picked up too,
because the raw assets read the whole inbox for the window they build."""
from datetime import timedelta

import pandas as pd
from dagster import AssetKey, DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, TimeWindowPartitionsDefinition, schedule


def build_daily_schedule(job, partitions: TimeWindowPartitionsDefinition, asset_keys: list[AssetKey]):
    tz = partitions.timezone

    @schedule(name="bemp_daily", job=job, cron_schedule="30 1 * * *", execution_timezone=tz,
              default_status=DefaultScheduleStatus.RUNNING,
              description="At 01:30 site time, the CSV pipeline for yesterday's partition.")
    def daily(context: ScheduleEvaluationContext):
        yesterday = (pd.Timestamp(context.scheduled_execution_time).tz_convert(tz) - timedelta(days=1)).date().isoformat()
        return RunRequest(run_key=f"daily:{yesterday}", partition_key=yesterday, asset_selection=asset_keys)

    return daily
