"""Parser tests on the real sample files and on crafted bad input.

Expected numbers come from Python's csv module over the same files, never from the parser.
"""
import csv
import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bemp_assets.domain.parsing import SCAN_BLOCK, parse_file

from .conftest import REAL, SAMPLE, write_csv

UTC = timezone.utc
HEADER = "Dispositivo,Parametro,Data,Valore\n"


def parse(con, config, path, source="reach_meters", prefix="t"):
    src = config.source(source)
    return parse_file(con, Path(path), src, config.timezone_of(src), prefix)


def rows(con, table="t"):
    return con.execute(f"SELECT variable_id, ts, value, line FROM {table} ORDER BY line, variable_id").fetchall()


def test_steel_year_real_file(con, config):
    parsed = parse(con, config, SAMPLE / "Steel_industry_data.csv", "steel_plant")
    assert parsed.error is None and len(parsed.rejects) == 0
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 35040
    assert parsed.rows == 35040 * 7  # seven configured value columns (six numbers and Load_Type), no empty cells
    total = sum(float(r["Usage_kWh"]) for r in records)
    got = con.execute("SELECT sum(value) FROM t WHERE variable_id = 'daewoo_gwangyang.active_energy'").fetchone()[0]
    assert got == pytest.approx(total, rel=1e-12)
    # '1/1/2018 0:15' (KST, end of interval) -> interval start 00:00 KST = 2017-12-31 15:00 UTC
    first = con.execute("SELECT min(ts) FROM t").fetchone()[0]
    assert first == datetime(2017, 12, 31, 15, 0, tzinfo=UTC)
    # line 97, '1/1/2018 0:00', closes 1 January: 2 Jan 00:00 KST end -> 1 Jan 23:45 KST start
    assert records[95]["date"] == "1/1/2018 0:00"
    ts, value = con.execute("SELECT ts, value FROM t WHERE line = 97 AND variable_id LIKE '%active_energy'").fetchone()
    assert ts == datetime(2018, 1, 1, 14, 45, tzinfo=UTC) and value == float(records[95]["Usage_kWh"])
    assert con.execute("SELECT count(DISTINCT ts) FROM t").fetchone()[0] == 35040


def test_reach_sample_autumn_fold_keeps_both_hours(con, config):
    parsed = parse(con, config, SAMPLE / "reach_residential4_2016-10.csv", "reach_residential")
    assert parsed.error is None and len(parsed.rejects) == 0
    grid = "7f6eca13160d9ddd2584.active_energy"
    got = con.execute(f"SELECT ts, value FROM t WHERE variable_id = '{grid}' AND ts BETWEEN '2016-10-29 23:00:00Z' AND '2016-10-30 02:00:00Z' ORDER BY ts").fetchall()
    # local 01:00 CEST, 02:00 CEST, 02:00 CET, 03:00 CET -> four distinct UTC hours
    assert [t for t, _ in got] == [datetime(2016, 10, 29, 23, tzinfo=UTC), datetime(2016, 10, 30, 0, tzinfo=UTC),
                                   datetime(2016, 10, 30, 1, tzinfo=UTC), datetime(2016, 10, 30, 2, tzinfo=UTC)]
    assert [v for _, v in got] == sorted(v for _, v in got)  # a counter: increasing through the fold
    # the same instants and values as the OPSD original, which is stamped in UTC
    with open(REAL / "opsd_household_data_60min_DE_KN_residential4_2017extract.csv") as handle:
        opsd = {r["utc_timestamp"]: r["DE_KN_residential4_grid_import"] for r in csv.DictReader(handle)}
    assert [v for _, v in got] == [float(opsd[t.strftime("%Y-%m-%dT%H:%M:%SZ")]) for t, _ in got]
    units = dict(zip(parsed.variables["variable_id"], parsed.variables["unit"]))
    assert units[grid] == "kWh" and units["7f6eca13160d9ddd2584.active_power"] == "kW"
    kinds = dict(zip(parsed.variables["variable_id"], parsed.variables["kind"]))
    assert kinds[grid] == "cumulative" and kinds["7f6eca13160d9ddd2584.active_power"] == "instantaneous"


def test_spring_gap_rejected_not_invented(con, config, tmp_path):
    path = write_csv(tmp_path / "spring.csv", HEADER +
                     'd1,Potenza attiva,01:59:00 26/03/2017,"1,5"\n'
                     'd1,Potenza attiva,02:30:00 26/03/2017,"2,5"\n'
                     'd1,Potenza attiva,03:00:00 26/03/2017,"3,5"\n')
    parsed = parse(con, config, path)
    assert [r[1:] for r in rows(con)] == [(datetime(2017, 3, 26, 0, 59, tzinfo=UTC), 1.5, 2),
                                          (datetime(2017, 3, 26, 1, 0, tzinfo=UTC), 3.5, 4)]
    assert parsed.rejects[["line", "reason"]].values.tolist() == [
        [3, "local time 2017-03-26 02:30:00 does not exist in Europe/Rome (DST spring gap)"]]
    assert parsed.rejects.loc[0, "raw_text"] == 'd1,Potenza attiva,02:30:00 26/03/2017,"2,5"'


