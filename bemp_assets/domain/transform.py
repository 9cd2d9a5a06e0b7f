"""clean -> agg.hourly, set-based in DuckDB, one time window at a time."""
from __future__ import annotations

from datetime import datetime

import duckdb

from .warehouse import transaction


def rebuild_hourly(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Replace agg.hourly rows with hour in [start, end) from clean, in one transaction.

    Kind and sampling interval are the variable's *after* its filter chain
    (meta.clean_variables; raw's when the chain has not run yet). ``sum`` is filled for
    interval energy only (summing power or temperature means nothing). ``coverage`` is samples
    present over samples expected in the hour, capped at 1. Hours with no sample have no row.
    """
    with transaction(con):
        deleted = con.execute("DELETE FROM agg.hourly WHERE hour >= ? AND hour < ?", [start, end]).fetchone()[0]
        inserted = con.execute("""
            INSERT INTO agg.hourly
            WITH profile AS (
                SELECT v.variable_id,
                       coalesce(p.clean_kind, CASE WHEN v.kind = 'cumulative' THEN 'interval' ELSE v.kind END) AS kind,
                       coalesce(p.clean_interval_s, v.expected_interval_s) AS interval_s
                FROM meta.variables v LEFT JOIN meta.clean_variables p USING (variable_id)
            )
            SELECT c.variable_id, time_bucket(INTERVAL 1 HOUR, c.ts) AS hour,
                   avg(c.value), min(c.value), max(c.value),
                   CASE WHEN any_value(p.kind) = 'interval' THEN sum(c.value) END,
                   count(*),
                   least(1.0, count(*) * any_value(p.interval_s) / 3600.0)
            FROM clean.measurements c JOIN profile p USING (variable_id)
            WHERE c.ts >= $start AND c.ts < $end
            GROUP BY c.variable_id, hour
        """, {"start": start, "end": end}).fetchone()[0]
    return {"deleted": int(deleted), "rows": int(inserted)}
