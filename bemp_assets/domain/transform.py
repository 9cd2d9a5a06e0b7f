"""clean -> agg.hourly, set-based in DuckDB, one time window at a time."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from .timezones import LOCAL_DAYS, floored, local_day_of, quarter_of
from .warehouse import write_transaction

# Each variable's kind and sampling interval after its filter chain (raw's before the first
# clean run): decides which aggregates get a sum and how coverage is counted.
PROFILE = """profile AS (
    SELECT v.variable_id,
           coalesce(p.clean_kind, CASE WHEN v.kind = 'cumulative' THEN 'interval' ELSE v.kind END) AS kind,
           coalesce(p.clean_interval_s, v.expected_interval_s) AS interval_s
    FROM meta.variables v LEFT JOIN meta.clean_variables p USING (variable_id)
)"""


# seconds in the site-local day ``bucket`` (a DATE): 82,800 or 90,000 on DST days
LOCAL_DAY_SECONDS = "(epoch(timezone($tz, (bucket + 1)::TIMESTAMP)) - epoch(timezone($tz, bucket::TIMESTAMP)))"


@dataclass(frozen=True)
class Buckets:
    """How an aggregate ``table`` buckets clean readings: ``group``, the SQL of a reading's bucket
    (grouped on; ``c`` is the reading); ``stored``, the value stored for a bucket (of
    ``bucket``); ``seconds``, its length (of ``bucket`` as stored); ``keep``, the table's rows
    in the window; ``local_days``, whether ``group`` reads the CTE of that name (timezones.py)."""
    table: str
    group: str
    stored: str
    seconds: str
    keep: str
    local_days: bool = False


HOUR_US = 3_600_000_000
# the UTC hour as a number (hours since 1970): the same hours as time_bucket(INTERVAL 1 HOUR,
# c.ts), which buckets in UTC, at a third of its cost
HOURLY = Buckets("agg.hourly", floored("epoch_us(c.ts)", HOUR_US), f"make_timestamptz(bucket * {HOUR_US})", "3600.0",
                 "hour >= $start AND hour < $end")
DAILY = Buckets("agg.daily", local_day_of("c"), "bucket", LOCAL_DAY_SECONDS,
                "day >= timezone($tz, $start)::DATE AND day < timezone($tz, $end)::DATE", local_days=True)


def _rebuild_aggregate(con: duckdb.DuckDBPyConnection, buckets: Buckets, params: dict) -> dict[str, int]:
    """Replace the rows of ``buckets.table`` whose bucket lies in the window with fresh
    aggregates of clean, in one transaction."""
    days_cte, days_join = ((f", {LOCAL_DAYS}", f" JOIN local_days l ON l.quarter = {quarter_of('c')}")
                           if buckets.local_days else ("", ""))

    def rewrite(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        deleted = con.execute(f"DELETE FROM {buckets.table} WHERE {buckets.keep}", params).fetchone()[0]
        inserted = con.execute(f"""
            INSERT INTO {buckets.table}
            WITH {PROFILE}{days_cte},
            stats AS (
                SELECT c.variable_id, {buckets.group} AS bucket,
                       avg(c.value) AS mean, min(c.value) AS lo, max(c.value) AS hi,
                       CASE WHEN any_value(p.kind) = 'interval' THEN sum(c.value) END AS total,
                       count(*) AS n, any_value(p.interval_s) AS interval_s
                FROM clean.measurements c JOIN profile p USING (variable_id){days_join}
                WHERE c.ts >= $start AND c.ts < $end
                GROUP BY c.variable_id, bucket
            )
            SELECT variable_id, bucket, mean, lo, hi, total, n, least(1.0, n * interval_s / {buckets.seconds})
            FROM (SELECT * REPLACE ({buckets.stored} AS bucket) FROM stats)
        """, params).fetchone()[0]
        return {"deleted": int(deleted), "rows": int(inserted)}
    return write_transaction(con, rewrite, what=f"rewrite {buckets.table}")


def rebuild_hourly(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Replace agg.hourly rows with hour in [start, end) from clean, in one transaction.

    Kind and sampling interval are the variable's *after* its filter chain
    (meta.clean_variables; raw's when the chain has not run yet). ``sum`` is filled for
    interval energy only (summing power or temperature means nothing). ``coverage`` is samples
    present over samples expected in the hour, capped at 1. Hours with no sample have no row.
    """
    return _rebuild_aggregate(con, HOURLY, {"start": start, "end": end})


def rebuild_daily(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, tz: str) -> dict[str, int]:
    """Replace agg.daily for the site-local days in [start, end) from clean (one transaction).

    ``coverage`` is clean samples over samples expected in that local day (23, 24 or 25 hours);
    ``sum`` only for interval energy. Days are those of the partitions (site time zone).
    """
    return _rebuild_aggregate(con, DAILY, {"start": start, "end": end, "tz": tz})
