"""report layer (thin): the day-by-month and category reports, and the BI snapshot.

All are unpartitioned snapshots over the whole history; they follow their upstreams with the
project's automation condition (``follows_upstream``) and run in the ``duckdb`` pool. The
snapshot's domain code is bemp_assets/domain/snapshot.py (docs/bi.md).
"""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from bemp_assets.automation import follows_upstream
from bemp_assets.domain.settings import Settings
from bemp_assets.domain.snapshot import publish_snapshot
from resources import WarehouseResource

from .common import WAREHOUSE_POOL

SNAPSHOT_KEY = AssetKey(["report", "bi_snapshot"])


def bi_dir(settings: Settings):
    return settings.home / "bi"


def build_snapshot_asset(upstream: list[AssetKey], settings: Settings) -> AssetsDefinition:
    @asset(key=SNAPSHOT_KEY, deps=upstream, group_name="report", pool=WAREHOUSE_POOL, kinds={"duckdb", "parquet"},
           automation_condition=follows_upstream(),
           description="The read-only BI snapshot $BEMP_HOME/bi/bemp_bi.duckdb (schema `bi`, docs/bi.md) and one "
                       "Parquet file per view in $BEMP_HOME/bi/parquet, each written aside and renamed atomically: "
                       "a BI client never blocks a run and never sees a half-written snapshot.")
    def bi_snapshot(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        import duckdb

        path = publish_snapshot(warehouse.database, bi_dir(settings))
        with duckdb.connect(str(path), read_only=True) as con:
            rows = dict(con.execute("SELECT view_name, row_count FROM bi.snapshot_info ORDER BY view_name").fetchall())
        context.log.info(f"BI snapshot {path}: {len(rows)} views, {sum(rows.values())} rows")
        return MaterializeResult(metadata={
            "path": MetadataValue.path(str(path)),
            "views": MetadataValue.json(rows),
            "dagster/row_count": sum(rows.values()),
        })

    return bi_snapshot
