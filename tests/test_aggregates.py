"""agg.hourly and agg.daily bucket readings by number (UTC hour; UTC quarter hour looked up to
its local day) instead of converting every reading: the buckets must be those of the plain
conversions at the edges the numbers make, checked against Python's zoneinfo."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from bemp_assets.domain.transform import rebuild_daily, rebuild_hourly

UTC = timezone.utc


def seed(con, stamps: list[datetime], tz: str = "UTC") -> None:
    """One stored clean variable 'v' (10-minute interval) with value i + 1 at stamps[i]."""
    con.execute("INSERT INTO meta.variables VALUES ('v', 's', NULL, 'd', 'p', NULL, NULL, 'instantaneous', NULL, "
                "?, 600, now(), now())", [tz])
    con.executemany("INSERT INTO clean.stored VALUES ('v', ?, ?, 'c', '1')", [[ts, i + 1.0] for i, ts in enumerate(stamps)])


def test_hourly_buckets_are_utc_hours_on_both_sides_of_1970(con):
    """23:10 and 23:50 on 31 Dec 1969 and 00:10 on 1 Jan 1970 make two hours, not one (DuckDB's
    // truncates toward zero), and a session in a half-hour zone changes nothing."""
    stamps = [datetime(1969, 12, 31, 23, 10, tzinfo=UTC), datetime(1969, 12, 31, 23, 50, tzinfo=UTC),
              datetime(1970, 1, 1, 0, 10, tzinfo=UTC)]
    seed(con, stamps)
    con.execute("SET TimeZone = 'Asia/Kolkata'")
    assert rebuild_hourly(con, stamps[0] - timedelta(hours=1), stamps[2] + timedelta(hours=1))["rows"] == 2
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute("SELECT hour, n, mean, min, max FROM agg.hourly ORDER BY hour").fetchall()
    assert rows == [(datetime(1969, 12, 31, 23, tzinfo=UTC), 2, 1.5, 1.0, 2.0), (datetime(1970, 1, 1, 0, tzinfo=UTC), 1, 3.0, 3.0, 3.0)]


def daily_counts(con) -> dict[date, int]:
    return dict(con.execute("SELECT day, n FROM agg.daily ORDER BY day").fetchall())


def test_daily_days_where_local_midnight_falls_inside_a_quarter_hour(con):
    """Monrovia kept UTC-0:44:30 until 1972: its local midnight falls at 00:44:30 UTC, inside
    the quarter from 00:30, so that quarter's readings are converted one by one."""
    tz = "Africa/Monrovia"
    stamps = [datetime(1970, 6, 2, 0, 40, tzinfo=UTC), datetime(1970, 6, 2, 0, 44, 40, tzinfo=UTC),
              datetime(1970, 6, 2, 0, 50, tzinfo=UTC), datetime(1970, 6, 2, 12, tzinfo=UTC)]
    seed(con, stamps, tz)
    rebuild_daily(con, datetime(1970, 6, 1, tzinfo=UTC), datetime(1970, 6, 4, tzinfo=UTC), tz)
    expected = Counter(ts.astimezone(ZoneInfo(tz)).date() for ts in stamps)
    assert expected == {date(1970, 6, 1): 1, date(1970, 6, 2): 3}
    assert daily_counts(con) == expected


def test_daily_days_across_both_dst_changes_and_before_1970(con):
    """Every 10 minutes over the DST days of 2021 in Rome and around 1 Jan 1970: each reading on
    the day zoneinfo gives it, and each day's expected seconds (23 h, 25 h) in its coverage."""
    tz = "Europe/Rome"
    spans = [(datetime(2021, 3, 27, 20, tzinfo=UTC), datetime(2021, 3, 29, 2, tzinfo=UTC)),
             (datetime(2021, 10, 30, 20, tzinfo=UTC), datetime(2021, 11, 1, 2, tzinfo=UTC)),
             (datetime(1969, 12, 31, 20, tzinfo=UTC), datetime(1970, 1, 1, 4, tzinfo=UTC))]
    stamps = [a + timedelta(minutes=10 * i) for a, b in spans for i in range(int((b - a) / timedelta(minutes=10)))]
    seed(con, stamps, tz)
    for a, b in spans:
        rebuild_daily(con, a - timedelta(days=1), b + timedelta(days=1), tz)
    assert daily_counts(con) == Counter(ts.astimezone(ZoneInfo(tz)).date() for ts in stamps)
    coverage = dict(con.execute("SELECT day, coverage FROM agg.daily").fetchall())
    assert coverage[date(2021, 3, 28)] == 1.0 and coverage[date(2021, 10, 31)] == 1.0  # 23 h and 25 h of 10-min readings
    n = daily_counts(con)
    assert (n[date(2021, 3, 28)], n[date(2021, 10, 31)]) == (23 * 6, 25 * 6)
