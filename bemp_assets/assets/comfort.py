"""comfort layer (thin): PMV/PPD per dwelling-hour and the daily and monthly status shares.
The model is bemp_assets/domain/comfort.py (docs/buildings.md).

Unpartitioned snapshots over the whole gateway history, recomputed in full (comfort.yaml may
change every past hour). They carry no automation condition yet: the bemp_buildings job
(`bemp planner run`, `make run`) refreshes them.
"""
import base64
from datetime import datetime, timezone

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from bemp_assets.domain import comfort
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource

from .common import WAREHOUSE_POOL

HOURLY_KEY = AssetKey(["comfort", "hourly"])


def build_comfort_assets(hourly_key: AssetKey, config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    settings_comfort = config.comfort
    common = dict(group_name="comfort", pool=WAREHOUSE_POOL, kinds={"duckdb"})

    @asset(key=HOURLY_KEY, deps=[hourly_key], **common,
           description="comfort.hourly: ASHRAE 55 PMV/PPD (pythermalcomfort) per dwelling-hour from the gateways' "
                       "hourly temperature and humidity, with status green/yellow/red, or outside_limits where an "
                       "input is outside the standard's applicability limits (comfort.yaml: the assumptions).")
    def comfort_hourly(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        channels = comfort.dwelling_channels(config.gateways, settings_comfort)
        with warehouse.session() as con:
            inputs, without_humidity = comfort.read_inputs(con, channels, config.live_sources.gateway.timezone)
            hourly = comfort.evaluate(inputs, settings_comfort)
            comfort.replace_hourly(con, hourly, datetime.now(timezone.utc))
        counts = hourly["status"].value_counts().to_dict()
        context.log.info(f"{len(hourly)} dwelling-hours evaluated: {counts}; {without_humidity} without humidity")
        return MaterializeResult(metadata={
            "dagster/row_count": len(hourly),
            "dwellings": sorted(channels["dwelling"]),
            "hours_without_humidity": without_humidity,
            **{f"hours_{s}": int(counts.get(s, 0)) for s in comfort.STATUSES},
            "assumptions": MetadataValue.json(settings_comfort.model_dump()),
        })

    @asset(key=["comfort", "daily"], deps=[HOURLY_KEY], **common,
           description="comfort.daily: per local day, share of occupied hours green/yellow/red/outside limits and "
                       "mean PMV/PPD per dwelling, building and district; a day x dwelling heat map per building.")
    def comfort_daily(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        green, yellow = settings_comfort.green_max_abs_pmv, settings_comfort.yellow_max_abs_pmv
        metadata = {}
        with warehouse.session() as con:
            rows = comfort.rebuild_summary(con, "day", datetime.now(timezone.utc))
            district = con.execute("""SELECT round(avg(green_share), 3), round(avg(mean_pmv), 2) FROM comfort.daily
                                      WHERE level = 'district'""").fetchall()[0]
            for (building,) in con.execute("SELECT DISTINCT subject FROM comfort.daily WHERE level = 'building' ORDER BY 1").fetchall():
                path = comfort.render_heatmap(con, building, settings.artifacts / f"comfort_{building}.png", green, yellow)
                encoded = base64.b64encode(path.read_bytes()).decode()
                metadata[f"heatmap_{building}"] = MetadataValue.md(f"![comfort {building}](data:image/png;base64,{encoded})")
                metadata[f"path_{building}"] = MetadataValue.path(str(path))
        context.log.info(f"comfort.daily: {rows} rows; district mean green share {district[0]}, mean PMV {district[1]}")
        return MaterializeResult(metadata={"dagster/row_count": rows, "district_green_share": district[0],
                                           "district_mean_pmv": district[1], **metadata})

    @asset(key=["comfort", "monthly"], deps=[HOURLY_KEY], **common,
           description="comfort.monthly: as comfort.daily per local month.")
    def comfort_monthly(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            rows = comfort.rebuild_summary(con, "month", datetime.now(timezone.utc))
            board = con.execute("""SELECT level, subject, strftime(period_start, '%Y-%m') AS month, hours,
                                          round(green_share, 2) AS green, round(yellow_share, 2) AS yellow,
                                          round(red_share, 2) AS red, round(mean_pmv, 2) AS pmv, round(mean_ppd, 1) AS ppd
                                   FROM comfort.monthly WHERE level <> 'dwelling' ORDER BY level, subject, month""").df()
        return MaterializeResult(metadata={"dagster/row_count": rows, "buildings_and_district": MetadataValue.md(board.to_markdown(index=False))})

    return [comfort_hourly, comfort_daily, comfort_monthly]
