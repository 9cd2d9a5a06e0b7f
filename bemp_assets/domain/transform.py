"""raw -> clean -> agg.hourly, set-based in DuckDB, one time window at a time.

Timestamps of interval values (interval energy, de-accumulated counters) label the START of
their interval in every layer, so an hour bucket holds the energy consumed inside that hour.

De-accumulation (the full filter library is issue #3): the energy between two counter readings
is attributed to the interval that ends at the later reading, i.e. labelled
``later_ts - expected_interval``; for regular data that is the earlier reading's timestamp. A
drop of the counter is taken as a reset and the reading after it counts from zero, so no
negative spike appears and the energy after the reset is kept. To compute window
[start, end) a run needs the last reading before ``start`` and the readings up to
``end + expected_interval``; nothing else outside the window is read.
"""
from __future__ import annotations

from datetime import datetime

import duckdb

from .warehouse import transaction


def rebuild_clean(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Replace clean.measurements rows with ts in [start, end) from raw, in one transaction."""
    with transaction(con):
        deleted = con.execute("DELETE FROM clean.measurements WHERE ts >= ? AND ts < ?", [start, end]).fetchone()[0]
        con.execute("""
            INSERT INTO clean.measurements
            WITH counters AS (
                SELECT variable_id, expected_interval_s FROM meta.variables WHERE kind = 'cumulative'
            ),
            previous AS (  -- last reading before the window, however old (gaps keep their energy)
                SELECT m.variable_id, max(m.ts) AS ts
                FROM raw.measurements m SEMI JOIN counters c USING (variable_id)
                WHERE m.ts < $start GROUP BY m.variable_id
            ),
            readings AS (
                SELECT m.variable_id, m.ts, m.value, c.expected_interval_s
                FROM raw.measurements m JOIN counters c USING (variable_id)
                WHERE m.ts >= $start AND m.ts < $end + to_seconds(c.expected_interval_s)
                UNION ALL
                SELECT m.variable_id, m.ts, m.value, c.expected_interval_s
                FROM raw.measurements m JOIN previous p USING (variable_id, ts) JOIN counters c USING (variable_id)
            ),
            deltas AS (
                SELECT variable_id,
                       ts - to_seconds(expected_interval_s) AS ts,
                       CASE WHEN value >= lag(value) OVER w THEN value - lag(value) OVER w ELSE value END AS value,
                       lag(value) OVER w IS NOT NULL AS has_previous
                FROM readings
                WINDOW w AS (PARTITION BY variable_id ORDER BY ts)
            )
            SELECT variable_id, ts, value FROM deltas
            WHERE has_previous AND ts >= $start AND ts < $end
            UNION ALL
            SELECT m.variable_id, m.ts, m.value
            FROM raw.measurements m ANTI JOIN counters c USING (variable_id)
            WHERE m.ts >= $start AND m.ts < $end
        """, {"start": start, "end": end})
        inserted = con.execute("SELECT count(*) FROM clean.measurements WHERE ts >= ? AND ts < ?", [start, end]).fetchone()[0]
    return {"deleted": int(deleted), "rows": int(inserted)}


def rebuild_hourly(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Replace agg.hourly rows with hour in [start, end) from clean, in one transaction.

    ``sum`` is filled for interval and de-accumulated cumulative variables only (summing power
    or temperature means nothing). ``coverage`` is samples present over samples expected in the
    hour, capped at 1. Hours with no sample at all have no row.
    """
    with transaction(con):
        deleted = con.execute("DELETE FROM agg.hourly WHERE hour >= ? AND hour < ?", [start, end]).fetchone()[0]
        con.execute("""
            INSERT INTO agg.hourly
            SELECT c.variable_id, time_bucket(INTERVAL 1 HOUR, c.ts) AS hour,
                   avg(c.value), min(c.value), max(c.value),
                   CASE WHEN any_value(v.kind) IN ('interval', 'cumulative') THEN sum(c.value) END,
                   count(*),
                   least(1.0, count(*) * any_value(v.expected_interval_s) / 3600.0)
            FROM clean.measurements c JOIN meta.variables v USING (variable_id)
            WHERE c.ts >= $start AND c.ts < $end
            GROUP BY c.variable_id, hour
        """, {"start": start, "end": end})
        inserted = con.execute("SELECT count(*) FROM agg.hourly WHERE hour >= ? AND hour < ?", [start, end]).fetchone()[0]
    return {"deleted": int(deleted), "rows": int(inserted)}
