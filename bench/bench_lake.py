"""Benchmark: a 90-day backfill of the CSV pipeline on the embedded DuckDB file against DuckLake
(catalog in a local PostgreSQL from pip, Parquet files in a folder), through `bemp run`.

    python bench/bench_lake.py                       # 2018-01-01 .. 2018-03-31, 2 workers
    python bench/bench_lake.py --start 2018-01-01 --end 2018-01-31 --workers 2
    python bench/bench_lake.py --scale 100           # 100 meters x 90 days at one sample a minute

By default the backfill is the steel plant's days of the sample (one CSV holding the year, which
every worker parses whole). With ``--scale N`` it is instead N meters at one sample a minute in
monthly REACH exports (bench_pipeline.py's `--scale` files, generated into --scale-dir and
reused), 90 days from 2020-11-01: three files, 12.96 M readings for 100 meters.

Three timings of the same backfill (raw -> clean -> hourly -> daily of the steel plant's days,
the status and alarm refresh left out), each on a fresh warehouse and a fresh Dagster instance:
- file: the embedded DuckDB file, one run (one writer: the only way it can run);
- lake x1: DuckLake, one run (what the backend itself costs);
- lake xN: DuckLake, N runs at once, each a `bemp run` process of its own (`--workers N`).
Each timing is the wall time of `bemp run` as a subprocess (Python start and Dagster import
included). Then it checks that the three warehouses hold the same clean and hourly rows.
This is a measuring script, not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bemp_assets.cli import seed_sample  # noqa: E402
from bemp_assets.domain.connection import connect  # noqa: E402
from bemp_assets.domain.settings import Settings  # noqa: E402
from bemp_assets.lake_server import EmbeddedPostgres, lake_settings  # noqa: E402

CHECKED = ("clean.measurements", "agg.hourly", "agg.daily")
SCALE_DAYS = 90


def timed_run(settings: Settings, dagster_home: Path, start: str, end: str, workers: int) -> float:
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_env(), "DAGSTER_HOME": str(dagster_home)}
    command = [sys.executable, "-m", "bemp_assets.cli", "run", "--start", start, "--end", end, "--no-refresh",
               *(["--workers", str(workers)] if workers > 1 else [])]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"bemp run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def contents(settings: Settings) -> dict[str, tuple]:
    """Rows and the sum of every column of the checked tables (sums of doubles compared with a
    relative tolerance: their last bit depends on the order rows are aggregated in)."""
    with connect(settings.warehouse, read_only=True) as con:
        return {t: con.execute(f"SELECT count(*), {', '.join(f'sum({c})' for c in numeric_columns(con, t))} "
                               f"FROM {t}").fetchone() for t in CHECKED}


def numeric_columns(con, table: str) -> list[str]:
    """The columns of ``table`` that can be summed (text flags and keys are left out)."""
    return [name for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()
            if kind in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "HUGEINT", "SMALLINT") or kind.startswith("DECIMAL")]


def same(a: dict[str, tuple], b: dict[str, tuple]) -> bool:
    return all(len(a[t]) == len(b[t]) and all(math.isclose(x or 0, y or 0, rel_tol=1e-12) for x, y in zip(a[t], b[t]))
               for t in CHECKED)


def scale_files(args) -> list[Path]:
    """--scale: the monthly REACH exports of bench_pipeline.py's `--scale` mode; sets the range."""
    from bench_pipeline import SCALE_START, monthly_files

    first = datetime.date.fromisoformat(SCALE_START)
    args.start, args.end = str(first), str(first + datetime.timedelta(days=SCALE_DAYS - 1))
    return monthly_files(Path(args.scale_dir), args.scale, SCALE_DAYS)


def fill_inbox(settings: Settings, files: list[Path]) -> None:
    """The sample (default) or the --scale files, hard-linked where the file system allows."""
    if not files:
        seed_sample(settings)
        return
    from bench_pipeline import link_into

    settings.inbox.mkdir(parents=True, exist_ok=True)
    link_into(settings.inbox, files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2018-01-01")
    parser.add_argument("--end", default="2018-03-31")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=int, default=0, metavar="N",
                        help="N meters x 90 days at one sample a minute instead of the steel sample")
    parser.add_argument("--scale-dir", default="/tmp/bemp-scale/files")
    args = parser.parse_args()
    files = scale_files(args) if args.scale else []
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bemp-bench-lake-"))
    base = {"BEMP_CONFIG": str(ROOT / "data" / "config"), "BEMP_SAMPLE": str(ROOT / "data" / "sample")}
    server = EmbeddedPostgres(work / "pg")
    results, stored = {}, {}
    try:
        for name, workers in (("file", 1), ("lake x1", 1), (f"lake x{args.workers}", args.workers)):
            settings = Settings.from_env({**base, "BEMP_HOME": str(work / name.replace(" ", "_"))})
            if name != "file":
                settings = lake_settings(settings, server, database=name.replace(" ", "_"))
            fill_inbox(settings, files)
            results[name] = timed_run(settings, work / "dagster" / name.replace(" ", "_"), args.start, args.end, workers)
            stored[name] = contents(settings)
            print(f"{name:>9}: {results[name]:7.1f} s   {stored[name]}", flush=True)
    finally:
        server.stop()
    same_rows = all(same(s, stored["file"]) for s in stored.values())
    print(json.dumps({"range": f"{args.start} .. {args.end}", "data": f"{args.scale} meters x 1/min" if args.scale
                      else "steel sample", "workers": args.workers, "seconds": results,
                      "speed_up_lake_parallel_vs_file": round(results["file"] / results[f"lake x{args.workers}"], 2),
                      "speed_up_lake_parallel_vs_lake_serial": round(results["lake x1"] / results[f"lake x{args.workers}"], 2),
                      "same_rows": same_rows, "cpus": os.cpu_count(),
                      "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()}}, indent=2))


if __name__ == "__main__":
    main()
