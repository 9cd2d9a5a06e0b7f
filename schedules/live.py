"""Every night, fetch the last N days of the HTTP sources again: late records get in."""
from datetime import timedelta

import pandas as pd
from dagster import AssetKey, DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, TimeWindowPartitionsDefinition, schedule
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.domain.config import BempConfig
from bemp_assets.partitions import clip_days


def build_live_repoll_schedule(job, partitions: TimeWindowPartitionsDefinition, config: BempConfig,
                               asset_keys: list[AssetKey]):
    days, tz = config.live_sources.repoll_days, config.site.timezone

    @schedule(name="bemp_live_repoll", job=job, cron_schedule="0 2 * * *", execution_timezone=tz,
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Re-polls the gateway and iPanel sources for the last {days} days.")
    def live_repoll(context: ScheduleEvaluationContext):
        today = pd.Timestamp(context.scheduled_execution_time).tz_convert(tz).date()
        span = clip_days(partitions, today - timedelta(days=days), today - timedelta(days=1),
                         now=context.scheduled_execution_time)
        if span is None:
            return []
        return RunRequest(run_key=f"repoll:{today}", asset_selection=asset_keys, tags={ASSET_PARTITION_RANGE_START_TAG: span[0],
                                                          ASSET_PARTITION_RANGE_END_TAG: span[1], "bemp/poll": "repoll"})

    return live_repoll
