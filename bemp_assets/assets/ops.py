"""ops layer: the installation status board and the missing-data heat map.

Both are snapshots of the whole history (not partitioned); they refresh after the pipeline
(`bemp run`, or the automation sensor when raw data changes).
"""
import base64
from datetime import datetime, timedelta, timezone

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from bemp_assets.automation import follows_upstream
from bemp_assets.domain.commissioning import register_rules
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from bemp_assets.domain.status import coverage_matrix, format_board, installation_status, render_heatmap, write_status
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, column_schema


def build_ops_assets(raw_keys: list[AssetKey], config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name="ops", pool=WAREHOUSE_POOL, kinds={"duckdb"}, deps=raw_keys,
                  automation_condition=follows_upstream())

    @asset(key=["ops", "installation_status"], **common,
           description="ops.installation_status: one row per device and per sensor, green (reporting), red (silent "
                       "longer than its freshness threshold, with last_seen) or black (expected, never reported).")
    def installation_status_board(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        as_of = config.commissioning.as_of or datetime.now(timezone.utc)
        with warehouse.session() as con:
            register_rules(con, config)
            board = installation_status(con, as_of, config.expected_variables())
            write_status(con, board)
            con_schema = con.execute("DESCRIBE ops.installation_status").fetchall()
        counts = board[board["level"] == "sensor"]["status"].value_counts().to_dict()
        context.log.info(f"status as of {as_of:%Y-%m-%d %H:%M} UTC: {counts}")
        return MaterializeResult(metadata={
            "dagster/row_count": len(board),
            "dagster/column_schema": column_schema(con_schema),
            "as_of": as_of.isoformat(),
            **{f"sensors_{colour}": int(counts.get(colour, 0)) for colour in ("green", "red", "black")},
            "board": MetadataValue.md("```\n" + format_board(board) + "\n```"),
        })

    @asset(key=["ops", "coverage_heatmap"], **common,
           description="Missing-data heat map: variable x site-local day coloured by coverage (PNG in "
                       "$BEMP_HOME/artifacts), from the first to the last reading.")
    def coverage_heatmap(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            first, last = con.execute("SELECT min(ts), max(ts) FROM raw.measurements").fetchone()
            if first is None:
                return MaterializeResult(metadata={"dagster/row_count": 0, "note": "no readings yet"})
            matrix = coverage_matrix(con, first, last + timedelta(days=1), config.site.timezone)
        path = render_heatmap(matrix, settings.artifacts / "coverage_heatmap.png",
                              f"coverage per day, {matrix.columns[0]} .. {matrix.columns[-1]}")
        encoded = base64.b64encode(path.read_bytes()).decode()
        context.log.info(f"heat map {path}: {matrix.shape[0]} variables x {matrix.shape[1]} days")
        return MaterializeResult(metadata={
            "dagster/row_count": int(matrix.shape[0]),
            "dagster/column_schema": TableSchema(columns=[TableColumn("variable_id", "VARCHAR"),
                                                          *(TableColumn(str(day), "DOUBLE coverage") for day in matrix.columns[:3]),
                                                          TableColumn("...", f"{matrix.shape[1]} days in all")]),
            "days": int(matrix.shape[1]),
            "path": MetadataValue.path(str(path)),
            "heatmap": MetadataValue.md(f"![coverage heat map](data:image/png;base64,{encoded})"),
            "days_below_90pct": int((matrix < 0.9).to_numpy().sum()),
        })

    return [installation_status_board, coverage_heatmap]

