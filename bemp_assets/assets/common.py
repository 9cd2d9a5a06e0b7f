"""What every warehouse asset shares: the pool, the time windows it covers, its metadata."""
from __future__ import annotations

from datetime import datetime
from typing import Iterator

import duckdb
from dagster import (
    AssetExecutionContext,
    MetadataValue,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
)

# DuckDB allows one writing process per file: every step touching the warehouse runs in this
# pool, limited to 1 in .dagster_home/dagster.yaml (pools: default_limit: 1).
WAREHOUSE_POOL = "duckdb"
# A backfill of many days is processed this many partitions at a time: memory stays flat
# and the Dagster log shows progress per chunk.
CHUNK_DAYS = 31


def run_window(context: AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start, window.end


def chunks(context: AssetExecutionContext, size: int = CHUNK_DAYS) -> Iterator[tuple[int, int, datetime, datetime]]:
    """(index, count, start, end) for consecutive groups of ``size`` partitions of this run."""
    partitions: TimeWindowPartitionsDefinition = context.assets_def.partitions_def
    keys = context.partition_keys
    groups = [keys[i:i + size] for i in range(0, len(keys), size)]
    for index, group in enumerate(groups, start=1):
        start = partitions.time_window_for_partition_key(group[0]).start
        end = partitions.time_window_for_partition_key(group[-1]).end
        yield index, len(groups), start, end


def column_schema(described: list[tuple]) -> TableSchema:
    """A Dagster table schema from DuckDB's DESCRIBE rows (name, type, ...)."""
    return TableSchema(columns=[TableColumn(name=c[0], type=c[1]) for c in described])


def table_metadata(con: duckdb.DuckDBPyConnection, table: str, time_column: str,
                   start: datetime, end: datetime, where: str = "TRUE", preview_rows: int = 8,
                   order_by: list[str] | None = None) -> dict:
    """Row count, column schema and a markdown preview of ``table`` rows inside [start, end)
    that also satisfy ``where``, for the materialisation's metadata."""
    where = f"WHERE {time_column} >= $start AND {time_column} < $end AND ({where})"
    params = {"start": start, "end": end}
    count = con.execute(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]
    order = ", ".join(f'"{c}"' for c in order_by) if order_by else "variable_id"
    preview = con.execute(f"SELECT * FROM {table} {where} ORDER BY {time_column}, {order} LIMIT {preview_rows}", params).df()
    return {
        "dagster/row_count": int(count),
        "dagster/column_schema": column_schema(con.execute(f"DESCRIBE {table}").fetchall()),
        "dagster/table_name": f"warehouse.{table}",
        "preview": MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "_no rows in this window_"),
        "window": f"{start.isoformat()} .. {end.isoformat()}",
    }
