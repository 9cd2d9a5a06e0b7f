"""The one Definitions of BEMP, assembled explicitly from the layer modules."""
from __future__ import annotations

from dagster import AssetKey, Definitions, EnvVar

from bemp_assets.api.assets import build_api_audit_asset
from bemp_assets.assets.agg import build_agg_assets
from bemp_assets.assets.alarms import build_alarm_assets, build_notifiers
from bemp_assets.assets.clean import build_clean_asset
from bemp_assets.assets.comfort import build_comfort_assets
from bemp_assets.assets.kpi import build_kpi_assets, build_report_assets
from bemp_assets.assets.live import GATEWAY_KEY, build_live_assets
from bemp_assets.assets.ml import build_ml_assets, build_ml_triggers
from bemp_assets.assets.ops import build_ops_assets
from bemp_assets.assets.planner import build_planner_assets
from bemp_assets.assets.raw import build_raw_assets
from bemp_assets.assets.report import build_snapshot_asset
from bemp_assets.automation import build_automation_sensor
from bemp_assets.domain.config import load_config
from bemp_assets.domain.inbox import days_cache
from bemp_assets.domain.lake import LakeTarget
from bemp_assets.domain.settings import Settings
from bemp_assets.executor import build_executor
from bemp_assets.jobs import build_buildings_job, build_kpi_job, build_live_job, build_pipeline_job, build_status_job
from bemp_assets.partitions import daily_partitions
from resources import CsvInboxResource, GatewayClient, IPanelClient, WarehouseResource
from schedules import build_daily_schedule, build_live_repoll_schedule
from schedules.alarms import build_alarms_job, build_alarms_schedule
from sensors import build_inbox_sensor, build_live_sensors, build_run_hygiene_sensor
from sensors.landing import build_landing_sensors


def build_definitions(settings: Settings | None = None) -> Definitions:
    settings = settings or Settings.from_env()
    lake = isinstance(settings.warehouse, LakeTarget)
    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    csv_raw = build_raw_assets(config, partitions)
    live_raw = build_live_assets(config, partitions)
    live_keys = [a.key for a in live_raw]
    # clean reads raw.measurements: the CSV sources and the gateways (iPanel has its own tables)
    clean = build_clean_asset(partitions, [a.key for a in csv_raw] + [a.key for a in live_raw if a.key.path == GATEWAY_KEY], config)
    aggregates = build_agg_assets(partitions, clean.key, config)
    ops = build_ops_assets([a.key for a in csv_raw + live_raw], config, settings)
    ops.append(build_api_audit_asset([AssetKey(["raw", s.name]) for s in config.sources if s.inbox], settings))
    pipeline, live, status = build_pipeline_job(live_keys), build_live_job(live_keys), build_status_job()
    ml = build_ml_assets(partitions, aggregates[0].key, config, settings)
    ml_train, ml_weekly, ml_drift, ml_forecast, ml_daily = build_ml_triggers(ml)
    forecasts = [key for a in ml for key in a.keys if key.path == ["ml", "forecasts"]]
    alarm_assets = build_alarm_assets([clean.key, *(a.key for a in aggregates if a.key.path[-1] == "hourly"), *forecasts],
                                      config, settings)
    alarms_job = build_alarms_job()
    buildings = [*build_comfort_assets(aggregates[0].key, config, settings), *build_planner_assets(config, settings)]
    hourly = next(a.key for a in aggregates if a.key.path[-1] == "hourly")
    kpis = build_kpi_assets(hourly, [k for k in live_keys if k.path[-1] in ("ipanel_trips", "ipanel_charges")], config, settings)
    reports = build_report_assets(config, settings)
    snapshot = build_snapshot_asset([*(a.key for a in aggregates), *forecasts, *(k for a in alarm_assets for k in a.keys),
                                     *(a.key for a in kpis + reports), *(k for a in buildings for k in a.keys)], settings)
    assets = [*csv_raw, *live_raw, clean, *aggregates, *ops, *ml, *alarm_assets, *buildings, *kpis, *reports, snapshot]
    # runs name their assets, so the automation sees what a run materialised (automation.py)
    downstream = [clean.key, *(a.key for a in aggregates)]
    pipeline_assets, live_assets = [*(a.key for a in csv_raw), *downstream], [*live_keys, *downstream]
    return Definitions(
        assets=assets,
        jobs=[pipeline, live, status, ml_train, ml_forecast, alarms_job, build_buildings_job(), build_kpi_job()],
        schedules=[build_daily_schedule(pipeline, partitions, pipeline_assets),
                   build_live_repoll_schedule(live, partitions, config, live_assets), ml_weekly, ml_daily,
                   build_alarms_schedule(alarms_job, config.alarms.evaluate_every_minutes, [a.key for a in alarm_assets])],
        sensors=[
            build_inbox_sensor(pipeline, settings.inbox, config, partitions, downstream,
                               days_cache_file=days_cache(settings.inbox)),
            *build_landing_sensors(pipeline, settings, config, partitions, downstream),
            *build_live_sensors(live, partitions, config),
            build_automation_sensor(assets),
            build_run_hygiene_sensor(),
            ml_drift,
        ],
        # in-process on the embedded file (one writer); parallel on DuckLake (bemp_assets/executor.py)
        executor=build_executor(lake),
        resources={
            "warehouse": WarehouseResource(database=str(settings.warehouse),
                                           lake_data_path=settings.warehouse.data_path if lake else ""),
            "inbox": CsvInboxResource(inbox_dir=str(settings.inbox)),
            "gateway": GatewayClient(base_url=EnvVar("BEMP_GATEWAY_URL"), token=EnvVar("BEMP_GATEWAY_TOKEN")),
            "ipanel": IPanelClient(base_url=EnvVar("BEMP_IPANEL_URL"), token=EnvVar("BEMP_IPANEL_TOKEN")),
            **build_notifiers(config),
        },
    )


defs = build_definitions()
