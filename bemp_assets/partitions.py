"""Daily partitions: one site-local day each, from the configured start date up to and
including today, so data polled from live sources today can be processed today (today's
partition is simply re-run as more arrives)."""
from __future__ import annotations

from dagster import DailyPartitionsDefinition

from bemp_assets.domain.config import SiteConfig


def daily_partitions(site: SiteConfig) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(
        start_date=site.start_date.isoformat(), timezone=site.timezone, fmt="%Y-%m-%d", end_offset=1
    )
