"""Run hygiene with real `bemp run` processes, a real Dagster instance and real DuckDB files:
a killed run never wedges the next one, a waiting run says who holds the pool slot and stops
on SIGTERM, a lock-holding reader or a damaged file fails fast with a clear message."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.events import EngineEventData
from dagster._core.instance.ref import InstanceRef

from bemp_assets.runs import LAUNCHER_PID_TAG, reap_dead_runs

from .conftest import CONFIG_DIR, ROOT, SAMPLE

BEMP = [sys.executable, "-m", "bemp_assets.cli"]
# three months of the steel plant: long enough to interrupt, short enough for CI
START, END = "2018-01-01", "2018-03-31"
TABLES = {
    "raw.measurements": "SELECT variable_id, ts, value FROM raw.measurements",
    "clean.measurements": "SELECT variable_id, ts, value FROM clean.measurements",
    "agg.hourly": "SELECT variable_id, hour, mean, min, max, sum, n, coverage FROM agg.hourly",
    "agg.daily": "SELECT variable_id, day, mean, min, max, sum, n, coverage FROM agg.daily",
}


class Site:
    """A fresh BEMP_HOME (inbox seeded with the steel plant's export) and DAGSTER_HOME."""

    def __init__(self, root: Path):
        self.home, self.dagster_home = root / "home", root / "dagster_home"
        self.dagster_home.mkdir(parents=True)
        shutil.copy(ROOT / ".dagster_home" / "dagster.yaml", self.dagster_home / "dagster.yaml")
        (self.home / "inbox").mkdir(parents=True)
        shutil.copy(SAMPLE / "Steel_industry_data.csv", self.home / "inbox")
        self.env = {**os.environ, "BEMP_HOME": str(self.home), "BEMP_CONFIG": str(CONFIG_DIR),
                    "BEMP_SAMPLE": str(SAMPLE), "DAGSTER_HOME": str(self.dagster_home), "PYTHONUNBUFFERED": "1"}

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def bemp(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*BEMP, *args], env={**self.env, **env}, capture_output=True, text=True, timeout=600)

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen([*BEMP, *args], env={**self.env, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(self.dagster_home)))

    def tables(self) -> dict[str, list]:
        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return {name: sorted(con.execute(sql).fetchall()) for name, sql in TABLES.items()}


def wait_for_step(instance: DagsterInstance, step_prefix: str, timeout: float = 300) -> str:
    """The run id once a step whose key starts with ``step_prefix`` has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in instance.get_run_records(limit=5):
            starts = instance.all_logs(record.dagster_run.run_id, of_type=DagsterEventType.STEP_START)
            if any(e.step_key and e.step_key.startswith(step_prefix) for e in starts):
                return record.dagster_run.run_id
        time.sleep(0.2)
    raise AssertionError(f"no step {step_prefix}* started within {timeout} s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, list]:
    site = Site(tmp_path_factory.mktemp("uninterrupted"))
    result = site.bemp("run", "--start", START, "--end", END)
    assert result.returncode == 0, result.stdout + result.stderr
    return site.tables()


def test_kill_9_mid_step_then_next_run_completes_with_identical_data(tmp_path, uninterrupted):
    site = Site(tmp_path)
    victim = site.start("run", "--start", START, "--end", END)
    instance = site.instance()
    killed_run = wait_for_step(instance, "raw__steel_plant")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert instance.get_run_by_id(killed_run).status == DagsterRunStatus.STARTED  # left behind

    result = site.bemp("run", "--start", START, "--end", END)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {killed_run} (bemp_pipeline) marked failed" in result.stdout
    assert instance.get_run_by_id(killed_run).status == DagsterRunStatus.FAILURE
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert info.claimed_slots == [] and info.pending_steps == []
    assert_same_tables(site.tables(), uninterrupted)


def assert_same_tables(got: dict[str, list], expected: dict[str, list]) -> None:
    """Every row equal; floats to 1e-12 relative: DuckDB sums a group in the order it scans its
    rows, and a run resumed after a kill wrote clean's rows in another order (last bits differ:
    3.757291666666666 against 3.7572916666666636)."""
    assert got.keys() == expected.keys()
    for table in expected:
        assert len(got[table]) == len(expected[table]), table
        for mine, theirs in zip(got[table], expected[table]):
            assert len(mine) == len(theirs) and all(
                math.isclose(a, b, rel_tol=1e-12) if isinstance(a, float) and isinstance(b, float) else a == b
                for a, b in zip(mine, theirs)), (table, mine, theirs)


def dead_process() -> subprocess.Popen:
    """A process that has ended: its pid names no live process."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone


def hold_pool_slot(instance: DagsterInstance, pid: int) -> str:
    """A STARTED run executed by process ``pid`` holding the `duckdb` pool slot, as a run of
    another `bemp run` in the middle of a long step would; returns its run id."""
    run = instance.run_storage.add_run(_bare_run({}, DagsterRunStatus.STARTED))
    instance.report_engine_event("Executing steps in process", run, EngineEventData.in_process(pid))
    instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
    claim = instance.event_log_storage.claim_concurrency_slot("duckdb", run.run_id, "raw__steel_plant")
    assert claim.is_claimed
    return run.run_id


