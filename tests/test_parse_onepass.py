"""Issue 14's fast paths give what the general paths give: the parse's duplicate window that
runs only when a key may repeat, the raw and clean merges into an empty span, and the schema
applied only when its version row differs. Expected values are computed by hand or with the
csv module, never read back from the code under test."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from bemp_assets.domain.chains import FilterChain
from bemp_assets.domain.cleaning import rebuild_clean
from bemp_assets.domain.parsing import drop_staged, parse_file, partition_range
from bemp_assets.domain.raw_ingest import ingest_files
from bemp_assets.domain.warehouse import ingest, prepare, schema_ddl, stored_schema_version

from .conftest import write_csv

UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
HEADER = "Dispositivo,Parametro,Data,Valore\n"
NOVEMBER = (datetime(2016, 10, 31, 23, tzinfo=UTC), datetime(2016, 11, 30, 23, tzinfo=UTC))  # Rome


def minutes(device: str, first: int, count: int, day: int = 1) -> list[str]:
    """REACH lines of ``device``'s power at 10:first .. local time, value = the minute."""
    return [f'{device},Potenza attiva,10:{m:02d}:00 {day:02d}/11/2016,"{m},5"' for m in range(first, first + count)]


def test_repeated_keys_are_found_and_the_last_line_wins(con, config, tmp_path):
    # d1 10:01 twice (lines 3, 6), d1 10:03 three times (lines 5, 8, 9), d2 10:00 twice (lines
    # 10, 11); the duplicate window runs only because these keys repeat
    lines = minutes("d1", 0, 4) + minutes("d1", 1, 1) + minutes("d2", 1, 1) + ['d1,Potenza attiva,10:03:00 01/11/2016,"7,0"',
                                                                            'd1,Potenza attiva,10:03:00 01/11/2016,"8,0"',
                                                                            'd2,Potenza attiva,10:00:00 01/11/2016,"1,0"',
                                                                            'd2,Potenza attiva,10:00:00 01/11/2016,"2,0"']
    path = write_csv(tmp_path / "dups.csv", HEADER + "\n".join(lines) + "\n")
    source = config.source("reach_meters")
    parsed = parse_file(con, path, source, config.timezone_of(source), "t")
    with open(path, newline="") as handle:
        records = list(csv.reader(handle))[1:]
    # the last line (file line = index + 2) of each (device, time) wins; earlier ones are rejects
    last = {(r[0], r[2]): i + 2 for i, r in enumerate(records)}
    superseded = sorted(i + 2 for i, r in enumerate(records) if last[(r[0], r[2])] != i + 2)
    assert superseded == [3, 5, 8, 10]
    assert parsed.rejects["line"].tolist() == superseded
    assert all("superseded by line" in r for r in parsed.rejects["reason"])
    assert parsed.rows == len(last) == con.execute("SELECT count(*) FROM t").fetchone()[0]
    assert con.execute("SELECT value FROM t WHERE line = 9").fetchone()[0] == 8.0


def test_a_file_without_repeats_has_no_duplicate_rejects(con, config, tmp_path):
    path = write_csv(tmp_path / "plain.csv", HEADER + "\n".join(minutes("d1", 0, 30) + minutes("d2", 0, 30)) + "\n")
    source = config.source("reach_meters")
    parsed = parse_file(con, path, source, config.timezone_of(source), "t")
    assert parsed.rows == 60 and len(parsed.rejects) == 0
    # 10:07 local = 09:07 UTC in November; line 9 is d1's eighth minute
    assert con.execute("SELECT variable_id, ts, value FROM t WHERE line = 9").fetchone() == (
        "d1.active_power", datetime(2016, 11, 1, 9, 7, tzinfo=UTC), 7.5)


