"""One sensor per source that reads its own folder (the API's landing area): the inbox
sensor's rules (one run per new batch file, over the days it holds, never a file already
ingested in full), watching that folder instead of the inbox."""
from dagster import AssetKey, TimeWindowPartitionsDefinition

from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.inbox import days_cache
from bemp_assets.domain.settings import Settings

from .inbox import build_inbox_sensor


def build_landing_sensors(job, settings: Settings, config: BempConfig, partitions: TimeWindowPartitionsDefinition,
                          downstream: list[AssetKey]) -> list:
    return [build_inbox_sensor(job, settings.home / source.inbox, config, partitions, downstream,
                               name=f"{source.name}_landing_sensor", folder=source.inbox,
                               days_cache_file=days_cache(settings.inbox))
            for source in config.sources if source.inbox]
