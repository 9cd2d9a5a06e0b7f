"""clean layer: raw readings after each variable's filter chain.

In this version the chain is pass-through except for cumulative counters, which are
de-accumulated into energy per interval (bemp_assets.domain.transform). Always recomputed from
raw, never from already-cleaned data, so a backfill re-applies the current logic to history.
"""

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
)

from bemp_assets.domain.transform import rebuild_clean
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, chunks, run_window, table_metadata


def build_clean_asset(partitions: PartitionsDefinition, raw_keys: list[AssetKey]) -> AssetsDefinition:
    # A day's de-accumulated energy needs the last counter reading of the day before and the
    # first reading of the day after, hence the window of raw partitions D-1 .. D+1.
    neighbours = TimeWindowPartitionMapping(start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True)

    @asset(
        key=["clean", "measurements"],
        group_name="clean",
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        deps=[AssetDep(key, partition_mapping=neighbours) for key in raw_keys],
        description="clean.measurements: every variable after its filter chain (counters de-accumulated "
                    "to energy per interval, labelled by interval start); replaced per partition window.",
    )
    def clean_measurements(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        start, end = run_window(context)
        written = 0
        with warehouse.session() as con:
            for index, count, chunk_start, chunk_end in chunks(context):
                stats = rebuild_clean(con, chunk_start, chunk_end)
                written += stats["rows"]
                context.log.info(f"clean [{index}/{count}] {chunk_start.date()} .. {chunk_end.date()}: {stats['rows']} rows")
            metadata = table_metadata(con, "clean.measurements", "ts", start, end)
        return MaterializeResult(metadata=metadata)

    return clean_measurements