def test_merge_into_an_empty_span_stores_what_the_full_merge_stores(config, tmp_path):
    """The same files merged into an empty warehouse (fast path: plain insert) and into one that
    already holds other days (the joined merge) store the same rows and the same accounting."""
    source = config.source("reach_meters")
    bounds = partition_range(config.site, NOW)
    first = write_csv(tmp_path / "a.csv", HEADER + "\n".join(minutes("d1", 0, 5)) + "\n")
    newer = write_csv(tmp_path / "b.csv", HEADER + "\n".join(minutes("d1", 3, 4)) + "\n")  # 10:03 .. 10:06
    other = write_csv(tmp_path / "c.csv", HEADER + "\n".join(minutes("d2", 0, 7)) + "\n")  # inside the span
    results = []
    for name, earlier in (("empty", []), ("held", [other])):
        with prepare(duckdb.connect(str(tmp_path / f"{name}.duckdb"))) as con:
            for path in earlier:
                ingest_files(con, [path], source, config, NOVEMBER, NOW, bounds)
            report = ingest_files(con, [first, newer], source, config, NOVEMBER, NOW, bounds).report
            rows = con.execute("SELECT strftime(ts, '%d %H:%M'), value, source_file, source_line FROM raw.measurements "
                               "WHERE variable_id = 'd1.active_power' ORDER BY ts").fetchall()
            results.append((rows, report.inserted, report.overlapping_rows, report.rows_in_window))
    # 10:00-10:02 from a.csv, 10:03-10:06 from the newer b.csv (10:03, 10:04 held by both: folded)
    expected = [("01 09:00", 0.5, "a.csv", 2), ("01 09:01", 1.5, "a.csv", 3), ("01 09:02", 2.5, "a.csv", 4),
                ("01 09:03", 3.5, "b.csv", 2), ("01 09:04", 4.5, "b.csv", 3), ("01 09:05", 5.5, "b.csv", 4),
                ("01 09:06", 6.5, "b.csv", 5)]
    assert results[0] == results[1] == (expected, 7, 2, 7)


