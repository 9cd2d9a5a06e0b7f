"""Benchmark: a run of ONE day with a season of monthly exports in the inbox (what a daily
partition, an inbox-sensor request or one parallel worker of a backfill does), through
`bemp run` on a fresh warehouse and a fresh Dagster instance; then the next day's run on the same
warehouse and instance.

    python bench/bench_partition_run.py                                # 100 meters, 90 days, 2020-12-10
    python bench/bench_partition_run.py --reference /tmp/ref-checkout  # and the same run of another checkout

The files are bench_pipeline.py's `--scale` exports (N meters at one sample a minute, one file
per calendar month from 2020-11-01; generated into --scale-dir and reused). Each timing is the
wall time of the `bemp run` subprocess (Python start and Dagster import included); with
--reference, the other checkout's code runs the same command in the same invocation, so the
ratio compares code, not machine load. This is a measuring script: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_pipeline import link_into, monthly_files  # noqa: E402


def one_day_runs(code: Path, files: list[Path], day: str, work: Path) -> dict:
    """`bemp run --start day --end day` of ``code`` over an inbox holding ``files``, then the
    next day's run on the same home (what a daily partition run meets: files seen before)."""
    first = one_day_run(code, files, day, work)
    following = str(date.fromisoformat(day) + timedelta(days=1))
    first["next_day_seconds"] = one_day_run(code, [], following, work, fresh=False)["seconds"]
    return first


def one_day_run(code: Path, files: list[Path], day: str, work: Path, fresh: bool = True) -> dict:
    """`bemp run --start day --end day` of ``code`` over an inbox holding ``files`` (``fresh``:
    a new home and instance; else the ones of the previous call)."""
    home, dagster_home = work / "home", work / "dagster_home"
    (home / "inbox").mkdir(parents=True, exist_ok=not fresh)
    dagster_home.mkdir(exist_ok=not fresh)
    link_into(home / "inbox", files)
    env = {**os.environ, "BEMP_HOME": str(home), "BEMP_CONFIG": str(ROOT / "data" / "config"),
           "BEMP_SAMPLE": str(ROOT / "data" / "sample"), "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(code)}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bemp_assets.cli", "run", "--start", day, "--end", day, "--no-refresh"],
                          env=env, cwd=code, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{code}: bemp run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT count(*), sum(value) FROM raw.measurements").fetchone()
        hourly = con.execute("SELECT count(*), sum(sum) FROM agg.hourly").fetchone()
    return {"seconds": round(seconds, 1), "raw_rows": stored[0], "raw_sum": stored[1], "hourly_rows": hourly[0],
            "hourly_sum": hourly[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variables", type=int, default=100)
    parser.add_argument("--days", type=int, default=90, help="length of the season in the inbox, from 2020-11-01")
    parser.add_argument("--day", default="2020-12-10", help="the one day run")
    parser.add_argument("--scale-dir", default="/tmp/bemp-scale/files")
    parser.add_argument("--reference", type=Path, help="another checkout of BEMP to time the same run with")
    args = parser.parse_args()
    files = monthly_files(Path(args.scale_dir), args.variables, args.days)
    work = Path(tempfile.mkdtemp(prefix="bemp-bench-day-"))
    load_before = os.getloadavg()
    results = {"this": one_day_runs(ROOT, files, args.day, work / "this")}
    if args.reference:
        results["reference"] = one_day_runs(args.reference.resolve(), files, args.day, work / "reference")
    print(json.dumps({"inbox": [f.name for f in files], "day": args.day, "results": results,
                      **({"speed_up": round(results["reference"]["seconds"] / results["this"]["seconds"], 2)}
                         if args.reference else {}),
                      "load_average_1_5_15min": {"before": load_before, "after": os.getloadavg()}}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
