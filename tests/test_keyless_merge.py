"""raw without enforced keys: the merge alone keeps one row per key, revisions as before, a
warehouse created with the keys is rebuilt without them, and files are merged a group of
days at a time. Expected rows are written out by hand."""
from __future__ import annotations

from datetime import date, datetime, timezone

import duckdb
import pytest

from bemp_assets.domain.parsing import partition_range
from bemp_assets.domain.raw_ingest import day_groups, ingest_files
from bemp_assets.domain.warehouse import KEYLESS_TABLES, DuplicateKeys, prepare

NOW = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)
H = "Dispositivo,Parametro,Data,Valore"
WINDOW = (datetime(2016, 10, 31, 23, tzinfo=timezone.utc), datetime(2016, 11, 30, 23, tzinfo=timezone.utc))  # November, Rome


def reach(path, *rows: tuple[str, str]):
    """A REACH file of device d1's power: (``HH:MM DD``, value) per line, November 2016."""
    lines = [f'd1,Potenza attiva,{t.split()[0]}:00 {t.split()[1]}/11/2016,"{v}"' for t, v in rows]
    path.write_text("\n".join([H, *lines]) + "\n", encoding="utf-8")
    return path


def constraints(con) -> list[tuple[str, str]]:
    return con.execute("SELECT DISTINCT schema_name || '.' || table_name, constraint_type FROM duckdb_constraints() "
                       "WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE') AND schema_name = 'raw'").fetchall()


def test_day_groups_join_files_that_share_a_local_day():
    d = date
    # padded spans (file_days): 1-31 Jan, 1-28 Feb, a January revision 10-12 Jan, an unreadable file
    spans = [(d(2023, 12, 31), d(2024, 2, 1)), (d(2024, 1, 31), d(2024, 2, 29)), (d(2024, 1, 9), d(2024, 1, 13)), None]
    assert day_groups(spans) == [[0, 2], [1], [3]]
    # a file bridging both months joins everything, still in merge order
    assert day_groups(spans[:2] + [(d(2024, 1, 30), d(2024, 2, 2))]) == [[0, 1, 2]]


def test_merge_keeps_one_row_per_key_and_logs_revisions(config, tmp_path):
    source = config.source("reach_meters")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first = reach(inbox / "a.csv", ("10:00 01", "1,0"), ("10:01 01", "2,0"), ("10:00 20", "5,0"))
    bounds = partition_range(config.site, NOW)
    with prepare(duckdb.connect(str(tmp_path / "w.duckdb"))) as con:
        assert constraints(con) == []
        ingest_files(con, [first], source, config, WINDOW, NOW, bounds)
        again = ingest_files(con, [first], source, config, WINDOW, NOW, bounds).report
        # a later file revises 10:01 on the 1st; a second one, of other days, is another group
        second = reach(inbox / "b.csv", ("10:01 01", "2,5"), ("10:02 01", "3,0"))
        third = reach(inbox / "c.csv", ("10:00 10", "7,0"))
        later = datetime(2024, 6, 2, tzinfo=timezone.utc)
        run = ingest_files(con, [second, third], source, config, WINDOW, later, bounds)
        stored = con.execute("SELECT strftime(ts, '%d %H:%M'), value, source_file FROM raw.measurements ORDER BY ts").fetchall()
        revisions = con.execute("SELECT old_value, new_value, old_source_file, new_source_file FROM raw.revisions").fetchall()
    assert (again.inserted, again.unchanged, again.revised) == (0, 3, 0)
    # 10:00 Rome = 09:00 UTC in November
    assert stored == [("01 09:00", 1.0, "a.csv"), ("01 09:01", 2.5, "b.csv"), ("01 09:02", 3.0, "b.csv"),
                      ("10 09:00", 7.0, "c.csv"), ("20 09:00", 5.0, "a.csv")]
    assert revisions == [(2.0, 2.5, "a.csv", "b.csv")]
    assert (run.report.inserted, run.report.revised, run.report.variables, run.report.files) == (2, 1, 1, ["b.csv", "c.csv"])


def test_overlapping_files_of_one_run_fold_without_a_revision(config, tmp_path):
    source = config.source("reach_meters")
    older = reach(tmp_path / "older.csv", ("10:00 01", "1,0"), ("10:00 02", "4,0"))
    newer = reach(tmp_path / "newer.csv", ("10:00 02", "4,5"))
    with prepare(duckdb.connect(str(tmp_path / "w.duckdb"))) as con:
        report = ingest_files(con, [older, newer], source, config, WINDOW, NOW, partition_range(config.site, NOW)).report
        stored = con.execute("SELECT value, source_file FROM raw.measurements ORDER BY ts").fetchall()
        assert con.execute("SELECT count(*) FROM raw.revisions").fetchone()[0] == 0
    assert stored == [(1.0, "older.csv"), (4.5, "newer.csv")]
    assert (report.rows_read, report.stored, report.folded_duplicates, report.inserted) == (3, 2, 1, 2)


