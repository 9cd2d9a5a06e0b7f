"""Benchmark: the project's raw -> clean -> hourly path against one plain DuckDB query.

    python bench/bench_pipeline.py                      # 20 variables x 30 days, best of 3
    python bench/bench_pipeline.py --variables 5 --days 10 --repeat 1
    python bench/bench_pipeline.py --scaling            # peak memory for 10 / 30 / 60-day backfills
    python bench/bench_pipeline.py --chain all          # all four core filters, plus each filter alone

The main run measures both paths in one process, alternating (baseline first), and reports the
best wall time of each, rows/s, the ratio project/baseline and the peak resident memory of each
phase (VmRSS sampled every ~5 ms in a background thread, minus the RSS at the start of the phase;
DuckDB allocates natively, so tracemalloc would not see it). It then checks that the two hourly
tables agree.

``--chain all`` runs the project path with a chain that uses all four core filters (counter:
deaccumulate -> clip -> timestep 15min; power: clip -> setpoint -> timestep 15min), once per
set-point tolerance (0 and 0.5 kW by default: the dead band is a different algorithm), against
the same baseline query. Its hourly table cannot equal the baseline's (set-point and 15-minute
steps change the power means), so it checks the counter's total energy instead (the counter's
clip bounds never bind). Then it times each filter alone on the 864,000-row frame fetched once.
``--scaling`` runs the project path once per size, each in a fresh subprocess so one
run's retained memory does not hide the next one's.

This is a measuring script, not a test: nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

# BEMP_BENCH_ROOT: another checkout whose code the project path runs (--reference runs it so)
ROOT = Path(os.environ.get("BEMP_BENCH_ROOT") or Path(__file__).resolve().parents[1]).resolve()
sys.path.insert(0, str(ROOT))

from bemp_assets.domain.config import SourceConfig  # noqa: E402
from bemp_assets.domain import parsing  # noqa: E402
from bemp_assets.domain.parsing import parse_file  # noqa: E402
from bemp_assets.domain.chains import FilterChain  # noqa: E402
from bemp_assets.domain.cleaning import rebuild_clean  # noqa: E402
from bemp_assets.domain.transform import rebuild_hourly  # noqa: E402
from bemp_assets.domain.warehouse import ingest, prepare  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
TZ = "Europe/Rome"
START = "2020-11-02"  # no DST change for the next ~20 weeks (until 2021-03-28)
INTERVAL = 60
# the chain the baseline query reproduces: counters de-accumulated, everything else as read
CHAINS = [FilterChain.model_validate({"name": "counters", "select": {"kind": "cumulative"},
                                      "steps": [{"deaccumulate": {}}]})]
COUNTER_CLIP = {"min": 0, "max": 1}     # kWh per minute: never binds on the generated counter
POWER_CLIP = {"min": 0, "max": 95}      # kW: clips ~5 % of the uniform 0-100 kW power samples
STEP = {"step": "15min"}


def all_filter_chains(tolerance: float) -> list[FilterChain]:
    """All four core filters: counter deaccumulate -> clip -> timestep; power clip -> setpoint -> timestep."""
    return [FilterChain.model_validate({"name": "counters", "select": {"kind": "cumulative"},
                                        "steps": [{"deaccumulate": {}}, {"clip": COUNTER_CLIP},
                                                  {"timestep": STEP}]}),
            FilterChain.model_validate({"name": "power", "select": {"parameter": "active_power"},
                                        "steps": [{"clip": POWER_CLIP}, {"setpoint": {"tolerance": tolerance}},
                                                  {"timestep": STEP}]})]


# --------------------------------------------------------------------------- data generation

def generate(path: Path, variables: int, days: int, seed: int = 7) -> int:
    """Write a REACH export: one sample a minute per variable, rows ordered by time then device.

    Variable 0 is an ``Energia attiva`` counter (monotonic, kWh); the others are ``Potenza attiva``.
    Returns the number of data rows.
    """
    stamps = pd.date_range(START, periods=days * 1440, freq="min")  # local wall-clock time
    write_reach(path, stamps, variables, np.random.default_rng(seed), 1000.0)
    return len(stamps) * variables


def window_for(days: int) -> tuple[datetime, datetime]:
    start = pd.Timestamp(START, tz=TZ).tz_convert("UTC").to_pydatetime()
    return start, start + timedelta(days=days)


# --------------------------------------------------------------------------- memory sampling

def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Samples VmRSS every ``every`` seconds; ``peak_mib`` is peak minus the RSS at entry."""

    def __init__(self, every: float = 0.005):
        self.every, self.start, self.peak = every, 0, 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = rss_kib()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib())
            time.sleep(self.every)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib())

    @property
    def peak_mib(self) -> float:
        return (self.peak - self.start) / 1024

    @property
    def start_mib(self) -> float:
        return self.start / 1024