def test_autumn_fold_minute_data(con, config, tmp_path):
    times = ["02:58:00", "02:59:00", "02:00:00", "02:01:00"]
    path = write_csv(tmp_path / "fold.csv", HEADER + "".join(f'd1,Tensione,{t} 29/10/2017,"230,{i}"\n' for i, t in enumerate(times)))
    parse(con, config, path)
    assert [r[1] for r in rows(con)] == [datetime(2017, 10, 29, 0, 58, tzinfo=UTC), datetime(2017, 10, 29, 0, 59, tzinfo=UTC),
                                         datetime(2017, 10, 29, 1, 0, tzinfo=UTC), datetime(2017, 10, 29, 1, 1, tzinfo=UTC)]


def test_duplicated_line_inside_the_fold_is_a_duplicate_not_winter_time(con, config, tmp_path):
    # minute data: 02:30 written twice during the first (summer) pass, then 02:31
    path = write_csv(tmp_path / "folddup.csv", HEADER + 'd1,Tensione,02:30:00 30/10/2016,"230,0"\n'
                     'd1,Tensione,02:30:00 30/10/2016,"230,0"\nd1,Tensione,02:31:00 30/10/2016,"230,5"\n')
    parsed = parse(con, config, path)
    assert [r[1] for r in rows(con)] == [datetime(2016, 10, 30, 0, 30, tzinfo=UTC), datetime(2016, 10, 30, 0, 31, tzinfo=UTC)]
    assert parsed.rejects["line"].tolist() == [2] and "superseded by line 3" in parsed.rejects.loc[0, "reason"]


def test_bad_rows_are_quarantined_with_line_and_reason(con, config, tmp_path):
    path = write_csv(tmp_path / "bad.csv", HEADER +
                     'abc,Potenza attiva,16:30:04 12/10/2020,"12,8900"\n'   # 2 good
                     'abc,Potenza attiva,16:31:04 12/10/2020,"12.89"\n'     # 3 dot decimal: ambiguous here
                     'abc,Potenza attiva,31/12/2020,"1,0"\n'                # 4 bad date
                     '\n'                                                   # 5 blank
                     'abc,Corrente,16:32:04 12/10/2020,"5,5",extra\n'       # 6 too many fields
                     ',Corrente,16:33:04 12/10/2020,"5,5"\n'                # 7 no device
                     'abc,Fattore di potenza,16:34:04 12/10/2020,"0,98"\n'  # 8 unknown parameter: kept
                     'abc,Tensione,16:35:04 12/10/2020,"1.230,5"\n')        # 9 thousands separator
    parsed = parse(con, config, path)
    assert [(r[0], r[2], r[3]) for r in rows(con)] == [
        ("abc.active_power", 12.89, 2), ("abc.fattore_di_potenza", 0.98, 8), ("abc.voltage", 1230.5, 9)]
    reasons = dict(zip(parsed.rejects["line"], parsed.rejects["reason"]))
    assert sorted(reasons) == [3, 4, 6, 7]
    assert reasons[3] == "bad number '12.89': expected a decimal-comma number such as 12,8900"
    assert reasons[4] == "bad date '31/12/2020': expected HH:MM:SS DD/MM/YYYY"
    assert "TOO MANY COLUMNS" in reasons[6]
    assert reasons[7] == "missing device (Dispositivo)"
    texts = dict(zip(parsed.rejects["line"], parsed.rejects["raw_text"]))
    assert texts[4] == 'abc,Potenza attiva,31/12/2020,"1,0"'
    unknown = parsed.variables.set_index("variable_id").loc["abc.fattore_di_potenza"]
    assert unknown["original_name"] == "Fattore di potenza" and unknown["parameter"] == "fattore_di_potenza"


def test_duplicates_in_a_file_keep_the_last_line(con, config, tmp_path):
    path = write_csv(tmp_path / "dup.csv", HEADER +
                     'abc,Tensione,10:00:00 12/10/2020,"230,0"\n'
                     'abc,Tensione,10:00:00 12/10/2020,"231,0"\n'
                     'abc,Tensione,10:01:00 12/10/2020,"232,0"\n')
    parsed = parse(con, config, path)
    assert [(r[2], r[3]) for r in rows(con)] == [(231.0, 3), (232.0, 4)]
    assert parsed.rejects["line"].tolist() == [2]
    assert parsed.rejects.loc[0, "reason"] == "duplicate of abc.voltage at 2020-10-12 08:00:00 UTC: superseded by line 3"


