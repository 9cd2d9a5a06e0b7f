"""agg layer: hourly statistics of the clean series."""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, BackfillPolicy, MaterializeResult, PartitionsDefinition, asset

from bemp_assets.domain.chains import FilterChain, chains_version
from bemp_assets.domain.transform import rebuild_hourly
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, chunks, run_window, table_metadata


# bump when the hourly SQL changes
HOURLY_VERSION = "1"


def build_hourly_asset(partitions: PartitionsDefinition, clean_key: AssetKey, chains: list[FilterChain]) -> AssetsDefinition:
    # The chains decide each variable's kind and interval after cleaning, hence which hours get
    # a sum and how coverage is counted: a chain change makes hourly change too.
    @asset(
        key=["agg", "hourly"],
        group_name="agg",
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        deps=[clean_key],
        code_version=f"{HOURLY_VERSION}-{chains_version(chains)}",
        description="agg.hourly: mean, min, max, sum (interval kinds only), n and coverage per variable "
                    "and UTC hour; replaced per partition window.",
    )
    def hourly(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        start, end = run_window(context)
        with warehouse.session() as con:
            for index, count, chunk_start, chunk_end in chunks(context):
                stats = rebuild_hourly(con, chunk_start, chunk_end)
                context.log.info(f"hourly [{index}/{count}] {chunk_start.date()} .. {chunk_end.date()}: {stats['rows']} rows")
            metadata = table_metadata(con, "agg.hourly", "hour", start, end)
        return MaterializeResult(metadata=metadata)

    return hourly