# --------------------------------------------------------------------------- the two paths

def fresh_db(path: Path) -> Path:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)
    return path


def drop_parsed(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop a parsed file's staging (a --reference checkout may predate ``drop_staged``: a table then)."""
    drop = getattr(parsing, "drop_staged", None)
    if drop:
        drop(con, table)
    else:
        con.execute(f"DROP TABLE IF EXISTS {table}")


def run_project(csv: Path, days: int, db: Path, chains: list[FilterChain] = CHAINS) -> dict:
    """raw -> clean -> hourly through the project's own functions, on a fresh DuckDB file."""
    source = SourceConfig(name="bench", format="reach", pattern="*.csv", expected_interval=INTERVAL)
    window = window_for(days)
    steps = {}
    t0 = time.perf_counter()
    con = prepare(duckdb.connect(str(fresh_db(db))))
    t = time.perf_counter()
    parsed = parse_file(con, csv, source, TZ, "stage_1")
    steps["parse"] = time.perf_counter() - t
    t = time.perf_counter()
    report = ingest(con, source, TZ, [parsed], window, datetime.now(timezone.utc))
    steps["ingest"] = time.perf_counter() - t
    t = time.perf_counter()
    clean = rebuild_clean(con, *window, chains, datetime.now(timezone.utc))
    steps["clean"] = time.perf_counter() - t
    t = time.perf_counter()
    hourly = rebuild_hourly(con, *window)
    steps["hourly"] = time.perf_counter() - t
    t = time.perf_counter()
    drop_parsed(con, parsed.table)
    con.close()  # checkpoint: the data is on disk only after this
    steps["close"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "steps": steps, "rows_read": parsed.rows,
            "rejects": len(parsed.rejects), "inserted": report.inserted,
            "clean_rows": clean.rows, "hourly_rows": hourly["rows"]}


BASELINE_SQL = """
CREATE TABLE hourly AS
WITH readings AS (
    SELECT Dispositivo || '.' || CASE Parametro WHEN 'Energia attiva' THEN 'active_energy'
                                                ELSE 'active_power' END AS variable_id,
           Parametro = 'Energia attiva' AS cumulative,
           timezone('{tz}', strptime(Data, '%H:%M:%S %d/%m/%Y')) AS ts,
           CAST(replace(Valore, ',', '.') AS DOUBLE) AS value
    FROM read_csv('{csv}', header = true, auto_detect = false, delim = ',', quote = '"',
                  columns = {{'Dispositivo': 'VARCHAR', 'Parametro': 'VARCHAR',
                             'Data': 'VARCHAR', 'Valore': 'VARCHAR'}})
),
clean AS (
    SELECT variable_id, ts, value, cumulative FROM readings WHERE NOT cumulative
    UNION ALL
    SELECT variable_id, ts, value, cumulative FROM (
        SELECT variable_id, cumulative, ts - INTERVAL {interval} SECOND AS ts,
               CASE WHEN value >= lag(value) OVER w THEN value - lag(value) OVER w ELSE value END AS value,
               lag(value) OVER w IS NOT NULL AS has_previous
        FROM readings WHERE cumulative
        WINDOW w AS (PARTITION BY variable_id ORDER BY ts)
    ) WHERE has_previous
)
SELECT variable_id, time_bucket(INTERVAL 1 HOUR, ts) AS hour,
       avg(value) AS mean, min(value) AS min, max(value) AS max,
       CASE WHEN bool_or(cumulative) THEN sum(value) END AS sum, count(*) AS n
FROM clean GROUP BY ALL
"""


def run_baseline(csv: Path, db: Path) -> dict:
    """The same hourly table from one plain SQL statement on a fresh DuckDB file."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(fresh_db(db)))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(BASELINE_SQL.format(tz=TZ, csv=str(csv).replace("'", "''"), interval=INTERVAL))
    rows = con.execute("SELECT count(*) FROM hourly").fetchone()[0]
    con.close()
    return {"seconds": time.perf_counter() - t0, "hourly_rows": rows}


def hourly_frame(db: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(f"SELECT variable_id, hour, mean, min, max, sum, n FROM {table} "
                           "ORDER BY variable_id, hour").df()


def compare(project: pd.DataFrame, baseline: pd.DataFrame) -> tuple[bool, str]:
    if len(project) != len(baseline):
        return False, f"row counts differ: project {len(project)}, baseline {len(baseline)}"
    merged = project.merge(baseline, on=["variable_id", "hour"], how="outer", suffixes=("_p", "_b"),
                           indicator=True)
    if (merged["_merge"] != "both").any():
        return False, f"{int((merged['_merge'] != 'both').sum())} (variable, hour) keys in only one table"
    worst = 0.0
    for col in ("mean", "min", "max", "sum", "n"):
        p, b = merged[f"{col}_p"].astype(float), merged[f"{col}_b"].astype(float)
        if (p.isna() != b.isna()).any():
            return False, f"column {col}: NULL in one table only"
        rel = ((p - b).abs() / b.abs().clip(lower=1e-12)).fillna(0.0)
        worst = max(worst, float(rel.max()))
    total_p, total_b = merged["sum_p"].sum(), merged["sum_b"].sum()
    total_rel = abs(total_p - total_b) / max(abs(total_b), 1e-12)
    ok = worst <= 1e-6 and total_rel <= 1e-6
    return ok, (f"{len(project)} rows each; max relative difference over mean/min/max/sum/n {worst:.2e}; "
                f"total energy {total_p:.4f} vs {total_b:.4f} kWh (rel {total_rel:.2e})")


# --------------------------------------------------------------------------- before/after

# columns holding the time of the run that wrote a row: they differ between any two runs
RUN_TIME_COLUMNS = {"ingested_at", "updated_at", "first_seen", "rejected_at", "revised_at"}
COMPARED = ["meta.variables", "meta.clean_variables", "raw.measurements", "raw.revisions", "raw.rejects",
            "clean.measurements", "agg.hourly", "agg.daily"]


def reference_run(reference: Path, csv: Path, days: int, db: Path, chain_args: list[str]) -> dict:
    """The project path of the checkout ``reference`` (e.g. /work/main) on the same file, in a
    subprocess importing that checkout's code (``chain_args``: --chain and --tolerances); its
    warehouse is left in ``db``."""
    env = {**os.environ, "BEMP_BENCH_ROOT": str(reference)}
    out = subprocess.run([sys.executable, __file__, "--project-once", str(csv), "--days", str(days), "--db", str(db),
                          *chain_args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table_differences(ours: Path, theirs: Path) -> list[str]:
    """Every table of COMPARED, row for row (as multisets, run-time columns left out; agg
    statistics to 9 decimals), in both warehouses: what differs, or an empty list when all are equal."""
    problems = []
    with duckdb.connect(str(ours), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH '{theirs}' AS theirs (READ_ONLY)")
        for table in COMPARED:
            schema, name = table.split(".")
            cols = [(c, t) for c, t in con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? ORDER BY column_index", [schema, name]).fetchall()
                    if c not in RUN_TIME_COLUMNS]
            if not cols:
                problems.append(f"{table}: missing in {ours}")
                continue
            # aggregates are summed in parallel, in no fixed order: their last bits vary from run
            # to run of the same code, so agg statistics are compared to 9 decimals
            select = ", ".join(f'round("{c}", 9)' if schema == "agg" and t == "DOUBLE" else f'"{c}"' for c, t in cols)
            counts = con.execute(f"""
                SELECT (SELECT count(*) FROM {table}), (SELECT count(*) FROM theirs.{table}),
                       (SELECT count(*) FROM (SELECT {select} FROM {table} EXCEPT ALL SELECT {select} FROM theirs.{table})),
                       (SELECT count(*) FROM (SELECT {select} FROM theirs.{table} EXCEPT ALL SELECT {select} FROM {table}))
            """).fetchone()
            if counts[2] or counts[3]:
                problems.append(f"{table}: {counts[0]:,} rows here, {counts[1]:,} in the reference; "
                                f"{counts[2]:,} only here, {counts[3]:,} only there")
    return problems


def compare_with_reference(args, csv: Path, ours: Path, chain_args: list[str] = ()) -> None:
    """The reference's project path on ``csv``, every table compared with ``ours``."""
    db = OUT / "reference.duckdb"
    result = reference_run(Path(args.reference), csv, args.days, fresh_db(db), list(chain_args))
    problems = table_differences(ours, db)
    print(f"\nreference {args.reference}: {result['seconds']:.2f}s "
          f"[{', '.join(f'{k} {v:.2f}s' for k, v in result['steps'].items())}]")
    print("every table equal to the reference's (" + ", ".join(COMPARED) + "): "
          + ("YES" if not problems else "NO\n  " + "\n  ".join(problems)))


# --------------------------------------------------------------------------- --scale: bemp run end to end

SCALE_START = "2020-11-01"  # whole months: 30 days = one file, 90 = three, 365 = twelve
# runs `bemp run` in this process with DagsterInstance.handle_new_event timed (the in-process
# executor writes every event from here), then writes the totals to BEMP_BENCH_EVENTS
EVENT_TIMER = """
import atexit, json, os, sys, time
from dagster._core.instance import DagsterInstance
spent = {"seconds": 0.0, "events": 0}
original = DagsterInstance.handle_new_event
def timed(self, *args, **kwargs):
    t = time.perf_counter()
    try:
        return original(self, *args, **kwargs)
    finally:
        spent["seconds"] += time.perf_counter() - t
        spent["events"] += 1
DagsterInstance.handle_new_event = timed
atexit.register(lambda: open(os.environ["BEMP_BENCH_EVENTS"], "w").write(json.dumps(spent)))
from bemp_assets.cli import main
sys.argv = ["bemp", "run"]
main()
"""


def write_reach(path: Path, local: pd.DatetimeIndex, variables: int, rng, counter_start: float) -> float:
    """One REACH export of ``variables`` meters at the local times ``local`` (rows by time, then
    device); returns the counter's last value, where the next file goes on."""
    n = len(local)
    times = np.asarray(local.strftime("%H:%M:%S %d/%m/%Y"), dtype=object)
    values = rng.random((n, variables)) * 100.0
    values[:, 0] = counter_start + np.cumsum(rng.random(n) * 0.05)
    scaled = np.round(values.ravel() * 10_000).astype(np.int64)
    whole = pd.Series(scaled // 10_000).astype(str)
    frac = pd.Series(scaled % 10_000).astype(str).str.zfill(4)
    devices = np.array([f"meter{v:02d}" for v in range(variables)], dtype=object)
    params = np.array(["Energia attiva"] + ["Potenza attiva"] * (variables - 1), dtype=object)
    lines = (pd.Series(np.tile(devices + "," + params + ",", n)) + np.repeat(times, variables)
             + ',"' + whole + "," + frac + '"')
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("Dispositivo,Parametro,Data,Valore\n")
        handle.write("\n".join(lines.tolist()))
        handle.write("\n")
    return float(values[-1, 0])


def monthly_files(folder: Path, variables: int, days: int) -> list[Path]:
    """REACH exports of ``days`` days from SCALE_START, one per calendar month, one sample a
    minute per meter. Local times come from UTC instants, so the autumn hour is written twice
    and the spring gap never. Each file's content depends only on its month and length (seeded
    by them, the counter starting above where the previous month can end), so a file already
    in ``folder`` is reused."""
    start = pd.Timestamp(SCALE_START, tz=TZ)
    instants = pd.date_range(start.tz_convert("UTC"), (start + pd.Timedelta(days=days)).tz_convert("UTC"),
                             freq="min", inclusive="left")
    local = instants.tz_convert(TZ)
    months = local.strftime("%Y-%m")
    paths, offset = [], 0
    for month in pd.unique(months):
        part = local[months == month].tz_localize(None)
        path = folder / f"scale_{variables}v_{month}_{len(part)}min.csv"
        if not path.exists():
            write_reach(path, part, variables, np.random.default_rng(int(month.replace("-", ""))),
                        1000.0 + 0.05 * offset)
        paths.append(path)
        offset += len(part)
    return paths


def tree_rss_kib(root: int) -> int:
    """VmRSS summed over ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next((int(l.split()[1]) for l in handle if l.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def link_into(folder: Path, files: list[Path]) -> None:
    """``files`` into ``folder`` (which exists): hard links where the file system allows (the
    generated exports are GBs), copies otherwise."""
    import shutil
    for f in files:
        try:
            os.link(f, folder / f.name)
        except OSError:
            shutil.copy(f, folder / f.name)


def bemp_run(folder: Path, files: list[Path]) -> dict:
    """`bemp run` over ``files`` on a fresh Dagster instance and warehouse under ``folder``:
    wall time, peak RSS of the process tree (sampled every 0.2 s), time in event writing."""
    import shutil
    home, dagster_home = folder / "home", folder / "dagster_home"
    for d in (home, dagster_home):
        shutil.rmtree(d, ignore_errors=True)
    (home / "inbox").mkdir(parents=True)
    dagster_home.mkdir()
    link_into(home / "inbox", files)
    events = folder / "events.json"
    env = {**os.environ, "BEMP_HOME": str(home), "BEMP_CONFIG": str(ROOT / "data" / "config"),
           "BEMP_SAMPLE": str(ROOT / "data" / "sample"), "DAGSTER_HOME": str(dagster_home),
           "BEMP_BENCH_EVENTS": str(events)}
    t = time.perf_counter()
    with open(folder / "bemp_run.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-c", EVENT_TIMER], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        samples = []  # (epoch seconds, KiB)
        while proc.poll() is None:
            samples.append((time.time(), tree_rss_kib(proc.pid)))
            time.sleep(0.2)
    seconds = time.perf_counter() - t
    peak = max((kib for _, kib in samples), default=0)
    # the RSS timeline, to read beside the run's log (its lines carry the same wall-clock times)
    (folder / "rss.tsv").write_text("".join(f"{datetime.fromtimestamp(at, timezone.utc):%H:%M:%S.%f}\t{kib // 1024}\n"
                                            for at, kib in samples))
    spent = json.loads(events.read_text()) if events.exists() else {"seconds": float("nan"), "events": 0}
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("raw.measurements", "raw.rejects", "clean.measurements", "agg.hourly")}
    return {"seconds": seconds, "exit": proc.returncode, "peak_mib": peak / 1024, "event_seconds": spent["seconds"],
            "events": spent["events"], "steps": step_peaks(dagster_home, samples), **counts}


def step_peaks(dagster_home: Path, samples: list[tuple[float, int]]) -> list[tuple[str, float, float]]:
    """(step, seconds, peak RSS of the tree in MiB while it ran) for every step of every run
    the instance holds, from Dagster's step stats and the RSS samples."""
    from dagster import DagsterInstance
    out = []
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for record in reversed(instance.get_run_records()):
            for step in instance.get_run_step_stats(record.dagster_run.run_id):
                if step.start_time and step.end_time:
                    inside = [kib for at, kib in samples if step.start_time <= at <= step.end_time]
                    out.append((step.step_key, step.end_time - step.start_time, max(inside, default=0) / 1024))
    return out


def scale_run(args) -> None:
    """--scale: generate the monthly files, then `bemp run` once per backfill length."""
    folder = Path(args.scale_dir)
    print(machine())
    results = []
    for days in args.scale_days:
        t = time.perf_counter()
        files = monthly_files(folder / "files", args.variables, days)
        print(f"{days} days: {len(files)} file(s), {sum(f.stat().st_size for f in files) / 2 ** 20:,.0f} MiB "
              f"(generated or found in {time.perf_counter() - t:.0f}s)", flush=True)
        r = bemp_run(folder / f"run_{days}", files)
        r.update(days=days, files=len(files), rows=args.variables * days * 1440)
        results.append(r)
        print(f"  bemp run: exit {r['exit']}, {r['seconds']:.1f}s, peak RSS (tree) {r['peak_mib']:,.0f} MiB, "
              f"events {r['events']:,} in {r['event_seconds']:.1f}s ({r['event_seconds'] / r['seconds']:.0%}); "
              f"raw {r['raw.measurements']:,}, rejects {r['raw.rejects']:,}, clean {r['clean.measurements']:,}, "
              f"hourly {r['agg.hourly']:,}", flush=True)
        for step, secs, mib in sorted(r["steps"], key=lambda x: -x[1])[:12]:
            print(f"    {step:55s} {secs:7.1f}s  peak {mib:7,.0f} MiB", flush=True)
    print(f"\nMarkdown (`bemp run`, {args.variables} variables at one sample a minute, fresh instance and warehouse):\n")
    print("| backfill | files | rows | wall time (s) | rows/s | peak RSS, process tree (MiB) | events | event writing (s) | share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['days']} days | {r['files']} | {r['rows']:,} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
              f"| {r['peak_mib']:,.0f} | {r['events']:,} | {r['event_seconds']:.1f} | {r['event_seconds'] / r['seconds']:.0%} |")


# --------------------------------------------------------------------------- reporting

def machine() -> str:
    mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
    return (f"{os.cpu_count()} CPUs, {mem_kib / 1024 ** 2:.1f} GiB RAM, Python {platform.python_version()}, "
            f"duckdb {duckdb.__version__}, pandas {pd.__version__}, numpy {np.__version__}")


def prepared_csv(args) -> tuple[Path, int]:
    """Generate the benchmark export, print its size and the machine: (path, data rows)."""
    csv = OUT / f"reach_{args.variables}x{args.days}.csv"
    t = time.perf_counter()
    rows = generate(csv, args.variables, args.days)
    print(f"generated {csv} ({rows:,} rows, {csv.stat().st_size / 2 ** 20:.0f} MiB) "
          f"in {time.perf_counter() - t:.1f}s")
    print(machine())
    return csv, rows


def main_run(args) -> None:
    csv, rows = prepared_csv(args)
    best: dict[str, dict] = {}
    peaks: dict[str, float] = {}
    for i in range(args.repeat):
        for name, fn in (("baseline", lambda: run_baseline(csv, OUT / "baseline.duckdb")),
                         ("project", lambda: run_project(csv, args.days, OUT / "project.duckdb"))):
            with PeakRss() as mem:
                result = fn()
            peaks[name] = max(peaks.get(name, 0.0), mem.peak_mib)
            extra = ""
            if name == "project":
                extra = "  [" + ", ".join(f"{k} {v:.2f}s" for k, v in result["steps"].items()) + "]"
            print(f"  run {i + 1} {name:8s} {result['seconds']:6.2f}s  peak +{mem.peak_mib:5.0f} MiB "
                  f"(RSS at start {mem.start_mib:.0f} MiB){extra}")
            if name not in best or result["seconds"] < best[name]["seconds"]:
                best[name] = result
    project, baseline = best["project"], best["baseline"]
    ok, detail = compare(hourly_frame(OUT / "project.duckdb", "agg.hourly"),
                         hourly_frame(OUT / "baseline.duckdb", "hourly"))
    ratio = project["seconds"] / baseline["seconds"]
    print(f"\nproject: {project['rows_read']:,} rows read, {project['rejects']} rejects, "
          f"{project['inserted']:,} inserted, {project['clean_rows']:,} clean, {project['hourly_rows']:,} hourly")
    print(f"hourly tables agree: {'YES' if ok else 'NO'} ({detail})")
    print(f"ratio project/baseline: {ratio:.2f}x (target: <= 2x)\n")
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in project["steps"].items())
    print(f"Markdown ({args.variables} variables x {args.days} days = {rows:,} rows, best of {args.repeat}):\n")
    print("| path | best time (s) | rows/s | peak memory (MiB above start) |")
    print("|---|---:|---:|---:|")
    print(f"| plain DuckDB query (baseline) | {baseline['seconds']:.2f} | {rows / baseline['seconds']:,.0f} "
          f"| {peaks['baseline']:.0f} |")
    print(f"| project: parse_file + ingest + rebuild_clean + rebuild_hourly | {project['seconds']:.2f} "
          f"| {rows / project['seconds']:,.0f} | {peaks['project']:.0f} |")
    print(f"| **ratio project / baseline** | **{ratio:.2f}x** | | |")
    print(f"\nproject steps (best run): {steps}")
    if args.reference:
        compare_with_reference(args, csv, OUT / "project.duckdb")


def counter_energy(db: Path, table: str) -> float:
    """Total of the hourly ``sum`` column of the counter (variable 0)."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT sum(sum) FROM {table} WHERE variable_id = 'meter00.active_energy'").fetchone()[0]


def time_best(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def filters_alone(db: Path, tolerances: list[float], repeat: int) -> list[tuple[str, int, float, int]]:
    """Each core filter called directly on the whole raw table, fetched once from ``db``.

    Rows as fetched are in file order (time, then device), so each filter sorts them first, as the
    first filter of a chain does; the same calls on the frame already in (variable, ts) order show
    what a later step in a chain pays. ``deaccumulate`` gets every variable as a counter (the
    per-variable running sum of the same values), so it works on 864,000 rows, not 43,200.
    """
    from bemp_assets.domain import filters as F
    from bemp_assets.domain.filters import apply_chain
    rows = []
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        fetch, frame = time_best(lambda: con.execute("SELECT variable_id, ts, value FROM raw.measurements").df(), 1)
        meta = con.execute("SELECT variable_id, kind, parameter, expected_interval_s FROM meta.variables").df()
    kinds = meta.set_index("variable_id")["kind"]
    intervals = meta.set_index("variable_id")["expected_interval_s"]
    rows.append(("fetch raw.measurements into pandas (once)", len(frame), fetch, len(frame)))
    ordered = frame.sort_values(["variable_id", "ts"], ignore_index=True)
    counters = frame.assign(value=frame.groupby("variable_id")["value"].cumsum())
    calls = [("deaccumulate {} (every variable as a counter)", counters,
              lambda f: F.deaccumulate(f, F.DeaccumulateParams(), intervals))]
    for label, f in (("as fetched", frame), ("already ordered", ordered)):
        calls += [(f"clip {POWER_CLIP}, {label}", f, lambda f: F.clip(f, F.ClipParams(**POWER_CLIP)))]
        calls += [(f"setpoint tolerance {tol:g}, {label}", f,
                   lambda f, tol=tol: F.setpoint(f, F.SetPointParams(tolerance=tol))) for tol in tolerances]
        calls += [(f"timestep 15min (auto: mean), {label}", f,
                   lambda f: F.timestep(f, F.TimestepParams(**STEP), kinds=kinds))]
    for label, f, fn in calls:
        seconds, (out, _) = time_best(lambda: fn(f), repeat)
        rows.append((label, len(f), seconds, len(out)))
    power_ids = meta.loc[meta["parameter"] == "active_power", "variable_id"]
    counter_ids = meta.loc[meta["kind"] == "cumulative", "variable_id"]
    for tol in tolerances:
        chains = {c.name: c for c in all_filter_chains(tol)}
        def whole_chain():
            n = 0
            for ids, chain in ((counter_ids, chains["counters"]), (power_ids, chains["power"])):
                part = frame[frame["variable_id"].isin(ids)]
                out, _ = apply_chain(part, list(chain.steps), intervals, kinds.loc[list(ids)])
                n += len(out)
            return n
        seconds, n = time_best(whole_chain, repeat)
        rows.append((f"apply_chain, both chains (setpoint tolerance {tol:g})", len(frame), seconds, n))
    return rows


def chain_all_run(args) -> None:
    csv, rows = prepared_csv(args)
    for chain in all_filter_chains(args.tolerances[-1]):
        print(f"  chain {chain.name}: " + " -> ".join(f"{n} {p.model_dump()}" for n, p in chain.steps))
    paths = {"baseline": lambda: run_baseline(csv, OUT / "baseline.duckdb")}
    for tol in args.tolerances:
        paths[f"all, tolerance {tol:g}"] = (
            lambda tol=tol: run_project(csv, args.days, OUT / f"project_all_{tol:g}.duckdb", all_filter_chains(tol)))
    best: dict[str, dict] = {}
    peaks: dict[str, float] = {}
    for i in range(args.repeat):
        for name, fn in paths.items():
            with PeakRss() as mem:
                result = fn()
            peaks[name] = max(peaks.get(name, 0.0), mem.peak_mib)
            extra = ""
            if "steps" in result:
                extra = "  [" + ", ".join(f"{k} {v:.2f}s" for k, v in result["steps"].items()) + "]"
            print(f"  run {i + 1} {name:18s} {result['seconds']:6.2f}s  peak +{mem.peak_mib:5.0f} MiB "
                  f"(RSS at start {mem.start_mib:.0f} MiB){extra}")
            if name not in best or result["seconds"] < best[name]["seconds"]:
                best[name] = result
    baseline = best["baseline"]
    energy_b = counter_energy(OUT / "baseline.duckdb", "hourly")
    print()
    for tol in args.tolerances:
        r = best[f"all, tolerance {tol:g}"]
        energy_p = counter_energy(OUT / f"project_all_{tol:g}.duckdb", "agg.hourly")
        print(f"all, tolerance {tol:g}: {r['rows_read']:,} rows read, {r['inserted']:,} inserted, "
              f"{r['clean_rows']:,} clean, {r['hourly_rows']:,} hourly; counter energy {energy_p:.4f} vs "
              f"baseline {energy_b:.4f} kWh (rel {abs(energy_p - energy_b) / energy_b:.1e})")
    print(f"\nMarkdown ({args.variables} variables x {args.days} days = {rows:,} rows, best of {args.repeat}):\n")
    print("| path | best time (s) | rows/s | ratio to baseline | parse | ingest | clean | hourly | close "
          "| peak memory (MiB above start) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| plain DuckDB query (baseline) | {baseline['seconds']:.2f} | {rows / baseline['seconds']:,.0f} | 1.00x "
          f"| | | | | | {peaks['baseline']:.0f} |")
    for tol in args.tolerances:
        name = f"all, tolerance {tol:g}"
        r = best[name]
        st = " | ".join(f"{r['steps'][k]:.2f}" for k in ("parse", "ingest", "clean", "hourly", "close"))
        print(f"| project, all four filters, setpoint tolerance {tol:g} | {r['seconds']:.2f} "
              f"| {rows / r['seconds']:,.0f} | **{r['seconds'] / baseline['seconds']:.2f}x** | {st} | {peaks[name]:.0f} |")
    print(f"\nEach filter alone (best of {args.repeat}), on the raw table of the last run:\n")
    print("| call | rows in | time (s) | rows out |")
    print("|---|---:|---:|---:|")
    for label, n_in, seconds, n_out in filters_alone(OUT / f"project_all_{args.tolerances[-1]:g}.duckdb",
                                                     args.tolerances, args.repeat):
        print(f"| {label} | {n_in:,} | {seconds:.3f} | {n_out:,} |")
    if args.reference:  # the last tolerance's warehouse against the reference's, same chains
        tol = args.tolerances[-1]
        compare_with_reference(args, csv, OUT / f"project_all_{tol:g}.duckdb", ["--chain", "all", "--tolerances", str(tol)])


def one_project_run(args) -> None:
    """Subprocess of --scaling: generate, run the project path once, print JSON."""
    csv = OUT / f"scaling_{args.variables}x{args.days}.csv"
    rows = generate(csv, args.variables, args.days)
    with PeakRss() as mem:
        result = run_project(csv, args.days, OUT / f"scaling_{args.days}.duckdb")
    print(json.dumps({"days": args.days, "variables": args.variables, "rows": rows,
                      "seconds": result["seconds"], "steps": result["steps"],
                      "start_mib": mem.start_mib, "peak_mib": mem.peak_mib}))
    csv.unlink()
    fresh_db(OUT / f"scaling_{args.days}.duckdb")


def scaling(args) -> None:
    print(machine())
    results = []
    for days in args.scaling_days:
        out = subprocess.run([sys.executable, __file__, "--one-run", "--variables", str(args.variables),
                              "--days", str(days)], check=True, capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"  {days:3d} days: {result['rows']:>10,} rows  {result['seconds']:6.2f}s  "
              f"peak +{result['peak_mib']:.0f} MiB")
    print(f"\nMarkdown (project path, {args.variables} variables, one process per size):\n")
    print("| backfill | rows | time (s) | rows/s | peak memory (MiB above start) | MiB per million rows |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['days']} days | {r['rows']:,} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} "
              f"| {r['peak_mib']:.0f} | {r['peak_mib'] / r['rows'] * 1e6:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variables", type=int, help="default 20, and 100 with --scale")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path; the best is reported")
    parser.add_argument("--scaling", action="store_true", help="peak memory of the project path per backfill size")
    parser.add_argument("--scaling-days", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--chain", choices=["counters", "all"], default="counters",
                        help="counters: de-accumulate the counter only (the chain the baseline reproduces); "
                             "all: all four core filters, plus each filter timed alone")
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.0, 0.5],
                        help="set-point tolerances (kW) for --chain all")
    parser.add_argument("--reference", help="a checkout of the previous implementation (e.g. /work/main): its "
                                            "project path runs on the same file and every table is compared "
                                            "(with --chain all: the last tolerance's run, all four filters)")
    parser.add_argument("--scale", action="store_true",
                        help="`bemp run` end to end over monthly REACH files, once per --scale-days")
    parser.add_argument("--scale-days", type=int, nargs="+", default=[30, 90, 365])
    parser.add_argument("--scale-dir", default="/tmp/bemp-scale", help="where --scale writes files and runs (not git)")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project-once", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.variables = args.variables or (100 if args.scale else 20)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.project_once:  # subprocess of --reference
        chains = CHAINS if args.chain == "counters" else all_filter_chains(args.tolerances[0])
        print(json.dumps(run_project(Path(args.project_once), args.days, Path(args.db), chains)))
    elif args.scale:
        scale_run(args)
    elif args.one_run:
        one_project_run(args)
    elif args.scaling:
        scaling(args)
    elif args.chain == "all":
        chain_all_run(args)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
