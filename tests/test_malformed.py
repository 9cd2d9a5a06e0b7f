"""Malformed CSV files: each file is handled on its own, and every line ends stored or rejected.

Every case is a crafted file with the exact lines stored and rejected written out by hand
below; the test parses it and merges it into a fresh warehouse file with the project's own
functions, then compares raw.measurements and raw.rejects with those numbers. Physical lines
are split here with a plain regular expression, independently of the parser, so a reject's
text can be checked against the line it names. Only the isolation test goes through Dagster.
"""
from __future__ import annotations

import gzip
import re
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import AssetCheckKey, AssetKey, instance_for_test

from bemp_assets.cli import run
from bemp_assets.domain.config import ConfigError, SourceConfig, load_config
from bemp_assets.domain.inbox import file_days
from bemp_assets.domain.parsing import parse_file, partition_range
from bemp_assets.domain.warehouse import ingest, prepare

from .conftest import CONFIG_DIR, SAMPLE, make_settings

NOW = datetime(2024, 6, 1, 12, tzinfo=timezone.utc)  # "today" is 2024-06-01 in Europe/Rome
H = "Dispositivo,Parametro,Data,Valore"
STEEL_HEADER = (SAMPLE / "Steel_industry_data.csv").read_text(encoding="utf-8-sig").splitlines()[0]
STEEL_COLUMNS = 7  # configured value columns of steel_plant (six numbers and the coded Load_Type)


def r(time: str, value: str, device: str = "d1", parameter: str = "Potenza attiva") -> str:
    """A REACH line; ``time`` without a date means 1 November 2016."""
    stamp = time if "/" in time else f"{time}:00 01/11/2016"
    return f'{device},{parameter},{stamp},"{value}"'


def w(stamp: str, cells: str) -> str:
    """A steel-plant wide line: timestamp, the six numeric cells, the ignored columns, Load_Type."""
    return f"{stamp},{cells},900,Weekday,Tuesday,Light_Load"


def text(*lines: str, end: str = "\n") -> bytes:
    return (end.join(lines) + end).encode("utf-8")


LATIN = (H + "\n" + "\n".join([r("10:00", "1,5", device="Cucina è"), r("10:01", "2,5", device="Cucina è"),
                               r("10:01", "21,5", device="Cucina è", parameter="Temperatura ambiente °C")]) + "\n").encode("latin-1")
LATIN_BAD_BYTE = LATIN.index("è".encode("latin-1"))
UNTERMINATED = text(H, r("10:00", "1,5")[:-1], r("10:01", "2,5"), r("10:02", "3,5"), "", r("10:03", "4,5"))


@dataclass
class Case:
    id: str
    content: bytes
    stored: list[int] | int          # REACH: the stored lines; wide: how many readings
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, part of the reason)
    source: str = "reach_meters"
    encoding: str | None = None       # overrides the source's
    missing: int = 0                  # empty wide cells
    blank: int = 0


