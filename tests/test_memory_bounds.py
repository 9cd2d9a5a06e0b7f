"""Issue 14's memory bounds: DuckDB's cap on every warehouse session (on by default,
overridable) and clean's chains run over bounded batches of variables, giving the rows one
pass gives. Expected values are computed by hand, not read back from the code under test."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import duckdb
import pytest

from bemp_assets.domain import cleaning
from bemp_assets.domain.chains import FilterChain
from bemp_assets.domain.parsing import partition_range
from bemp_assets.domain.raw_ingest import ingest_files
from bemp_assets.domain.warehouse import prepare, release_memory
from resources import WarehouseResource

from .conftest import write_csv

UNITS = {"KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30, "TiB": 2 ** 40}


def setting_bytes(con: duckdb.DuckDBPyConnection) -> float:
    """current_setting('memory_limit') (DuckDB shows e.g. '953.6 MiB') in bytes."""
    text = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    number, unit = re.fullmatch(r"([\d.]+) (\w+)", text).groups()
    return float(number) * UNITS[unit]


def session_limit(tmp_path, monkeypatch, value: str | None) -> float:
    if value is None:
        monkeypatch.delenv("BEMP_DUCKDB_MEMORY_LIMIT", raising=False)
    else:
        monkeypatch.setenv("BEMP_DUCKDB_MEMORY_LIMIT", value)
    with WarehouseResource(database=str(tmp_path / "warehouse.duckdb")).session() as con:
        return setting_bytes(con)


def test_a_warehouse_session_is_capped_at_512mb_by_default(tmp_path, monkeypatch):
    # 512MB = 512 * 10**6 bytes = 488.28 MiB; DuckDB shows one decimal
    assert session_limit(tmp_path, monkeypatch, None) == pytest.approx(512e6, abs=0.1 * 2 ** 20)


def test_the_environment_raises_the_cap_or_lifts_it(tmp_path, monkeypatch):
    assert session_limit(tmp_path, monkeypatch, "4GB") == pytest.approx(4e9, abs=0.1 * 2 ** 30)
    with duckdb.connect() as plain:  # DuckDB's own default: 80 % of RAM
        default = setting_bytes(plain)
    assert session_limit(tmp_path, monkeypatch, "none") == default
    assert default > 1e9


def test_a_malformed_cap_names_the_variable(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"BEMP_DUCKDB_MEMORY_LIMIT='lots': expected a size such as 1GB"):
        session_limit(tmp_path, monkeypatch, "lots")


def test_batches_are_sorted_and_cut_at_the_row_limit():
    counts = {"a": 3, "b": 2, "c": 4, "e": 9}
    # a + b = 5 fits; c starts a batch, d (no reading in the window) joins it; e alone exceeds
    assert cleaning.batches(["e", "d", "c", "b", "a"], counts, 5) == [["a", "b"], ["c", "d"], ["e"]]
    # no reading at all, first or alone: still one batch (the window's context may fill it)
    assert cleaning.batches(["z", "a"], {"a": 7}, 5) == [["a"], ["z"]]
    assert cleaning.batches(["y", "x"], {}, 5) == [["x", "y"]]


UTC = timezone.utc
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
NOVEMBER = (datetime(2016, 10, 31, 23, tzinfo=UTC), datetime(2016, 11, 30, 23, tzinfo=UTC))  # Rome
AUTUMN = (datetime(2016, 10, 1, tzinfo=UTC), datetime(2016, 12, 31, tzinfo=UTC))
CHAINS = [FilterChain.model_validate({"name": "counters", "select": {"kind": "cumulative"},
                                      "steps": [{"deaccumulate": {"gap": "spread"}}]}),
          FilterChain.model_validate({"name": "power", "select": {"parameter": "active_power"},
                                      "steps": [{"clip": {"min": 0, "max": 30, "mode": "clip"}}]})]


def reach(device: str, parameter: str, local: str, value: str) -> str:
    return f'{device},{parameter},{local},"{value}"'


def clean_by_batch(config, tmp_path, monkeypatch, limit: int):
    """clean.measurements for November after rebuild_clean with at most ``limit`` readings a batch."""
    lines = ([reach("d1", "Energia attiva", f"10:{m:02d}:00 01/11/2016", f"{100 + m * m},0") for m in range(6)]
             + [reach("d2", "Energia attiva", f"10:{m:02d}:00 01/11/2016", f"{50 + 2 * m},0") for m in range(6)]
             # d3: 8 kWh over the 4 minutes across the window's start; d5: 86,404 kWh from just
             # before the window to its end (no reading inside): both spread evenly per minute
             + [reach("d3", "Energia attiva", "23:58:00 31/10/2016", "100,0"),
                reach("d3", "Energia attiva", "00:02:00 01/11/2016", "108,0"),
                reach("d5", "Energia attiva", "23:58:00 31/10/2016", "0,0"),
                reach("d5", "Energia attiva", "00:00:00 01/12/2016", "86404,0")]
             + [reach("d4", "Potenza attiva", f"10:0{m}:00 01/11/2016", v) for m, v in enumerate(["5,0", "40,0", "-3,0"])])
    path = write_csv(tmp_path / f"batch{limit}" / "a.csv", "Dispositivo,Parametro,Data,Valore\n" + "\n".join(lines) + "\n")
    monkeypatch.setattr(cleaning, "BATCH_ROWS", limit)
    with prepare(duckdb.connect(str(tmp_path / f"batch{limit}.duckdb"))) as con:
        ingest_files(con, [path], config.source("reach_meters"), config, AUTUMN, NOW, partition_range(config.site, NOW))
        report = cleaning.rebuild_clean(con, *NOVEMBER, CHAINS, NOW)
        rows = con.execute("SELECT variable_id, ts, value, chain FROM clean.measurements ORDER BY ALL").fetchall()
    return rows, report


def test_clean_in_batches_of_two_readings_equals_one_pass(config, tmp_path, monkeypatch):
    rows, report = clean_by_batch(config, tmp_path, monkeypatch, 2)  # batches d1 | d2 | d3 + d5; d4
    one_pass, whole = clean_by_batch(config, tmp_path, monkeypatch, 10 ** 9)
    assert rows == one_pass and report.chains == whole.chains and report.rows == whole.rows == len(rows)

    def of(variable):
        return [(ts.astimezone(UTC).strftime("%m-%d %H:%M"), value) for v, ts, value, _ in rows if v == variable]
    # d1: differences 1, 3, 5, 7, 9 at their interval's start (09:00 UTC = 10:00 Rome)
    assert of("d1.active_energy") == [(f"11-01 09:{m - 1:02d}", float(2 * m - 1)) for m in range(1, 6)]
    assert of("d2.active_energy") == [(f"11-01 09:{m:02d}", 2.0) for m in range(5)]
    # d3: 2 kWh a minute from 22:58 UTC; 23:00 and 23:01 are inside the window
    assert of("d3.active_energy") == [("10-31 23:00", 2.0), ("10-31 23:01", 2.0)]
    # d5: 30 days and 2 minutes = 43,202 minutes of 2 kWh; the window holds its 43,200 minutes
    d5 = of("d5.active_energy")
    assert len(d5) == 43_200 and {v for _, v in d5} == {2.0} and (d5[0][0], d5[-1][0]) == ("10-31 23:00", "11-30 22:59")
    assert of("d4.active_power") == [("11-01 09:00", 5.0), ("11-01 09:01", 30.0), ("11-01 09:02", 0.0)]
    # 12 readings of d1, d2, 2 of d3 (one before the window), 2 of d5 (both outside)
    assert report.chains["counters"]["filters"][0]["rows_in"] == 16
    assert report.chains["counters"]["variables"] == 4 and report.chains["power"]["filters"][0]["clipped"] == 2


def context_of(rows: list[tuple[str, str, float]], window: tuple[str, str]) -> list[tuple]:
    """cleaning._context over ``rows`` (variable, UTC time, value) for the window, sorted."""
    with prepare(duckdb.connect()) as con:
        con.executemany("INSERT INTO raw.measurements VALUES (?, ?::TIMESTAMPTZ, ?, 'f', 1, now())",
                        [[v, f"{ts}:00+00", value] for v, ts, value in rows])
        start, end = (datetime.fromisoformat(f"{w}+00:00") for w in window)
        frame = cleaning._context(con, start, end, ["far", "near", "none", "one_side"])
    return sorted((r.variable_id, r.ts.strftime("%m-%d %H:%M"), r.value) for r in frame.itertuples())


def test_the_readings_next_to_a_window_are_found_near_it_or_far_away():
    # window [06-10, 06-20); CONTEXT_NEAR is 2 days: "far" has its neighbours 9 and 30 days
    # away (the fallback over all history), "near" one within the 2 days and an older one
    rows = [("far", "2024-05-01 00:00", 1.0), ("far", "2024-06-01 12:00", 2.0), ("far", "2024-06-15 00:00", 3.0),
            ("far", "2024-07-20 08:00", 4.0), ("far", "2024-07-21 00:00", 5.0),
            ("near", "2024-06-01 00:00", 6.0), ("near", "2024-06-09 23:59", 7.0), ("near", "2024-06-20 00:00", 8.0),
            ("near", "2024-06-21 00:00", 9.0), ("one_side", "2024-06-25 00:00", 10.0)]
    assert context_of(rows, ("2024-06-10 00:00", "2024-06-20 00:00")) == [
        ("far", "06-01 12:00", 2.0), ("far", "07-20 08:00", 4.0),
        ("near", "06-09 23:59", 7.0), ("near", "06-20 00:00", 8.0),
        ("one_side", "06-25 00:00", 10.0)]


def test_releasing_memory_empties_the_pool_and_keeps_the_cap(tmp_path, monkeypatch):
    monkeypatch.delenv("BEMP_DUCKDB_MEMORY_LIMIT", raising=False)
    with WarehouseResource(database=str(tmp_path / "warehouse.duckdb")).session() as con:
        con.execute("CREATE TABLE t AS SELECT hash(range) AS h FROM range(2000000)")  # 16 MB, incompressible
        con.execute("CHECKPOINT")
        con.execute("SELECT sum(h) FROM t").fetchall()

        def cached() -> int:
            return con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'BASE_TABLE'").fetchone()[0]
        assert cached() >= 8 * 2 ** 20
        release_memory(con)
        assert cached() < 1e6  # RELEASE_TO: what stays pinned (the table's metadata) fits under 1MB
        assert setting_bytes(con) == pytest.approx(512e6, abs=0.1 * 2 ** 20)
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 2_000_000  # read again from the file
