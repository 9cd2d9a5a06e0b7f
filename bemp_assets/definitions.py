"""The one Definitions of BEMP, assembled explicitly from the layer modules."""
from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions

from bemp_assets.assets.agg import build_agg_assets
from bemp_assets.assets.clean import build_clean_asset
from bemp_assets.assets.ops import build_ops_assets
from bemp_assets.assets.raw import build_raw_assets
from bemp_assets.domain.config import load_config
from bemp_assets.domain.settings import Settings
from bemp_assets.jobs import build_pipeline_job, build_status_job
from bemp_assets.partitions import daily_partitions
from resources import CsvInboxResource, WarehouseResource
from schedules import build_daily_schedule
from sensors import build_inbox_sensor


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    raw = build_raw_assets(config, partitions)
    raw_keys = [a.key for a in raw]
    clean = build_clean_asset(partitions, raw_keys, config)
    aggregates = build_agg_assets(partitions, clean.key, config)
    ops = build_ops_assets(raw_keys, config, settings)
    pipeline, status = build_pipeline_job(), build_status_job()
    return Definitions(
        assets=[*raw, clean, *aggregates, *ops],
        jobs=[pipeline, status],
        schedules=[build_daily_schedule(pipeline)],
        sensors=[
            build_inbox_sensor(pipeline, settings.inbox, config, partitions),
            # runs the ops snapshots when raw data changes; declared RUNNING (it defaults to STOPPED)
            AutomationConditionSensorDefinition("bemp_automation", target=AssetSelection.groups("ops"),
                                                default_status=DefaultSensorStatus.RUNNING),
        ],
        resources={
            "warehouse": WarehouseResource(database=str(settings.warehouse)),
            "inbox": CsvInboxResource(inbox_dir=str(settings.inbox)),
        },
    )


defs = build_definitions()
