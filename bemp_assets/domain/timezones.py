"""Local wall-clock time -> UTC, with the two DST cases handled explicitly.

* Autumn fold: a local hour happens twice. Readings are taken in file order per series; the
  first pass through the repeated hour is summer time. Once the series has reached the last
  expected sample of that hour (``hour + 3600 - interval``), a reading whose local time is not
  later than one already seen is the second pass, winter time. So the repeated hour neither
  collapses onto one instant nor fails, and a duplicated line inside the first pass stays a
  duplicate (rejected as such) instead of inventing a winter-time reading.
* Spring gap: a local hour does not exist. A reading stamped inside it is impossible and is
  rejected with that reason; nothing is invented for the missing hour.

Only the distinct local timestamps go through pandas/zoneinfo (tens of thousands at most);
the join back to the rows happens in DuckDB, so the cost does not grow with row count in Python.
The window that finds the second pass runs only over rows of a repeated hour, and only when a
file holds one.
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd


def floored(numerator: str, divisor: int) -> str:
    """SQL: integer ``numerator`` divided by ``divisor``, rounded down: the number of a time
    bucket. DuckDB's ``//`` truncates toward zero, which would put an instant just before 1970
    into the bucket after it."""
    return f"({numerator} // {divisor} - ({numerator} % {divisor} < 0)::BIGINT)"


QUARTER_US = 900_000_000
# CTE ``local_days``(quarter, day, split): the site-local day ($tz) of every UTC quarter hour
# from $start's to $end, by quarter number (:func:`quarter_of`); ``split`` where a local
# midnight falls inside the quarter, which only a UTC offset that is not a whole number of
# quarter hours makes (none since 1972). A reading joined on its quarter number gets its day
# without a time-zone conversion of its own (:func:`local_day_of`): 9x faster per month of 100
# meters than timezone() per reading
LOCAL_DAYS = f"""local_days AS (
    SELECT {floored("epoch_us(q)", QUARTER_US)} AS quarter, timezone($tz, q)::DATE AS day,
           timezone($tz, q + INTERVAL {QUARTER_US - 1} MICROSECONDS)::DATE <> timezone($tz, q)::DATE AS split
    FROM (SELECT unnest(generate_series(make_timestamptz({floored("epoch_us($start::TIMESTAMPTZ)", QUARTER_US)} * {QUARTER_US}),
                                        $end::TIMESTAMPTZ, INTERVAL 15 MINUTE)) AS q)
)"""


def quarter_of(reading: str) -> str:
    """SQL: the number of the UTC quarter hour of ``reading``.ts, as in ``local_days``."""
    return floored(f"epoch_us({reading}.ts)", QUARTER_US)


def local_day_of(reading: str, days: str = "l") -> str:
    """SQL: the site-local day of ``reading``.ts, joined with ``local_days`` as ``days``."""
    return f"CASE WHEN {days}.split THEN timezone($tz, {reading}.ts)::DATE ELSE {days}.day END"


def local_time_map(con: duckdb.DuckDBPyConnection, rows: str, tz: str, out: str) -> None:
    """Create temp table ``out``(local_ts, utc_first, utc_second, nonexistent, ambiguous)
    for every distinct non-null ``local_ts`` of table ``rows``."""
    local = pd.DatetimeIndex(
        con.execute(f"SELECT DISTINCT local_ts FROM {rows} WHERE local_ts IS NOT NULL").df()["local_ts"]
    )
    n = len(local)
    first = local.tz_localize(tz, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    second = local.tz_localize(tz, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    frame = pd.DataFrame({
        "local_ts": local,
        "utc_first": first.tz_convert("UTC"),
        "utc_second": second.tz_convert("UTC"),
    })
    con.register(f"{out}_df", frame)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT local_ts::TIMESTAMP AS local_ts, utc_first, utc_second,
               utc_first IS NULL AS nonexistent,
               coalesce(utc_first <> utc_second, false) AS ambiguous
        FROM {out}_df
    """)
    con.unregister(f"{out}_df")


def second_pass(con: duckdb.DuckDBPyConnection, rows: str, time_map: str, out: str, interval_s: int = 60) -> bool:
    """Create temp table ``out``(rid) of the rows of ``rows``(rid, series, local_ts) that are the
    second pass through a repeated (autumn) hour, i.e. winter time; ``time_map`` is
    :func:`local_time_map`'s table. Returns False, creating nothing, when no local time of the
    map is ambiguous (every file but the one holding the autumn change)."""
    if not con.execute(f"SELECT count(*) FROM {time_map} WHERE ambiguous").fetchone()[0]:
        return False
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {out} AS
        SELECT rid FROM (
            SELECT r.rid, r.local_ts,
                   max(r.local_ts) OVER (
                       PARTITION BY r.series, date_trunc('hour', r.local_ts)
                       ORDER BY r.rid ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
                   ) AS seen
            FROM {rows} r SEMI JOIN (SELECT local_ts FROM {time_map} WHERE ambiguous) m USING (local_ts)
        )
        WHERE local_ts <= seen AND seen >= date_trunc('hour', local_ts) + to_seconds(3600 - {int(interval_s)})
    """)
    return True