CASES = [
    Case("latin1_declared", LATIN, [2, 3, 4], encoding="latin-1"),
    Case("latin1_undeclared", LATIN, [],
         [(0, "", f"not valid utf-8 at byte {LATIN_BAD_BYTE} (0xe8); declare `encoding:` for source 'reach_meters'")]),
    Case("utf16_declared", (H + "\n" + r("10:00", "1,5", device="Küche") + "\n" + r("10:01", "2,5") + "\n").encode("utf-16"),
         [2, 3], encoding="utf-16"),
    Case("gzip_binary", gzip.compress(text(H, r("10:00", "1,5")), mtime=0), [], [(0, "", "not valid utf-8 at byte 1 (0x8b)")]),
    Case("png_binary_read_as_latin1", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), [],
         [(1, "", "control character 0x89 at position 1 of the header")], encoding="latin-1"),
    Case("bom", b"\xef\xbb\xbf" + text(H, r("10:00", "1,5"), r("10:01", "2,5")), [2, 3]),
    Case("crlf", text(H, r("10:00", "1,5"), "", r("10:01", "2,5"), r("10:02", "abc"), end="\r\n"), [2, 4],
         [(5, "", "bad number 'abc'")], blank=1),
    Case("cr_only", text(H, r("10:00", "1,5"), r("10:01", "2,5"), end="\r"), [2, 3]),
    Case("semicolons", text("Dispositivo;Parametro;Data;Valore", "d1;Potenza attiva;10:00:00 01/11/2016;1,5"), [],
         [(1, "", "matches no known shape")]),
    Case("truncated_lines", text(H, r("10:00", "1,5"), "d1,Potenza attiva,10:0", r("10:01", "2,5"), "d1,Pot")
         + r("10:03", "4,5")[:-2].encode(), [2, 4],
         [(3, "", "MISSING COLUMNS"), (5, "", "MISSING COLUMNS"), (6, "", "UNQUOTED VALUE")]),
    Case("repeated_header", text(H, r("10:00", "1,5"), r("10:01", "2,5"), H, r("10:02", "3,5"), r("10:03", "4,5")),
         [2, 3, 5, 6], [(4, "", "the header repeated on this line")]),
    Case("quoted_commas", text(H, r("10:00", "1.234,5", device='"Quadro 1, piano 2"'), r("10:01", "2,25", device='"Quadro 1, piano 2"'),
                               'd1,"Energia attiva",10:01:00 01/11/2016,"100"'), [2, 3, 4]),
    Case("blank_and_whitespace_lines", text(H, "", r("10:00", "1,5"), "", "", "   ", r("10:01", "2,5"), ""), [3, 7],
         [(6, "", "MISSING COLUMNS")], blank=4),
    Case("dst_spring_gap", text(H, r("01:59:00 27/03/2016", "1,0"), r("02:30:00 27/03/2016", "2,0"), r("03:00:00 27/03/2016", "3,0")),
         [2, 4], [(3, "", "local time 2016-03-27 02:30:00 does not exist in Europe/Rome (DST spring gap)")]),
    Case("hour_25", text(H, r("10:00", "1,5"), r("25:00", "2,5")), [2],
         [(3, "", "bad date '25:00:00 01/11/2016': expected HH:MM:SS DD/MM/YYYY")]),
    Case("february_31", text(H, r("10:00:00 31/02/2016", "1,5"), r("10:00:00 29/02/2016", "2,5")), [3],
         [(2, "", "bad date '10:00:00 31/02/2016'")]),
    Case("dot_decimals_in_reach", text(H, r("10:00", "12.5"), r("10:01", "1.250"), r("10:02", "0.5"), r("10:03", "12,5")), [3, 5],
         [(2, "", "bad number '12.5': expected a decimal-comma number"), (4, "", "bad number '0.5'")]),
    Case("dates_9999_1970_and_the_start_date", text(H, r("10:00:00 31/12/9999", "1,5"), r("10:00:00 01/01/1970", "1,5"), r("10:00", "1,5"),
                                                    r("00:00:00 13/02/2016", "1,5"), r("23:59:00 12/02/2016", "1,5")), [4, 5],
         [(2, "", "time 9999-12-31 10:00:00 is outside the partitions 2016-02-13 .. 2024-06-01 (site.start_date .. today, Europe/Rome)"),
          (3, "", "time 1970-01-01 10:00:00 is outside the partitions"), (6, "", "time 2016-02-12 23:59:00 is outside the partitions")]),
    Case("far_future_and_tomorrow", text(H, r("10:00:00 01/01/2090", "1,5"), r("23:59:00 01/06/2024", "1,5"), r("00:00:00 02/06/2024", "1,5")),
         [3], [(2, "", "time 2090-01-01 10:00:00 is outside the partitions"), (4, "", "time 2024-06-02 00:00:00 is outside the partitions")]),
    Case("400_digits_and_the_magnitude_limit", text(H, r("10:00", "1,5"), r("10:01", "9" * 400), r("10:02", "-" + "9" * 400),
                                                    r("10:03", "1.000.000.000.000"), r("10:04", "1.000.000.000.001")), [2, 5],
         [(3, "", "number '" + "9" * 40 + "…' is not finite"), (4, "", "is not finite"),
          (6, "", "number '1.000.000.000.001' beyond ±1e+12 (source 'reach_meters' max_abs_value)")]),
    Case("nan_and_inf_text", text(H, r("10:00", "NaN"), r("10:01", "inf"), r("10:02", "-Infinity"), r("10:03", "1,5")), [5],
         [(2, "", "bad number 'NaN'"), (3, "", "bad number 'inf'"), (4, "", "bad number '-Infinity'")]),
    Case("nul_in_parameter_and_device", text(H, r("10:00", "1,5", parameter="Pot\x00enza attiva"), r("10:01", "1,5", device="d\x001"),
                                             r("10:02", "1,5")), [4],
         [(2, "", "control character in the parameter (Parametro)"), (3, "", "control character in the device (Dispositivo)")]),
    Case("unterminated_quote", UNTERMINATED, [3, 4, 6], [(2, "", "unterminated quote")], blank=1),
    Case("quoted_newline", text(H, 'd1,"Potenza', 'attiva",10:00:00 01/11/2016,"1,5"', r("10:01", "2,5")), [4],
         [(2, "", "unterminated quote"), (3, "", "unterminated quote")]),
    Case("too_many_columns", text(H, r("10:00", "1,5"), r("10:01", "2,5") + ",extra"), [2], [(3, "", "TOO MANY COLUMNS")]),
    Case("duplicate_lines", text(H, r("10:00", "1,5"), r("10:00", "1,5"), r("10:00", "1,7"), r("10:01", "2,5")), [4, 5],
         [(2, "", "superseded by line 4"), (3, "", "superseded by line 4")]),
    Case("line_of_3_mb", text(H, r("10:00", "1,5"), "x" * 3_000_000, r("10:01", "2,5")), [2, 4],
         [(3, "", "LINE SIZE OVER MAXIMUM: Maximum line size of 2000000 bytes exceeded")]),
    Case("empty_file", b"", [], [(1, "", "empty file, expected a CSV header")]),
    Case("header_only", text(H), []),
    # wide exports (steel plant: Asia/Seoul, stamped at the end of 15-minute intervals)
    Case("wide_1e309_nan_inf_and_magnitude", text(STEEL_HEADER, w("1/1/2019 0:15", "3.17,2.95,0,0,73.21,100"),
                                                  w("1/1/2019 0:30", "1e309,4.46,0,0,66.77,100"),
                                                  w("1/1/2019 0:45", "3.24,-1e309,0,0,70.28,NaN"),
                                                  w("1/1/2019 1:00", "3.1,inf,0,0,2e12,100")), 7 + 6 + 5 + 5,
         [(3, "Usage_kWh", "number '1e309' is not finite"), (4, "Lagging_Current_Reactive.Power_kVarh", "number '-1e309' is not finite"),
          (4, "Leading_Current_Power_Factor", "bad number 'NaN' in column Leading_Current_Power_Factor"),
          (5, "Lagging_Current_Power_Factor", "number '2e12' beyond ±1e+12"), (5, "Lagging_Current_Reactive.Power_kVarh", "bad number 'inf'")],
         source="steel_plant"),
    Case("wide_empty_cells", text(STEEL_HEADER, w("1/1/2019 0:15", "3.17,2.95,0,0,73.21,100"), w("1/1/2019 0:30", ",4.46,,0,66.77,100"),
                                  w("1/1/2019 0:45", ",,,,,"), w("yesterday", ",,1,,,"), w("1/1/2019 1:00", " ,3.1,0,0,1,1")), 7 + 5 + 1 + 6,
         [(5, "date", "bad date 'yesterday': expected format %d/%m/%Y %H:%M")], source="steel_plant", missing=2 + 6 + 1),
    Case("wide_repeated_header", text(STEEL_HEADER, w("1/1/2019 0:15", "3.17,2.95,0,0,73.21,100"), STEEL_HEADER,
                                      w("1/1/2019 0:30", "3.17,2.95,0,0,73.21,100")), 14,
         [(3, "date", "the header repeated on this line")], source="steel_plant"),
    Case("wide_before_the_start_date_and_9999", text(STEEL_HEADER, w("13/02/2016 0:15", "1,1,1,1,1,1"), w("13/02/2016 9:15", "1,1,1,1,1,1"),
                                                     w("1/1/9999 0:15", "1,1,1,1,1,1")), 7,
         [(2, "date", "time 2016-02-13 00:15:00 is outside the partitions"), (4, "date", "time 9999-01-01 00:15:00 is outside")],
         source="steel_plant"),
    Case("wide_trailing_comma", text(STEEL_HEADER + ",", w("1/1/2019 0:15", "3.17,2.95,0,0,73.21,100") + ","), 7, source="steel_plant"),
    Case("wide_unknown_load_type_label", text(STEEL_HEADER, w("1/1/2019 0:15", "1,1,1,1,1,1"),
                                              w("1/1/2019 0:30", "1,1,1,1,1,1").replace("Light_Load", "Heavy_Load")), 7 + 6,
         [(3, "Load_Type", "bad number 'Heavy_Load' in column Load_Type: expected one of the labels 'Light_Load', "
                             "'Maximum_Load', 'Medium_Load'")], source="steel_plant"),
    Case("wide_nul_in_a_header_name", text(STEEL_HEADER.replace("Load_Type", "Load\x00Type"), w("1/1/2019 0:15", "1,1,1,1,1,1")), 0,
         [(1, "", "control character 0x00 at position")], source="steel_plant"),
]


