"""Daily partitions: one site-local day each, from the configured start date up to and
including today, so data polled from live sources today can be processed today (today's
partition is simply re-run as more arrives)."""
from __future__ import annotations

from dagster import DailyPartitionsDefinition, TimeWindowPartitionsDefinition

from bemp_assets.domain.config import SiteConfig


def daily_partitions(site: SiteConfig) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(
        start_date=site.start_date.isoformat(), timezone=site.timezone, fmt="%Y-%m-%d", end_offset=1
    )


def clip_days(partitions: TimeWindowPartitionsDefinition, first, last, now=None) -> tuple[str, str] | None:
    """The partition keys covering [first, last], clipped to existing partitions."""
    keys = partitions.get_partition_keys(current_time=now)
    if not keys:
        return None
    lo, hi = max(first.isoformat(), keys[0]), min(last.isoformat(), keys[-1])
    return (lo, hi) if lo <= hi else None
