"""Run hygiene under the daemon: fail runs whose process died and free their pool slots.

Dagster's run monitoring cannot see that a STARTED run's process was killed (the default run
launcher has no worker health check), so such a run would hold the `duckdb` pool slot forever
and every later run would wait. This sensor asks ``bemp_assets.runs`` each minute; it opens no
warehouse and requests no run.
"""
from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from bemp_assets.runs import reap_dead_runs


def build_run_hygiene_sensor():
    @sensor(name="run_hygiene_sensor", minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description="Marks runs whose process died as failed and frees their 'duckdb' pool slots.")
    def run_hygiene(context: SensorEvaluationContext) -> SkipReason:
        reaped = reap_dead_runs(context.instance)
        for run in reaped:
            context.log.warning(f"run {run.run_id} ({run.job_name}) marked failed: {run.reason}")
        if not reaped:
            return SkipReason("every in-flight run has a live process")
        return SkipReason(f"marked {len(reaped)} dead run(s) failed and freed their pool slots: "
                          + ", ".join(r.run_id for r in reaped))

    return run_hygiene
