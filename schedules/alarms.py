"""Every few minutes (alarms.evaluate_every_minutes, default 5): evaluate the alarm rules and
send notifications, whether or not new data arrived, so a no-data alarm raises within one
interval after its threshold passes. A tick is skipped while an earlier alarm run is queued
or running (runs would otherwise pile up behind a long pipeline run on the duckdb pool)."""
from dagster import (
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

ALARMS_JOB = "bemp_alarms"
UNFINISHED = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def build_alarms_job():
    return define_asset_job(ALARMS_JOB, selection=AssetSelection.groups("alarms"),
                            description="Evaluate the alarm rules, refresh the board and send notifications.")


def build_alarms_schedule(job, every_minutes: int, asset_keys):
    @schedule(name="bemp_alarms_every", job=job, cron_schedule=f"*/{every_minutes} * * * *",
              default_status=DefaultScheduleStatus.RUNNING,
              description=f"Every {every_minutes} min: alarm evaluation (no-data alarms never late) and notifications.")
    def alarms_every(context: ScheduleEvaluationContext):
        busy = context.instance.get_run_ids(RunsFilter(job_name=ALARMS_JOB, statuses=UNFINISHED), limit=1)
        if busy:
            return SkipReason(f"alarm run {busy[0]} is still queued or running")
        return RunRequest(asset_selection=asset_keys)

    return alarms_every