def _expected_readings(path: Path, window: tuple[datetime, datetime]) -> dict:
    """The csv module's reading of a plain REACH file in November (Rome = UTC+1):
    {(variable_id, ts UTC): (value, line)} inside ``window``."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    readings = {}
    for i, (device, _, stamp, value) in enumerate(rows):
        ts = datetime.strptime(stamp, "%H:%M:%S %d/%m/%Y").replace(tzinfo=UTC) - timedelta(hours=1)
        if window[0] <= ts < window[1]:
            readings[(f"{device}.active_power", ts)] = (float(value.replace(",", ".")), i + 2)
    return readings


def test_one_file_is_merged_through_a_view_into_an_empty_and_into_a_held_span(config, tmp_path):
    """One file with unique keys is merged without copying its table (merge_batch is a view):
    into an empty span every reading inside the window is inserted; into a span that holds some
    of its keys the equal ones are left as they are, the different ones revised, the rest
    inserted. Expected rows come from the csv module."""
    source = config.source("reach_meters")
    tz = config.timezone_of(source)
    window = (datetime(2016, 11, 1, 9, 2, tzinfo=UTC), datetime(2016, 11, 1, 9, 10, tzinfo=UTC))
    new = write_csv(tmp_path / "new.csv", HEADER + "\n".join(minutes("d1", 0, 6) + minutes("d2", 4, 2)) + "\n")
    old = write_csv(tmp_path / "old.csv", HEADER + 'd1,Potenza attiva,10:03:00 01/11/2016,"3,5"\n'
                                                  'd1,Potenza attiva,10:04:00 01/11/2016,"9,0"\n')
    expected = _expected_readings(new, window)
    assert len(expected) == 6  # d1 10:02 .. 10:05 and d2 10:04, 10:05; d1 10:00, 10:01 fall before the window
    query = "SELECT variable_id, ts, value, source_file, source_line FROM raw.measurements ORDER BY ALL"
    with prepare(duckdb.connect(str(tmp_path / "empty.duckdb"))) as con:
        report = ingest(con, source, tz, [parse_file(con, new, source, tz, "t")], window, NOW)
        assert con.execute(query).fetchall() == [(v, ts, value, "new.csv", line)
                                                 for (v, ts), (value, line) in sorted(expected.items())]
        assert (report.inserted, report.revised, report.unchanged, report.outside_window) == (6, 0, 0, 2)
    with prepare(duckdb.connect(str(tmp_path / "held.duckdb"))) as con:
        ingest(con, source, tz, [parse_file(con, old, source, tz, "t")], window, NOW)
        drop_staged(con, "t")
        report = ingest(con, source, tz, [parse_file(con, new, source, tz, "t")], window, NOW)
        d1_0903 = ("d1.active_power", datetime(2016, 11, 1, 9, 3, tzinfo=UTC))
        d1_0904 = ("d1.active_power", datetime(2016, 11, 1, 9, 4, tzinfo=UTC))
        # 10:03 local holds 3.5 in both files: old.csv's row stays; 10:04 differs (9.0 -> 4.5): revised
        assert expected[d1_0903][0] == 3.5 and expected[d1_0904][0] == 4.5
        held = {key: (value, "new.csv", line) for key, (value, line) in expected.items()}
        held[d1_0903] = (3.5, "old.csv", 2)
        assert con.execute(query).fetchall() == [(*key, *row) for key, row in sorted(held.items())]
        assert (report.inserted, report.revised, report.unchanged, report.outside_window) == (4, 1, 1, 2)
        assert con.execute("SELECT variable_id, ts, old_value, new_value, old_source_file, new_source_file "
                           "FROM raw.revisions").fetchall() == [(*d1_0904, 9.0, 4.5, "old.csv", "new.csv")]
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'merge_batch'").fetchone()[0] == 0


def test_clean_into_an_empty_window_equals_a_rewrite(config, tmp_path):
    """A first clean run (plain insert) and a run over a window that held other rows (compared and
    rewritten) leave the same clean rows."""
    source = config.source("reach_meters")
    counter = [f'd1,Energia attiva,10:{m:02d}:00 01/11/2016,"{100 + m * m},0"' for m in range(6)]
    path = write_csv(tmp_path / "a.csv", HEADER + "\n".join(counter + minutes("d2", 0, 6)) + "\n")
    chains = [FilterChain.model_validate({"name": "counters", "select": {"kind": "cumulative"},
                                          "steps": [{"deaccumulate": {}}]})]
    got = []
    for name in ("first", "again"):
        with prepare(duckdb.connect(str(tmp_path / f"{name}.duckdb"))) as con:
            ingest_files(con, [path], source, config, NOVEMBER, NOW, partition_range(config.site, NOW))
            if name == "again":  # a stale row of another variable in the window: the compared path
                con.execute("INSERT INTO clean.stored VALUES ('old.x', '2016-11-05 00:00:00+00', 1.0, NULL, NULL)")
            report = rebuild_clean(con, *NOVEMBER, chains, NOW)
            rows = con.execute("SELECT variable_id, strftime(ts, '%H:%M'), value FROM clean.measurements "
                               "ORDER BY variable_id, ts").fetchall()
            got.append((rows, report.rows, sorted(report.changed_variables)))
    # counter differences 1, 3, 5, 7, 9 kWh, each stamped at its interval's start (one minute earlier)
    energy = [("d1.active_energy", f"09:{m - 1:02d}", float(m * m - (m - 1) ** 2)) for m in range(1, 6)]
    power = [("d2.active_power", f"09:{m:02d}", m + 0.5) for m in range(6)]
    assert got[0][0] == got[1][0] == energy + power
    assert got[0][1:] == (11, ["d1.active_energy", "d2.active_power"])
    assert got[1][2] == ["d1.active_energy", "d2.active_power", "old.x"]


def test_schema_applied_once_per_version_and_again_on_a_new_file(tmp_path):
    path = tmp_path / "w.duckdb"
    _, version = schema_ddl()
    with duckdb.connect(str(path)) as con:
        assert stored_schema_version(con) is None
        prepare(con)
        assert stored_schema_version(con) == version
        # a table dropped behind prepare's back stays dropped while the version row matches ...
        con.execute("DROP TABLE agg.daily")
        prepare(con)
        assert not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'agg' AND table_name = 'daily'").fetchone()[0]
        # ... and is created again when the row says another version (older code's DDL)
        con.execute("UPDATE meta.schema_version SET version = 'older'")
        prepare(con)
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'agg' AND table_name = 'daily'").fetchone()[0] == 1
        assert con.execute("SELECT count(*), max(version) FROM meta.schema_version").fetchone() == (1, version)
    # a new file at the same path, in the same process, gets the whole schema
    path.unlink()
    with prepare(duckdb.connect(str(path))) as con:
        assert con.execute("SELECT count(*) FROM raw.measurements").fetchone()[0] == 0
        assert stored_schema_version(con) == version