def physical_lines(content: bytes, encoding: str) -> list[str]:
    decoded = content.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    return re.split(r"\r\n|\r|\n", decoded)


def shown(line: str) -> str:
    """A rejected line as raw.rejects keeps it: the first 4096 characters (docs/warehouse.md)."""
    return line if len(line) <= 4096 else line[:4096] + "…"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_file(case, config, tmp_path):
    source = config.source(case.source)
    if case.encoding:
        source = source.model_copy(update={"encoding": case.encoding})
    tz = config.timezone_of(source)
    path = tmp_path / f"{case.id}.csv"
    path.write_bytes(case.content)
    bounds = partition_range(config.site, NOW)
    with prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb"))) as con:
        parsed = parse_file(con, path, source, tz, "stage_1", bounds=bounds)
        report = ingest(con, source, tz, [parsed], (bounds.start, bounds.end), NOW)
        stored = con.execute("SELECT source_line FROM raw.measurements ORDER BY source_line").fetchall()
        rejects = con.execute("SELECT line, field, reason, raw_text FROM raw.rejects ORDER BY line, field").fetchall()
        odd = con.execute("SELECT count(*) FROM raw.measurements WHERE NOT isfinite(value) OR abs(value) > 1e12").fetchall()
        control = con.execute("SELECT count(*) FROM meta.variables WHERE regexp_matches(variable_id, '[\\x00-\\x1f]')").fetchall()

    expected = sorted(case.rejects)
    assert [(line, name) for line, name, *_ in rejects] == [(line, name) for line, name, _ in expected]
    for (line, name, reason, _), (_, _, part) in zip(rejects, expected):
        assert part in reason, (line, name, reason)
    assert odd == [(0,)] and control == [(0,)]
    assert report.missing_cells == case.missing and report.folded_duplicates == report.outside_window == 0
    # the accounting closes: every record is stored, rejected, folded or outside the window
    assert report.rows_read == report.stored + len(rejects) + report.folded_duplicates + report.outside_window
    if case.source != "reach_meters":  # wide: every configured cell of a data line is stored, rejected, missing or under a line reject
        assert report.stored == len(stored) == case.stored
        if rejects and rejects[0][0] > 1:
            data_lines = len([t for t in physical_lines(case.content, "utf-8")[1:] if t])
            line_rejects = sum(1 for _, name, *_ in rejects if name in ("", "date"))
            cells = report.stored + len(rejects) - line_rejects + case.missing + STEEL_COLUMNS * line_rejects
            assert cells == STEEL_COLUMNS * data_lines
        return
    assert [line for (line,) in stored] == case.stored and report.stored == len(case.stored)
    if rejects and rejects[0][0] <= 1 and not case.stored:  # rejected whole: one reject, nothing stored
        assert len(rejects) == 1 and parsed.error and path.name in parsed.error
        return
    lines = physical_lines(case.content, source.encoding)
    assert parsed.blank_lines == case.blank == sum(1 for t in lines[1:-1] if t == "")
    # each data line is stored or rejected exactly once, and a reject shows its own line's text
    data_lines = [n for n, t in enumerate(lines, start=1) if n > 1 and t]
    assert sorted(case.stored + [line for line, *_ in rejects]) == data_lines
    assert all(raw == shown(lines[line - 1]) for line, _, _, raw in rejects)