@pytest.mark.parametrize("content, expected", [
    ("", "line 1: empty file, expected a CSV header"),
    ("Device,Param,Date,Value\nx,y,z,1\n", "matches no known shape; expected the REACH header 'Dispositivo,Parametro,Data,Valore'"),
])
def test_unknown_header_or_empty_file_fails_the_file(con, config, tmp_path, content, expected):
    parsed = parse(con, config, write_csv(tmp_path / "odd.csv", content))
    assert parsed.table is None and expected in parsed.error and "odd.csv" in parsed.error


def test_wide_file_missing_configured_column(con, config, tmp_path):
    path = write_csv(tmp_path / "Steel_industry_data_2019.csv", "date,Usage_kWh\n1/1/2019 0:15,3.1\n")
    parsed = parse(con, config, path, "steel_plant")
    assert parsed.table is None
    assert "lacks column(s) ['Lagging_Current_Reactive.Power_kVarh'" in parsed.error


def test_wide_bad_cells_and_header_only(con, config, tmp_path):
    header = (SAMPLE / "Steel_industry_data.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    path = write_csv(tmp_path / "s.csv", header + "\n"
                     "1/1/2019 0:15,3.17,2.95,0,0,73.21,100,900,Weekday,Tuesday,Light_Load\n"
                     "1/1/2019 0:30,n/a,4.46,,0,66.77,100,1800,Weekday,Tuesday,Light_Load\n"
                     "2019-01-01 00:45,3.24,3.28,0,0,70.28,100,2700,Weekday,Tuesday,Light_Load\n")
    parsed = parse(con, config, path, "steel_plant")
    assert parsed.rows == 7 + 5  # Load_Type included; line 3: one bad cell rejected, one empty cell absent
    got = parsed.rejects[["line", "field"]].values.tolist()
    assert got == [[3, "Usage_kWh"], [4, "date"]]
    assert "expected format %d/%m/%Y %H:%M" in parsed.rejects.loc[1, "reason"]
    empty = parse(con, config, write_csv(tmp_path / "h.csv", header + "\n"), "steel_plant", prefix="t2")
    assert empty.error is None and empty.rows == 0


def _split_char_file(tmp_path, tail: bytes) -> Path:
    """A REACH file whose byte SCAN_BLOCK - 1 begins ``tail`` (a two-byte character, or a lone
    lead byte) in a device name: the scan's first block ends inside it, the next is ASCII."""
    start = datetime(2016, 11, 1)
    lines, size, minute = [HEADER.encode()], len(HEADER), 0
    while size < SCAN_BLOCK - 100:
        stamp = start + timedelta(minutes=minute)
        lines.append(f'd1,Potenza attiva,{stamp:%H:%M:%S %d/%m/%Y},"2,5"\n'.encode())
        size, minute = size + len(lines[-1]), minute + 1
    lines.append(b"d2" + b"x" * (SCAN_BLOCK - 1 - size - 2))
    path = tmp_path / "split.csv"
    path.write_bytes(b"".join(lines) + tail)
    return path


def test_scan_beside_the_read_gives_the_file_hash_and_lines(con, config, tmp_path):
    """The scan runs in a thread beside DuckDB's read: its hash and line count are the file's
    (hashlib, bytes.count), and a character cut by the scan's block boundary, followed by an
    ASCII block, is decoded whole rather than skipped as ASCII."""
    path = _split_char_file(tmp_path, "è".encode() + b',Potenza attiva,10:02:00 01/11/2016,"3,5"\n')
    data = path.read_bytes()
    parsed = parse(con, config, path)
    assert parsed.error is None and len(parsed.rejects) == 0
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert parsed.lines == data.count(b"\n") and parsed.rows == parsed.lines - 1
    assert re.fullmatch(r"d2x+è\.active_power", rows(con)[-1][0])
    assert rows(con)[-1][2:] == (3.5, parsed.lines)


def test_a_lead_byte_cut_off_before_an_ascii_block_is_not_valid_utf8(con, config, tmp_path):
    """A lead byte ending the scan's first block, followed by ASCII: the file is not UTF-8,
    rejected whole on the scan's finding (its byte offset), not on DuckDB's reading."""
    path = _split_char_file(tmp_path, b'\xc3,Potenza attiva,10:02:00 01/11/2016,"3,5"\n')
    data = path.read_bytes()
    assert data[SCAN_BLOCK - 1] == 0xc3 and data[SCAN_BLOCK:SCAN_BLOCK + 1].isascii()
    parsed = parse(con, config, path)
    assert parsed.table is None and parsed.sha256 == hashlib.sha256(data).hexdigest()
    assert f"not valid utf-8 at byte {SCAN_BLOCK - 1} (0xc3)" in parsed.error
    assert list(parsed.rejects["line"]) == [0]
