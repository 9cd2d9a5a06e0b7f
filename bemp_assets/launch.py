"""Launch a run of the ``bemp`` code location from the command line, the way the UI does.

The run is created from the code location (location ``bemp``, repository ``__repository__``),
so it carries a code-location origin: it appears in the UI's Overview timeline, and its
re-execute button works. It then executes in this process (every BEMP job uses the in-process
executor: its steps share one DuckDB pool slot anyway), so its pid is the run's pid and run
hygiene (``bemp_assets.runs``) can tell when it died.

While the run waits for a ``duckdb`` pool slot, a watcher says once which run holds it and
reaps holders whose process died. Ctrl-C or SIGTERM cancels the run cleanly (status CANCELED)
instead of being ignored while it waits.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.defs_state.base import set_defs_state_storage
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._utils.hosted_user_process import recon_job_from_origin
from dagster._utils.interrupts import check_captured_interrupt

from .runs import HOST_TAG, LAUNCHER_PID_TAG, free_finished_slots, reap_dead_runs, this_host, worker_pid

LOCATION = "bemp"
MODULE = "bemp_assets.definitions"
POOL = "duckdb"


@contextmanager
def code_location(instance: DagsterInstance) -> Iterator:
    """The ``bemp`` code location, loaded in this process from a fresh import of the
    definitions module (so it reads this process's BEMP_* settings)."""
    sys.modules.pop(MODULE, None)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(executable_path=sys.executable, module_name=MODULE, working_directory=os.getcwd()),
        location_name=LOCATION,
    )
    # the definitions load reads defs state from the current context's storage: bind it to this
    # instance's, not whatever an earlier instance of this process left there (a stale weakref)
    with set_defs_state_storage(instance.defs_state_storage), \
            WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as process_context:
        yield process_context.create_request_context().get_code_location(LOCATION)


def create_run(instance: DagsterInstance, location, job_name: str, tags: dict[str, str],
               run_config: dict, asset_selection: Sequence[AssetKey] | None = None) -> DagsterRun:
    """A NOT_STARTED run of ``job_name`` with the code location's origin, as the UI creates it."""
    repository = location.get_repository("__repository__")
    selector = JobSubsetSelector(location_name=LOCATION, repository_name=repository.name, job_name=job_name,
                                 op_selection=None, asset_selection=frozenset(asset_selection) if asset_selection else None)
    remote_job = location.get_job(selector)
    plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None,
                                       instance=instance)
    return instance.create_run(
        job_name=job_name, run_id=None, run_config=run_config, resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute, op_selection=None,
        status=None, root_run_id=None, parent_run_id=None,
        tags={**remote_job.tags, **tags, HOST_TAG: this_host(), LAUNCHER_PID_TAG: str(os.getpid())},
        job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot, remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
        asset_selection=frozenset(asset_selection) if asset_selection else None,
        asset_check_selection=None, asset_graph=repository.asset_graph,
    )


class PoolWatcher(threading.Thread):
    """Watches a run executing in this process, every second:

    * while it waits for a ``duckdb`` pool slot, says once which run holds the slot, and fails
      holders whose process died (their slots are freed, so the wait ends);
    * Ctrl-C and SIGTERM: Dagster captures them during a run and acts on them only when a step
      starts, so a run waiting for a slot would ignore them; an interrupt still pending at the
      next look is delivered to the run here (marked CANCELING, then interrupted).
    """

    def __init__(self, instance: DagsterInstance, run: DagsterRun, say: Callable[[str], None], interval: float = 1.0):
        super().__init__(daemon=True, name="bemp-pool-watcher")
        self.instance, self.run_record, self.say, self.interval = instance, run, say, interval
        self.stopped = threading.Event()
        self.told: set[str] = set()
        self.interrupt_seen = False

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.deliver_pending_interrupt()
                self.check_pool()
            except Exception as exc:  # the watcher only helps; it must never break the run
                self.say(f"(pool watcher stopped: {type(exc).__name__}: {exc})")
                return

    def deliver_pending_interrupt(self) -> None:
        if not check_captured_interrupt():
            self.interrupt_seen = False
            return
        if not self.interrupt_seen:  # a step starting now would act on it itself
            self.interrupt_seen = True
            return
        self.instance.report_run_canceling(self.run_record, "bemp run received Ctrl-C or SIGTERM: cancelling")
        interrupt_main_thread()
        self.stopped.set()

    def check_pool(self) -> None:
        run_id = self.run_record.run_id
        info = self.instance.event_log_storage.get_concurrency_info(POOL)
        ours_waiting = any(p.run_id == run_id and p.assigned_timestamp is None for p in info.pending_steps)
        holders = {c.run_id for c in info.claimed_slots if c.run_id != run_id}
        if not ours_waiting or not holders:
            return
        for reaped in reap_dead_runs(self.instance):
            self.say(f"freed the '{POOL}' pool slot of run {reaped.run_id} ({reaped.job_name}): {reaped.reason}")
        for holder in sorted(holders - self.told):
            self.told.add(holder)
            self.say(self.describe_holder(holder))

    def describe_holder(self, run_id: str) -> str:
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            return f"waiting for the '{POOL}' pool slot held by unknown run {run_id}"
        found = worker_pid(self.instance, run)
        pid = f", pid {found[0]}" if found else ""
        return (f"waiting for the '{POOL}' pool slot held by run {run_id} ({run.job_name}, {run.status.value}{pid}); "
                f"Ctrl-C cancels this run")


def interrupt_main_thread() -> None:
    """Raise DagsterExecutionInterruptedError in the main thread at its next Python bytecode
    (it sleeps in short steps while waiting for a slot), as a run worker's SIGINT would."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident),
                                               ctypes.py_object(DagsterExecutionInterruptedError))


def execute(instance: DagsterInstance, run: DagsterRun, say: Callable[[str], None] = print) -> DagsterRun:
    """Execute a created run in this process; returns the run as it ended."""
    watcher = PoolWatcher(instance, run, say)
    watcher.start()
    try:
        # ReconstructableJob caches the last definition it loaded per (origin, selection): an
        # earlier run of the same job in this process (another BEMP_HOME in tests) must not
        # lend its resources to this one
        ReconstructableJob.get_repository_definition.cache_clear()
        ReconstructableJob.get_definition.cache_clear()
        execute_run(recon_job_from_origin(run.job_code_origin), run, instance)
    finally:
        watcher.stopped.set()
        watcher.join(timeout=5)
    ended = instance.get_run_by_id(run.run_id)
    if ended.status == DagsterRunStatus.FAILURE and interrupted(instance, ended):
        # interrupted inside a step: Dagster fails the run, but it was stopped on purpose
        instance.report_run_canceled(ended, "bemp run was interrupted (Ctrl-C or SIGTERM) during a step")
        ended = instance.get_run_by_id(run.run_id)
    free_finished_slots(instance)
    return ended


def interrupted(instance: DagsterInstance, run: DagsterRun) -> bool:
    """Whether the run failed because its process was interrupted (in process: a signal)."""
    failures = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_FAILURE)
    return any("interrupted" in (record.message or record.user_message or "") for record in failures)