def test_line_by_line_reading_matches_duckdbs(config, tmp_path):
    """An unterminated quote makes the parser split the file line by line: every other line
    must read exactly as DuckDB's CSV reader reads it without that line (quotes, escaped
    quotes, commas, spaces, empty and bad fields)."""
    body = [r("10:00", "1.234,5", device='"Quadro ""A"", piano 2"'), r("10:01", "2,5", device=" d2 "),
            'd3,Tensione,10:02:00 01/11/2016,230', 'd3,,10:03:00 01/11/2016,"1,0"', r("10:04", "x"),
            '"d4",Corrente,"10:05:00 01/11/2016","3,25"', r("10:06", "1,5") + ",extra"]
    source = config.source("reach_meters")
    clean, broken = tmp_path / "clean.csv", tmp_path / "broken.csv"
    clean.write_bytes(text(H, *body))
    broken.write_bytes(text(H, r("09:59", "1,5")[:-1], *body))

    def read(path, prefix):
        parsed = parse_file(con, path, source, "Europe/Rome", prefix)
        rows = con.execute(f"SELECT variable_id, ts, value, line FROM {prefix} ORDER BY line").fetchall()
        return rows, parsed.rejects[["line", "reason"]].values.tolist()

    with prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb"))) as con:
        (rows, rejects), (split_rows, split_rejects) = read(clean, "a"), read(broken, "b")
    assert [v for v, *_ in rows] == ['Quadro "A", piano 2.active_power', "d2.active_power", "d3.voltage", "d4.current"]
    assert split_rows == [(v, ts, value, line + 1) for v, ts, value, line in rows]
    assert [line for line, _ in rejects] == [5, 6, 8] and [line for line, _ in split_rejects] == [2, 6, 7, 9]
    # the same bad value or field is rejected for the same reason, whichever reader split the line
    assert [reason for _, reason in split_rejects[1:3]] == [reason for _, reason in rejects[:2]]
    assert "unterminated quote" in split_rejects[0][1] and "expected 4 fields" in split_rejects[3][1]


