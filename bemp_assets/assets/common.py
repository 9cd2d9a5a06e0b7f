"""What every warehouse asset shares: the pool, the time windows it covers, its metadata."""
from __future__ import annotations

import functools
import inspect
import os
import random
from datetime import datetime
from typing import Any, Callable, Iterator

import duckdb
import pandas as pd
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MetadataValue,
    PartitionsDefinition,
    RetryRequested,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from bemp_assets.domain.lake import conflict_summary, is_conflict, is_lake
from bemp_assets.domain.warehouse import release_memory

# DuckDB allows one writing process per file: every step touching the warehouse runs in this
# pool, limited to 1 in .dagster_home/dagster.yaml (pools: default_limit: 1).
WAREHOUSE_POOL = "duckdb"
# A backfill of many days is processed this many partitions at a time: memory stays flat
# and the Dagster log shows progress per chunk.
CHUNK_DAYS = 31
# On DuckLake (BEMP_WAREHOUSE=ducklake:...) many processes write at once: a backfill becomes
# runs of this many days each, which the run queue executes in parallel (deploy/lake/).
LAKE_DAYS_PER_RUN = 7
# a step that still loses a write-write conflict on DuckLake (after the transaction's own
# retries, warehouse.write_transaction) is run again, at most this many times, after a wait
# that doubles from 1 s (at most 60 s)
CONFLICT_RETRIES = 6


