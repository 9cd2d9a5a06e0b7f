"""ops layer: the installation status board and the missing-data heat map.

Both are snapshots of the whole history (not partitioned); they refresh after the pipeline
(`bemp run`, or the automation sensor when raw data changes).
"""
import base64
from datetime import datetime, timezone

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from bemp_assets.automation import follows_upstream
from bemp_assets.domain.commissioning import variable_labels
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from bemp_assets.domain.status import current_board, format_board, source_heatmaps, write_status
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, column_schema, retry_on_conflict


def build_ops_assets(raw_keys: list[AssetKey], config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name="ops", pool=WAREHOUSE_POOL, kinds={"duckdb"}, deps=raw_keys,
                  automation_condition=follows_upstream())

    @asset(key=["ops", "installation_status"], **common,
           description="ops.installation_status: one row per device and per sensor, green (reporting), red (silent "
                       "longer than its freshness limit, with last_seen) or black (expected, never reported), with "
                       "the days judged incomplete or without any data. Judged now while data is live, at the "
                       "newest reading when the data is historical (the header says which).")
    @retry_on_conflict  # DuckLake: a write-write conflict runs the step again
    def installation_status_board(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            when, board = current_board(con, config, datetime.now(timezone.utc))
            write_status(con, board)
            labels = variable_labels(con)
            con_schema = con.execute("DESCRIBE ops.installation_status").fetchall()
        counts = board[board["level"] == "sensor"]["status"].value_counts().to_dict()
        context.log.info(f"status {when.header()}: " + ", ".join(f"{n} {colour}" for colour, n in sorted(counts.items())))
        return MaterializeResult(metadata={
            "dagster/row_count": len(board),
            "dagster/column_schema": column_schema(con_schema),
            "as_of": when.as_of.isoformat(),
            "judged_at": when.header(),
            **{f"sensors_{colour}": int(counts.get(colour, 0)) for colour in ("green", "red", "black")},
            "board": MetadataValue.md(f"Installation status {when.header()}\n\n```\n{format_board(board, labels)}\n```"),
        })

    @asset(key=["ops", "coverage_heatmap"], **common,
           description="Missing-data heat maps: per source, variable x site-local day over the source's own life "
                       "(first to last reading), coloured by the share of expected readings (PNGs in "
                       "$BEMP_HOME/artifacts, one metadata entry per source).")
    @retry_on_conflict  # DuckLake: a write-write conflict runs the step again
    def coverage_heatmap(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            maps = source_heatmaps(con, config.site.timezone, settings.artifacts)
        if not maps:
            return MaterializeResult(metadata={"dagster/row_count": 0, "note": "no readings yet"})
        metadata = {"dagster/row_count": sum(len(matrix) for _, matrix, _ in maps)}
        for source, matrix, path in maps:
            encoded = base64.b64encode(path.read_bytes()).decode()
            context.log.info(f"heat map {path}: {matrix.shape[0]} variables x {matrix.shape[1]} days")
            metadata[f"heatmap_{source}"] = MetadataValue.md(
                f"**{source}**, {matrix.columns[0]} .. {matrix.columns[-1]}: {int((matrix < 0.9).to_numpy().sum())} "
                f"variable-days below 90 %\n\n![coverage of {source}](data:image/png;base64,{encoded})")
            metadata[f"path_{source}"] = MetadataValue.path(str(path))
        return MaterializeResult(metadata=metadata)

    return [installation_status_board, coverage_heatmap]

