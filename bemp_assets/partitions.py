"""Daily partitions: one site-local day each, from the configured start date."""
from __future__ import annotations

from dagster import DailyPartitionsDefinition

from bemp_assets.domain.config import SiteConfig


def daily_partitions(site: SiteConfig) -> DailyPartitionsDefinition:
    return DailyPartitionsDefinition(
        start_date=site.start_date.isoformat(), timezone=site.timezone, fmt="%Y-%m-%d"
    )