def test_latin1_names_survive_transcoding(config, tmp_path):
    source = config.source("reach_meters").model_copy(update={"encoding": "latin-1"})
    path = tmp_path / "latin.csv"
    path.write_bytes(LATIN)
    with prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb"))) as con:
        parsed = parse_file(con, path, source, "Europe/Rome", "stage_1")
        got = con.execute("SELECT variable_id, value FROM stage_1 ORDER BY line").fetchall()
    assert got == [("Cucina è.active_power", 1.5), ("Cucina è.active_power", 2.5), ("Cucina è.temperatura_ambiente_c", 21.5)]
    assert "Temperatura ambiente °C" in parsed.variables["original_name"].tolist()


def test_accounting_across_files_and_the_run_window(config, tmp_path):
    """Two files overlapping on one key, and a reading of another day: folded and outside."""
    source = config.source("reach_meters")
    older = tmp_path / "older.csv"
    older.write_bytes(text(H, r("10:00", "1,0"), r("10:00:00 02/11/2016", "9,0")))
    newer = tmp_path / "newer.csv"
    newer.write_bytes(text(H, r("10:00", "1,5"), r("10:01", "2,5"), r("10:02", "x")))
    window = (datetime(2016, 10, 31, 23, tzinfo=timezone.utc), datetime(2016, 11, 1, 23, tzinfo=timezone.utc))  # 1 Nov, Rome
    with prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb"))) as con:
        parsed = [parse_file(con, p, source, "Europe/Rome", f"stage_{i}") for i, p in enumerate([older, newer])]
        report = ingest(con, source, "Europe/Rome", parsed, window, NOW)
        stored = con.execute("SELECT source_file, source_line, value FROM raw.measurements ORDER BY source_line").fetchall()
    assert stored == [("newer.csv", 2, 1.5), ("newer.csv", 3, 2.5)]
    # 5 records: 2 stored, 1 rejected ('x'), 1 folded (older 10:00), 1 outside (older, 2 Nov)
    assert (report.rows_read, report.stored, report.rejects_in_files, report.folded_duplicates, report.outside_window) == (5, 2, 1, 1, 1)


def test_file_days_never_raises_and_ignores_impossible_dates(config, tmp_path):
    reach = config.source("reach_meters")
    days = tmp_path / "days.csv"
    days.write_bytes(text(H, r("10:00:00 31/12/9999", "1,5"), r("10:00:00 05/11/2016", "1,5"), r("10:00:00 01/01/0001", "1,5")))
    assert file_days(days, reach, config, NOW) == (date(2016, 11, 4), date(2016, 11, 6))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(LATIN)
    assert file_days(latin, reach, config, NOW) is None
    assert file_days(latin, reach.model_copy(update={"encoding": "latin-1"}), config, NOW) == (date(2016, 10, 31), date(2016, 11, 2))
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\x00\x01\x02" * 1000)
    assert file_days(binary, reach, config, NOW) is None


