"""The one Definitions of BEMP, assembled explicitly from the layer modules."""
from __future__ import annotations

from dagster import Definitions

from bemp_assets.assets.agg import build_hourly_asset
from bemp_assets.assets.clean import build_clean_asset
from bemp_assets.assets.raw import build_raw_assets
from bemp_assets.domain.config import load_config
from bemp_assets.domain.settings import Settings
from bemp_assets.jobs import build_pipeline_job
from bemp_assets.partitions import daily_partitions
from resources import CsvInboxResource, WarehouseResource
from schedules import build_daily_schedule
from sensors import build_inbox_sensor


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    raw = build_raw_assets(config, partitions)
    clean = build_clean_asset(partitions, [a.key for a in raw], config.filter_chains)
    hourly = build_hourly_asset(partitions, clean.key, config.filter_chains)
    pipeline = build_pipeline_job()
    return Definitions(
        assets=[*raw, clean, hourly],
        jobs=[pipeline],
        schedules=[build_daily_schedule(pipeline)],
        sensors=[build_inbox_sensor(pipeline, settings.inbox, config, partitions)],
        resources={
            "warehouse": WarehouseResource(database=str(settings.warehouse)),
            "inbox": CsvInboxResource(inbox_dir=str(settings.inbox)),
        },
    )


defs = build_definitions()
