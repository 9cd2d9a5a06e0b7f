"""agg layer: hourly and daily statistics of the clean series.

``agg/daily`` is where downstream use (KPIs, models, reports) starts, so it carries the
blocking completeness check: a day below its threshold stops whatever depends on it.
"""
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, PartitionsDefinition

from bemp_assets.automation import follows_upstream
from bemp_assets.checks import emit_checks, evaluate_rules, specs
from bemp_assets.domain.chains import chains_version
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.transform import rebuild_daily, rebuild_hourly
from resources import WarehouseResource

from .common import chunks, report_partitions, run_window, warehouse_asset

# bump when the aggregation SQL changes
AGG_VERSION = "1"


def build_agg_assets(partitions: PartitionsDefinition, clean_key: AssetKey, config: BempConfig) -> list[AssetsDefinition]:
    # The chains decide each variable's kind and interval after cleaning, hence which rows get
    # a sum and how coverage is counted: a chain change makes the aggregates change too.
    version = f"{AGG_VERSION}-{chains_version(config.filter_chains)}"
    common = dict(partitions_def=partitions, kinds={"duckdb"}, group_name="agg", code_version=version,
                  automation_condition=follows_upstream())

    @warehouse_asset(key=["agg", "hourly"], deps=[clean_key], **common,
           description="agg.hourly: mean, min, max, sum (interval energy only), n and coverage per variable "
                       "and UTC hour; replaced per partition window.")
    def hourly(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            for index, count, chunk_start, chunk_end in chunks(context, con):
                stats = rebuild_hourly(con, chunk_start, chunk_end)
                context.log.info(f"hourly [{index}/{count}] {chunk_start.date()} .. {chunk_end.date()}: {stats['rows']} rows")
            metadata, _ = report_partitions(context, con, "agg.hourly", "hour")
        return MaterializeResult(metadata=metadata)

    @warehouse_asset(key=["agg", "daily"], deps=[hourly.key], **common,
           check_specs=specs(["agg", "daily"], ["completeness"]),
           description="agg.daily: per variable and site-local day, mean, min, max, sum (interval energy), n and "
                       "coverage. Its blocking completeness check guards KPIs and models.")
    def daily(context: AssetExecutionContext, warehouse: WarehouseResource):
        start, end = run_window(context)
        tz = config.site.timezone
        with warehouse.session() as con:
            for index, count, chunk_start, chunk_end in chunks(context, con):
                stats = rebuild_daily(con, chunk_start, chunk_end, tz)
                context.log.info(f"daily [{index}/{count}] {chunk_start.date()} .. {chunk_end.date()}: {stats['rows']} rows")
            metadata, _ = report_partitions(context, con, "agg.daily", "day", is_date=True)
            verdicts = evaluate_rules(context, con, config, ["completeness"], start, end)
        yield MaterializeResult(metadata=metadata)
        yield from emit_checks(context, verdicts)

    return [hourly, daily]