@pytest.mark.parametrize("key, value, expected", [
    ("encoding", "klingon", "expected a text encoding such as 'utf-8', 'latin-1'"),
    ("encoding", "base64", "expected a text encoding"),
    ("max_abs_value", "-1", "expected a positive finite number"),
    ("max_abs_value", ".inf", "expected a positive finite number"),
])
def test_bad_encoding_or_magnitude_names_file_and_key(tmp_path, key, value, expected):
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    sources = folder / "sources.yaml"
    sources.write_text(sources.read_text().replace("    expected_interval: 1min\n", f"    expected_interval: 1min\n    {key}: {value}\n"))
    # the first source sampled once a minute is the one that gets the bad value
    index = next(i for i, s in enumerate(yaml.safe_load(sources.read_text())["sources"]) if s.get("expected_interval") == "1min")
    with pytest.raises(ConfigError) as err:
        load_config(folder)
    assert "sources.yaml" in str(err.value) and f"sources[{index}].{key}" in str(err.value) and expected in str(err.value)


def test_a_bad_file_does_not_take_the_good_file_down(tmp_path, capsys):
    """`bemp run` without dates: a latin-1 file (utf-8 declared) and a binary file beside a good
    file of the same source. The run succeeds, every good row is stored and flows downstream,
    the bad files are one reject each and are named in the metadata and the WARN check."""
    settings = make_settings(tmp_path / "home")
    settings.inbox.mkdir(parents=True)
    (settings.inbox / "meter_latin.csv").write_bytes(LATIN.replace(b"01/11/2016", b"05/11/2016"))
    (settings.inbox / "meter_binary.csv").write_bytes(gzip.compress(b"x" * 5000, mtime=0))
    good = [r(f"10:{m:02d}:00 05/11/2016", f"{m},5", device="m1") for m in range(30)]
    (settings.inbox / "meter_good.csv").write_bytes(text(H, *good, r("10:00:00 31/12/9999", "1,5", device="m1")))
    with instance_for_test() as instance:
        assert run(settings, None, None, None, instance=instance) == 0
        printed = capsys.readouterr().out
        key = AssetKey(["raw", "reach_meters"])
        metadata = instance.get_latest_materialization_event(key).asset_materialization.metadata
        check = AssetCheckKey(key, "files_parsed")
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[check].event.dagster_event.event_specific_data
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        raw = con.execute("SELECT count(*), sum(value) FROM raw.measurements WHERE variable_id = 'm1.active_power'").fetchall()
        clean = con.execute("SELECT count(*) FROM clean.measurements WHERE variable_id = 'm1.active_power'").fetchall()
        rejects = con.execute("SELECT source_file, line, reason FROM raw.rejects ORDER BY source_file").fetchall()
    assert raw == [(30, sum(m + 0.5 for m in range(30)))] and clean == [(30,)]
    assert [(f, line) for f, line, _ in rejects] == [("meter_binary.csv", 0), ("meter_good.csv", 32), ("meter_latin.csv", 0)]
    assert "not valid utf-8" in rejects[0][2] and "outside the partitions" in rejects[1][2] and "not valid utf-8" in rejects[2][2]
    failed = metadata["failed_files"].value
    assert sorted(failed) == ["meter_binary.csv", "meter_latin.csv"] and "line 2: not valid utf-8" in failed["meter_latin.csv"]
    values = {k: metadata[f"run_{k}"].value for k in ("rows_read", "stored", "rejected_rows", "folded_duplicates", "outside_window")}
    assert values == {"rows_read": 33, "stored": 30, "rejected_rows": 3, "folded_duplicates": 0, "outside_window": 0}
    assert evaluation.passed is False and evaluation.severity.value == "WARN"
    assert "meter_latin.csv" in evaluation.metadata["observed_worst"].value
    failed_line = next(t for t in printed.splitlines() if "check warning: raw/reach_meters files_parsed: " in t)
    assert "meter_latin.csv: line 2: not valid utf-8" in failed_line and "meter_binary.csv: line 1" in failed_line