def test_a_warehouse_with_the_old_keys_is_rebuilt_without_them(tmp_path):
    path = str(tmp_path / "old.duckdb")
    with duckdb.connect(path) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.measurements (variable_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, "
                    "value DOUBLE NOT NULL, source_file VARCHAR NOT NULL, source_line INTEGER, "
                    "ingested_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (variable_id, ts))")
        con.execute("INSERT INTO raw.measurements VALUES ('d1.p', '2024-01-01 00:00:00+00', 1.5, 'a.csv', 2, '2024-01-02 00:00:00+00')")
    with prepare(duckdb.connect(path)) as con:
        assert constraints(con) == []
        rows = con.execute("SELECT variable_id, value, source_file, source_line FROM raw.measurements").fetchall()
        tables = {t for (t,) in con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()}
    assert rows == [("d1.p", 1.5, "a.csv", 2)]
    assert set(KEYLESS_TABLES) <= tables and not any(t.endswith("_keyed") for t in tables)


def test_a_merge_that_would_leave_a_key_twice_is_rolled_back(config, tmp_path):
    """Nothing enforces the key, so a row written behind the merge's back is caught at the next
    merge over its span, which then commits nothing."""
    source = config.source("reach_meters")
    path = reach(tmp_path / "a.csv", ("10:00 01", "1,0"), ("10:01 01", "2,0"))
    bounds = partition_range(config.site, NOW)
    with prepare(duckdb.connect(str(tmp_path / "w.duckdb"))) as con:
        ingest_files(con, [path], source, config, WINDOW, NOW, bounds)
        con.execute("INSERT INTO raw.measurements SELECT * FROM raw.measurements WHERE value = 2.0")
        later = reach(tmp_path / "b.csv", ("10:01 01", "2,5"))
        with pytest.raises(DuplicateKeys, match=r"d1\.active_power at 2016-11-01 09:01:00\+0000 x2"):
            ingest_files(con, [later], source, config, WINDOW, NOW, bounds)
        assert con.execute("SELECT count(*), sum(value) FROM raw.measurements").fetchone() == (3, 5.0)
        assert con.execute("SELECT count(*) FROM raw.revisions").fetchone()[0] == 0


def test_a_run_reads_only_the_files_holding_days_of_its_window(config, tmp_path):
    """A window of 9-10 November (Rome): the file of the 1st-2nd and the one of the 20th hold no
    day of it and are not read (their bad line is not recorded either); the file of the 9th-10th
    is merged, and so is a file whose days cannot be told (it is read, to say why it fails)."""
    source = config.source("reach_meters")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    early = reach(inbox / "early.csv", ("10:00 01", "1,0"), ("10:00 02", "x"))
    inside = reach(inbox / "inside.csv", ("23:30 08", "9,0"), ("10:00 09", "2,0"), ("23:59 10", "3,0"))
    late = reach(inbox / "late.csv", ("10:00 20", "5,0"))
    unknown = inbox / "unknown.csv"
    unknown.write_bytes(b"\xff\xfe not a REACH export")
    window = (datetime(2016, 11, 8, 23, tzinfo=timezone.utc), datetime(2016, 11, 10, 23, tzinfo=timezone.utc))
    with prepare(duckdb.connect(str(tmp_path / "w.duckdb"))) as con:
        run = ingest_files(con, [early, inside, late, unknown], source, config, window, NOW, partition_range(config.site, NOW))
        stored = con.execute("SELECT strftime(ts, '%d %H:%M'), value FROM raw.measurements ORDER BY ts").fetchall()
        rejected = con.execute("SELECT DISTINCT source_file FROM raw.rejects ORDER BY 1").fetchall()
    assert run.outside_window == ["early.csv", "late.csv"]
    assert run.report.files == ["inside.csv", "unknown.csv"] and list(run.report.failed_files) == ["unknown.csv"]
    # 23:30 on the 8th (Rome) is before the window: read, counted outside it, not stored
    assert stored == [("09 09:00", 2.0), ("10 22:59", 3.0)]
    assert (run.report.rows_read, run.report.stored, run.report.outside_window) == (4, 2, 1)
    assert rejected == [("unknown.csv",)]


def test_a_files_days_are_scanned_once_per_version(config, tmp_path):
    """file_days with a cache: a second call answers from it (shown by rewriting the file with
    the same size and modification time: the old days come back), and a new version of the
    file (another modification time) is scanned again."""
    import os

    from bemp_assets.domain.inbox import days_cache, file_days

    source = config.source("reach_meters")
    (tmp_path / "inbox").mkdir()
    path = reach(tmp_path / "inbox" / "a.csv", ("10:00 05", "1,0"), ("10:00 09", "2,0"))
    cache = days_cache(tmp_path / "inbox")
    assert cache == tmp_path / "cache" / "file_days.json"
    first = file_days(path, source, config, now=NOW, cache=cache)
    assert first == (date(2016, 11, 4), date(2016, 11, 10)) and cache.exists()
    stat = path.stat()
    reach(path, ("10:00 15", "1,0"), ("10:00 19", "2,0"))  # same length, other days
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert file_days(path, source, config, now=NOW, cache=cache) == first
    assert file_days(path, source, config, now=NOW) == (date(2016, 11, 14), date(2016, 11, 20))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert file_days(path, source, config, now=NOW, cache=cache) == (date(2016, 11, 14), date(2016, 11, 20))