def read_until(process: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed:\n{''.join(lines)}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_waiting_for_the_pool_names_the_holder_once_and_stops_on_a_signal(tmp_path, sig):
    site = Site(tmp_path)
    instance = site.instance()
    busy = subprocess.Popen(["sleep", "300"])
    try:
        holder = hold_pool_slot(instance, busy.pid)
        waiter = site.start("run", "--start", "2018-01-01", "--end", "2018-01-02")
        said = read_until(waiter, "waiting for the 'duckdb' pool slot")
        time.sleep(3)  # the watcher polls every second: it must not repeat itself
        waiter.send_signal(sig)
        said += waiter.communicate(timeout=120)[0].splitlines(keepends=True)
    finally:
        busy.kill()
    text = "".join(said)
    assert f"waiting for the 'duckdb' pool slot held by run {holder} (bemp_pipeline, STARTED, pid {busy.pid})" in text
    assert text.count("waiting for the 'duckdb' pool slot") == 1
    assert waiter.returncode == 130, text
    [waiting_run] = [r.dagster_run for r in instance.get_run_records() if r.dagster_run.run_id != holder]
    assert waiting_run.status == DagsterRunStatus.CANCELED
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert {c.run_id for c in info.claimed_slots} == {holder}
    assert {p.run_id for p in info.pending_steps} == {holder}  # the cancelled run waits no more


def test_bemp_run_fails_a_pool_holder_whose_process_died_and_goes_on(tmp_path):
    site = Site(tmp_path)
    instance = site.instance()
    gone = dead_process()
    holder = hold_pool_slot(instance, gone.pid)
    result = site.bemp("run", "--start", "2018-01-01", "--end", "2018-01-02")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {holder} (bemp_pipeline) marked failed: its process {gone.pid} is gone" in result.stdout
    assert instance.get_run_by_id(holder).status == DagsterRunStatus.FAILURE


def test_a_run_never_started_by_a_dead_bemp_process_is_failed(tmp_path):
    site = Site(tmp_path)
    instance = site.instance()
    gone = dead_process()
    # bare run records are enough here: `bemp run` was killed between creating and starting
    created = instance.run_storage.add_run(_bare_run({LAUNCHER_PID_TAG: str(gone.pid)}))
    alive = instance.run_storage.add_run(_bare_run({LAUNCHER_PID_TAG: str(os.getpid())}))

    reaped = reap_dead_runs(instance)

    assert [r.run_id for r in reaped] == [created.run_id]
    assert instance.get_run_by_id(created.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == DagsterRunStatus.NOT_STARTED


def _bare_run(tags: dict[str, str], status: DagsterRunStatus = DagsterRunStatus.NOT_STARTED) -> DagsterRun:
    return DagsterRun(job_name="bemp_pipeline", status=status, tags=tags)


def test_a_reader_holding_the_lock_fails_the_run_fast_naming_it(tmp_path):
    site = Site(tmp_path)
    assert site.bemp("run", "--start", "2018-01-01", "--end", "2018-01-02").returncode == 0
    reader = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print('open', flush=True); time.sleep(120)"), str(site.warehouse)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        result = site.bemp("run", "--start", "2018-01-01", "--end", "2018-01-02", BEMP_LOCK_WAIT="1")
        still_reading = reader.poll() is None
    finally:
        reader.kill()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert still_reading  # the run gave up while the reader still held the file
    assert f"is locked by PID {reader.pid}" in output and "waited 1 s (BEMP_LOCK_WAIT)" in output


def test_a_damaged_warehouse_fails_at_once_with_what_to_do(tmp_path):
    site = Site(tmp_path)
    assert site.bemp("run", "--start", "2018-01-01", "--end", "2018-01-02").returncode == 0
    with open(site.warehouse, "r+b") as handle:
        handle.truncate(100_000)

    summary = site.bemp("summary")
    run = site.bemp("run", "--start", "2018-01-01", "--end", "2018-01-02")

    assert summary.returncode == 1
    [line] = summary.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"bemp summary: warehouse {site.warehouse} is damaged or not a DuckDB file (IO Error: ")
    assert line.endswith(f"Move it aside (mv {site.warehouse} {site.warehouse}.damaged) and restore a backup, or "
                         f"rebuild it: `bemp run` over the full range re-ingests the inbox files and re-polls the live sources.")
    assert run.returncode == 1
    assert f"warehouse {site.warehouse} is damaged or not a DuckDB file" in run.stdout + run.stderr
    failed_steps = [line for line in (run.stdout + run.stderr).splitlines() if "STEP_FAILURE" in line]
    assert failed_steps, "the first warehouse step fails"


def test_the_hygiene_sensor_fails_a_dead_run_and_frees_its_slot(tmp_path):
    from dagster import build_sensor_context

    from sensors import build_run_hygiene_sensor

    site = Site(tmp_path)
    instance = site.instance()
    gone = dead_process()
    dead = hold_pool_slot(instance, gone.pid)
    sensor = build_run_hygiene_sensor()

    first = sensor(build_sensor_context(instance=instance))
    second = sensor(build_sensor_context(instance=instance))

    assert first.skip_message == f"marked 1 dead run(s) failed and freed their pool slots: {dead}"
    assert second.skip_message == "every in-flight run has a live process"
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    assert info.claimed_slots == [] and info.pending_steps == []
