"""Run hygiene: find runs whose process died, mark them failed and free their pool slots.

Dagster's run monitoring (the daemon, ``.dagster_home/dagster.yaml``) fails runs that never
start and frees the slots of finished runs, but the default run launcher cannot tell that a
STARTED run's process was killed (``kill -9``, a crash, a reboot): such a run stays STARTED and
keeps its ``duckdb`` pool slot forever, so every later run waits. Every run BEMP executes runs
its steps in one process (the in-process executor), which Dagster records as an engine event
with the pid; a run is dead when that process no longer exists (or the pid now belongs to a
younger process). The ``bemp run`` CLI reaps before it starts and while it waits for a slot;
the ``run_hygiene_sensor`` does the same under the daemon.

Only runs of this machine are judged: runs that ``bemp run`` started carry ``bemp/host``; other
runs are judged only when the instance's storage is local (SQLite), as in this deployment.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

HOST_TAG = "bemp/host"
LAUNCHER_PID_TAG = "bemp/launcher_pid"
IN_FLIGHT = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
             DagsterRunStatus.CANCELING]
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class Reaped:
    run_id: str
    job_name: str
    pid: int | None
    reason: str


def this_host() -> str:
    return socket.gethostname()


def _process_start_epoch(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, StopIteration, ValueError):
        return None


def process_alive(pid: int, not_after: float | None = None) -> bool:
    """Whether ``pid`` exists and, when ``not_after`` is given, started no later than that
    instant (a younger process means the pid was reused after the original died)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not_after is not None:
        started = _process_start_epoch(pid)
        if started is not None and started > not_after + 2:
            return False
    return True


def worker_pid(instance: DagsterInstance, run: DagsterRun) -> tuple[int, float] | None:
    """(pid, when it was reported) of the process executing ``run``, from its engine events."""
    events = instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
    for record in reversed(events):
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value), record.timestamp
    return None


def _judged_here(instance: DagsterInstance, run: DagsterRun) -> bool:
    host = run.tags.get(HOST_TAG)
    if host is not None:
        return host == this_host()
    return type(instance.run_storage).__name__.startswith("Sqlite")


def _why_dead(instance: DagsterInstance, run: DagsterRun) -> tuple[int | None, str] | None:
    """(pid, reason) when ``run`` is in flight but no process of this machine executes it."""
    found = worker_pid(instance, run)
    if found is not None:
        pid, reported = found
        if not process_alive(pid, not_after=reported):
            return pid, f"its process {pid} is gone (killed or crashed)"
        return None
    launcher = run.tags.get(LAUNCHER_PID_TAG)
    if launcher and launcher.isdigit():
        record = instance.get_run_record_by_id(run.run_id)
        created = record.create_timestamp.timestamp() if record else None
        if not process_alive(int(launcher), not_after=created):
            return int(launcher), f"`bemp run` process {launcher} died before the run started"
    return None


def reap_dead_runs(instance: DagsterInstance) -> list[Reaped]:
    """Mark in-flight runs whose process died as failed, then free every pool slot still held
    or awaited by a finished run. Returns the runs it failed."""
    reaped = []
    for record in instance.get_run_records(RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        if not _judged_here(instance, run):
            continue
        dead = _why_dead(instance, run)
        if dead is None:
            continue
        pid, reason = dead
        message = f"Run hygiene: marked failed because {reason}; its pool slots are freed."
        instance.report_run_failed(run, message)
        reaped.append(Reaped(run.run_id, run.job_name, pid, reason))
    free_finished_slots(instance)
    return reaped


def free_finished_slots(instance: DagsterInstance) -> int:
    """Free the pool slots (claimed or awaited) of runs that have ended."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 0
    run_ids = storage.get_concurrency_run_ids()
    if not run_ids:
        return 0
    finished = instance.get_run_records(RunsFilter(run_ids=list(run_ids), statuses=FINISHED))
    for record in finished:
        storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
    return len(finished)