def run_window(context: AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start, window.end


def chunks(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection | None = None,
           size: int = CHUNK_DAYS) -> Iterator[tuple[int, int, datetime, datetime]]:
    """(index, count, start, end) for consecutive groups of ``size`` partitions of this run.
    With the warehouse connection ``con``, the memory DuckDB held for a chunk is given back
    after it (warehouse.release_memory): without it a year's chunks crept up to the memory cap,
    which a month never reaches, and what follows the last chunk in the step (its checks) peaked
    on top of what that chunk left (BENCHMARKS.md, issue 14, sixth round)."""
    partitions: TimeWindowPartitionsDefinition = context.assets_def.partitions_def
    keys = context.partition_keys
    groups = [keys[i:i + size] for i in range(0, len(keys), size)]
    for index, group in enumerate(groups, start=1):
        start = partitions.time_window_for_partition_key(group[0]).start
        end = partitions.time_window_for_partition_key(group[-1]).end
        yield index, len(groups), start, end
        if con is not None:
            release_memory(con)


def column_schema(described: list[tuple]) -> TableSchema:
    """A Dagster table schema from DuckDB's DESCRIBE rows (name, type, ...)."""
    return TableSchema(columns=[TableColumn(name=c[0], type=c[1]) for c in described])


def report_partitions(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection, table: str, time_column: str,
                      where: str = "TRUE", order_by: list[str] | None = None, is_date: bool = False,
                      written_at: datetime | None = None, written_column: str = "ingested_at", preview_rows: int = 5) -> tuple[dict, list[str]]:
    """Give every partition of the run its own metadata; return the run's, and the partitions
    holding rows.

    Per partition (``context.add_asset_metadata(..., partition_key=...)``): ``dagster/row_count``
    (rows of ``table`` on that site-local day that satisfy ``where``), its window, a preview of
    its first rows and, with ``written_at``, ``rows_written`` (rows whose ``written_column`` is
    this run's write time: inserted or changed by this run). Returned, for every partition alike: ``table_rows_total`` (all such rows of the
    table, every day), the column schema and table name, and the run's partition range. One
    grouped query for all partitions and one count, however long the range: the day's first
    rows are kept by ``min_by(row, key, n)`` (n rows per day in memory), not by a window over
    every row of the range (which held the whole range: 1.1 GB for 90 days of 100 meters).
    """
    start, end = run_window(context)
    partitions: TimeWindowPartitionsDefinition = context.assets_def.partitions_def
    tz = partitions.timezone  # a partition is one day in this zone
    day = time_column if is_date else f"timezone($tz, {time_column})::DATE"
    bounds = (start.date(), end.date()) if is_date else (start, end)
    order = ", ".join(f'"{c}"' for c in order_by) if order_by else "variable_id"
    written = f"{written_column} >= $written_at" if written_at else "FALSE"
    frame = con.execute(f"""
        WITH rows AS (SELECT *, {day} AS _day FROM {table} WHERE {time_column} >= $start AND {time_column} < $end AND ({where})),
        days AS (SELECT count(*) AS _rows, count(*) FILTER (WHERE {written}) AS _written,
                        min_by(_r, ({time_column}, {order}), {int(preview_rows)}) AS _first FROM rows _r GROUP BY _day)
        SELECT * FROM (SELECT unnest(_first, max_depth := 2), _rows, _written FROM days)
        ORDER BY _day, {time_column}, {order}
    """, {"start": bounds[0], "end": bounds[1], **({} if is_date else {"tz": tz}),
          **({"written_at": written_at} if written_at else {})}).df()
    by_day = {pd.Timestamp(d).date().isoformat(): rows for d, rows in frame.groupby("_day")} if len(frame) else {}
    for key in context.partition_keys:
        rows = by_day.get(key)
        window = partitions.time_window_for_partition_key(key)
        context.add_asset_metadata({
            "dagster/row_count": int(rows["_rows"].iloc[0]) if rows is not None else 0,
            **({"rows_written": int(rows["_written"].iloc[0]) if rows is not None else 0} if written_at else {}),
            "window": f"{window.start.isoformat()} .. {window.end.isoformat()}",
            "preview": MetadataValue.md(rows.drop(columns=["_day", "_rows", "_written"]).to_markdown(index=False)
                                        if rows is not None else "_no rows on this day_"),
        }, partition_key=key)
    total = con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchall()[0][0]
    keys = context.partition_keys
    return {
        "table_rows_total": int(total),
        "dagster/column_schema": column_schema(con.execute(f"DESCRIBE {table}").fetchall()),
        "dagster/table_name": f"warehouse.{table}",
        "run_partitions": f"{keys[0]} .. {keys[-1]} ({len(keys)} partition(s) in this run; run_* figures are the run's)",
    }, [key for key in keys if key in by_day]


def warehouse_asset(*, key: list[str], description: str, group_name: str, partitions_def: PartitionsDefinition,
                    check_specs: list[AssetCheckSpec] | None = None, **spec: Any):
    """``@asset`` for a partitioned warehouse asset: pool ``duckdb``, and a range of partitions
    is one run (``BackfillPolicy.single_run()``). Built as a one-spec ``@multi_asset``, whose
    ``backfill_policy`` is a stable parameter (``@asset``'s is marked beta and warns at every
    definition load). ``spec`` takes AssetSpec's fields (kinds, deps, metadata, code_version,
    automation_condition). The op keeps @asset's name (``raw__steel_plant``)."""
    decorate = multi_asset(
        name="__".join(key),
        specs=[AssetSpec(key=key, description=description, group_name=group_name, **spec)],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy(),
        pool=WAREHOUSE_POOL,
        check_specs=check_specs,
    )
    return lambda compute: decorate(retry_on_conflict(compute))


def lake_profile() -> bool:
    """Whether this code location writes a DuckLake (read when the definitions load)."""
    return is_lake(os.environ.get("BEMP_WAREHOUSE", ""))


def backfill_policy() -> BackfillPolicy:
    """One run per range on the embedded file (one writer anyway); runs of LAKE_DAYS_PER_RUN
    days on DuckLake, so a backfill's days are written in parallel."""
    return BackfillPolicy.multi_run(LAKE_DAYS_PER_RUN) if lake_profile() else BackfillPolicy.single_run()


def retry_on_conflict(compute: Callable) -> Callable:
    """``compute`` whose write-write conflict with a concurrent transaction (DuckLake) asks
    Dagster to run the step again (logged as a step retry, at most CONFLICT_RETRIES times, after
    a jittered wait). Every BEMP write is idempotent (windowed delete-then-insert or anti-join
    insert), so a step that ran again leaves what one run would have."""
    if inspect.isgeneratorfunction(compute):
        @functools.wraps(compute)
        def generator(*args, **kwargs):
            try:
                yield from compute(*args, **kwargs)
            except Exception as exc:
                _retry_if_conflict(exc, args[0])
                raise
        return generator

    @functools.wraps(compute)
    def plain(*args, **kwargs):
        try:
            return compute(*args, **kwargs)
        except Exception as exc:
            _retry_if_conflict(exc, args[0])
            raise
    return plain


def _retry_if_conflict(exc: Exception, context: AssetExecutionContext) -> None:
    """Ask for a step retry when ``exc`` is a write-write conflict, saying so in the run's log."""
    if not is_conflict(exc):
        return
    attempt = context.retry_number + 1
    wait = round(min(60.0, 2.0 ** context.retry_number) * (0.5 + random.random()), 1)
    context.log.warning(f"write-write conflict with a concurrent writer ({conflict_summary(exc)}); "
                        f"step retry {attempt}/{CONFLICT_RETRIES} in {wait} s")
    raise RetryRequested(max_retries=CONFLICT_RETRIES, seconds_to_wait=wait) from exc
