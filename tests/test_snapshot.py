"""The BI snapshot on real DuckDB files: atomic replacement while a reader holds the old one."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb

from bemp_assets.domain.snapshot import VIEWS, publish_snapshot, snapshot_path
from bemp_assets.domain.warehouse import prepare

T0 = datetime(2018, 1, 1, tzinfo=timezone.utc)


def make_warehouse(path: Path, values: list[float]) -> None:
    with duckdb.connect(str(path)) as con:
        prepare(con)
        con.execute("DELETE FROM raw.measurements")
        con.executemany("INSERT INTO raw.measurements VALUES ('plant.active_energy', ?, ?, 'steel.csv', ?, ?)",
                        [(T0.replace(hour=i), v, i + 2, T0) for i, v in enumerate(values)])


def raw_sum(con) -> float:
    return con.execute("SELECT sum(value) FROM bi.raw_measurements").fetchone()[0]


def test_views_parquet_and_a_reader_that_keeps_the_old_snapshot(tmp_path):
    warehouse, bi_dir = tmp_path / "warehouse.duckdb", tmp_path / "bi"
    make_warehouse(warehouse, [1.0, 2.0])
    path = publish_snapshot(warehouse, bi_dir)
    assert path == snapshot_path(bi_dir) == bi_dir / "bemp_bi.duckdb"
    reader = duckdb.connect(str(path), read_only=True)
    views = {r[0] for r in reader.execute("SELECT view_name FROM duckdb_views() WHERE schema_name = 'bi'").fetchall()}
    assert set(VIEWS) | {"snapshot_info"} == views
    assert raw_sum(reader) == 3.0
    assert reader.execute("SELECT source_file, source_line FROM bi.raw_measurements ORDER BY ts").fetchall() == \
        [("steel.csv", 2), ("steel.csv", 3)]
    # a new publication while the reader holds the old file open: both succeed, no lock taken
    make_warehouse(warehouse, [10.0, 20.0, 30.0])
    publish_snapshot(warehouse, bi_dir)
    assert raw_sum(reader) == 3.0
    reader.close()
    with duckdb.connect(str(path), read_only=True) as fresh:
        assert raw_sum(fresh) == 60.0
        info = dict(fresh.execute("SELECT view_name, row_count FROM bi.snapshot_info").fetchall())
    assert info["raw_measurements"] == 3
    parquet = duckdb.sql(f"SELECT sum(value), count(*) FROM '{bi_dir / 'parquet' / 'raw_measurements.parquet'}'").fetchall()[0]
    assert parquet == (60.0, 3)
    assert sorted(p.name for p in bi_dir.iterdir()) == ["bemp_bi.duckdb", "parquet"]  # no temporary left
    assert len(list((bi_dir / "parquet").glob("*.parquet"))) == len(VIEWS) + 1
