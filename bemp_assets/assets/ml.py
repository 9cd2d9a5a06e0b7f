"""ml layer: features, models, backtests and forecasts (docs/models.md). Thin: the work is in
bemp_assets/domain/forecasting*.py; these assets open the warehouse, call it and describe the
result (model table as Markdown, MAE per model as numbers Dagster plots over time, a
forecast-against-actual PNG)."""

import base64
import io

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.forecasting import ForecastError, check_available
from bemp_assets.domain.forecasting_eval import drift_reasons
from bemp_assets.domain.forecasting_jobs import baseline_specs, forecast_day, history_frame, run_backtests, select_specs, train_one
from bemp_assets.domain.forecasting_store import ensure_ml_tables, refresh_status
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, warehouse_asset

GROUP = "ml"
BEATS_PERSISTENCE = "champion_beats_persistence"


class TrainConfig(Config):
    """Which models to train (all of the asset's kind when empty) and TPOT's budget override."""

    models: list[str] = []
    search_minutes: float | None = None


class BacktestConfig(Config):
    """TPOT models are backtested only on request: each monthly refit is a full search."""

    include_tpot: bool = False
    search_minutes: float | None = None


def png_markdown(figure) -> MetadataValue:
    """A matplotlib figure as an inline PNG in Markdown metadata (readable at the UI's width)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return MetadataValue.md(f"![forecast vs actual](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})")


def forecast_plot(series: pd.DataFrame, title: str) -> MetadataValue:
    """Actual and each model's forecast (columns target_ts, model_id, value, actual)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 3.2))
    actual = series.drop_duplicates("target_ts").set_index("target_ts")["actual"].sort_index()
    axis.plot(actual.index, actual.to_numpy(), color="black", linewidth=1.6, label="actual")
    for model_id, rows in series.groupby("model_id"):
        rows = rows.sort_values("target_ts")
        axis.plot(rows["target_ts"], rows["value"], linewidth=0.9, label=model_id)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, ncol=4, loc="upper left")
    return png_markdown(figure)


def model_table(con) -> tuple[pd.DataFrame, MetadataValue]:
    table = con.execute("SELECT model_id, target, role, learner, backtest_mae, backtest_rmae, skill_persistence, "
                        "skill_week, live_mae_14d, last_trained, last_predicted_ts FROM ml.model_status "
                        "ORDER BY target, backtest_mae NULLS LAST").df()
    return table, MetadataValue.md(table.to_markdown(index=False, floatfmt=".4g") if len(table) else "_no models_")


def build_ml_assets(partitions: PartitionsDefinition, hourly_key: AssetKey, bemp: BempConfig,
                    settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name=GROUP, pool=WAREHOUSE_POOL, kinds={"duckdb", "scikit-learn"})
    artifacts = settings.artifacts

    @asset(key=[GROUP, "features"], deps=[hourly_key], **common,
           description="The hourly feature frame of every model, built only from data known at each issue time "
                       "(every feature's available_at is checked against its row's issue).")
    def features(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        summary = []
        with warehouse.session() as con:
            for spec in [*baseline_specs(bemp), *bemp.forecasting.models]:
                try:
                    frame, excluded, n_excluded = history_frame(con, spec, bemp)
                except ForecastError as exc:  # a target without data yet: said, not fatal
                    context.log.warning(str(exc))
                    continue
                check_available(frame, spec.name)
                table = frame.X.assign(target_ts=frame.rows["target_ts"], issued_at=frame.rows["issued_at"])
                path = _folder(artifacts / "features") / f"{spec.target}__{spec.name}.parquet"
                con.register("feature_frame", table)
                con.execute(f"COPY feature_frame TO '{path}' (FORMAT parquet)")
                con.unregister("feature_frame")
                summary.append({"model": spec.name, "target": spec.target, "rows": len(frame.rows),
                                "features": ", ".join(frame.X.columns), "excluded_days": n_excluded,
                                "last_issue": str(frame.rows["issued_at"].max())})
        return MaterializeResult(metadata={"models": MetadataValue.md(pd.DataFrame(summary).to_markdown(index=False)),
                                           "excluded_days": int(max((s["excluded_days"] for s in summary), default=0))})

    def train(context, warehouse, specs, search_minutes=None) -> MaterializeResult:
        results = []
        with warehouse.session() as con:
            ensure_ml_tables(con)
            for spec in specs:
                options = {"search_minutes": search_minutes} if spec.learner == "tpot" else {}
                try:
                    results.append(train_one(con, spec, bemp, artifacts, log=context.log.info, **options))
                except ForecastError as exc:  # a target without data yet: said, not fatal
                    context.log.warning(f"not trained: {exc}")
        table = pd.DataFrame(results)
        metadata = {"trained": MetadataValue.md(table.drop(columns=["search"]).to_markdown(index=False) if len(table) else "_none_"),
                    "excluded_days": int(table["excluded_days"].max()) if len(table) else 0}
        for r in results:
            if r["search"].get("progress"):
                metadata[f"best_cv_mae/{r['model_id']}"] = float(r["search"]["progress"][-1]["best_mae"])
        return MaterializeResult(metadata=metadata)

    @asset(key=[GROUP, "models"], deps=[features.key], **common,
           description="Fits the configured non-TPOT models on all usable history; saves each pipeline under "
                       "$BEMP_HOME/artifacts/models/ by hash and records it in ml.models.")
    def models(context: AssetExecutionContext, warehouse: WarehouseResource, config: TrainConfig) -> MaterializeResult:
        specs = [s for s in select_specs(bemp, config.models or None) if s.learner != "tpot"]
        return train(context, warehouse, specs)

    @asset(key=[GROUP, "tpot_models"], deps=[features.key], **common,
           description="The TPOT 1.x searches (MAE scorer, fixed seed, time budget), on their own materialisation; "
                       "generation and best MAE so far in the log.")
    def tpot_models(context: AssetExecutionContext, warehouse: WarehouseResource, config: TrainConfig) -> MaterializeResult:
        specs = [s for s in select_specs(bemp, config.models or None, include_tpot=True) if s.learner == "tpot"]
        return train(context, warehouse, specs, config.search_minutes)

    @asset(key=[GROUP, "backtests"], deps=[models.key], **common,
           check_specs=[AssetCheckSpec(BEATS_PERSISTENCE, asset=AssetKey([GROUP, "backtests"]), blocking=True,
                                       description="No champion fails to beat previous-day persistence in its backtest.")],
           description="Rolling-origin backtests (monthly refits, daily issues) of every non-TPOT model and both "
                       "baselines; MAE, RMSE, rMAE, skills; champion/challenger roles in ml.model_status.")
    def backtests(context: AssetExecutionContext, warehouse: WarehouseResource, config: BacktestConfig) -> MaterializeResult:
        with warehouse.session() as con:
            ensure_ml_tables(con)
            scores, roles, promotions = run_backtests(con, bemp, include_tpot=config.include_tpot, log=context.log.info,
                                                      **({"search_minutes": config.search_minutes} if config.include_tpot else {}))
            table, markdown = model_table(con)
            detail = con.execute(
                "SELECT b.model_id, b.target_ts, b.value, b.actual FROM ml.backtest_forecasts b JOIN ml.model_status s "
                "USING (model_id, target) WHERE s.role IN ('champion', 'baseline') AND b.target_ts > "
                "(SELECT max(target_ts) FROM ml.backtest_forecasts) - INTERVAL 14 DAY").df()
        bad = table[(table["role"] == "champion") & ~(table["skill_persistence"] > 0)]
        metadata = {"model_table": markdown, "promotions": MetadataValue.md(
            "\n".join(f"- {p.model_id} ({p.target}): {p.reason}" for p in promotions) or "_none_"),
            "backtest_plot": forecast_plot(detail, "backtest: last 14 days, champion and baselines") if len(detail) else "_none_"}
        metadata.update({f"mae/{r.model_id}": float(r.mae) for r in scores.itertuples() if pd.notna(r.mae)})
        check = AssetCheckResult(check_name=BEATS_PERSISTENCE, passed=bad.empty, severity=AssetCheckSeverity.ERROR,
                                 metadata={"offenders": ", ".join(bad["model_id"]) or "none"})
        return MaterializeResult(metadata=metadata, check_results=[check])

    @warehouse_asset(key=[GROUP, "forecasts"], deps=[backtests.key], partitions_def=partitions, group_name=GROUP,
                     kinds={"duckdb", "scikit-learn"},
                     description="Day-ahead forecasts of each target day (the partition) by every model and both baselines, "
                       "each from a version trained before that day's issue; an issued forecast is never overwritten.")
    def forecasts(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        days = [pd.Timestamp(k).date() for k in context.partition_keys]
        inserted = []
        with warehouse.session() as con:
            ensure_ml_tables(con)
            for day in days:
                inserted.append(forecast_day(con, bemp, artifacts, day, log=context.log.info))
            status = refresh_status(con, bemp.forecasting.models, None, bemp.forecasting.live_window_days)
            _, markdown = model_table(con)
            recent = con.execute(
                "SELECT f.model_id, f.target_ts, f.value, coalesce(h.sum, h.mean) AS actual FROM ml.forecasts f "
                "JOIN agg.hourly h ON h.variable_id = f.variable_id AND h.hour = f.target_ts "
                "WHERE f.target_ts >= ? AND f.target_ts < ? ", [pd.Timestamp(days[-1]) - pd.Timedelta(days=13),
                                                                 pd.Timestamp(days[-1]) + pd.Timedelta(days=2)]).df()
        reasons = drift_reasons(status.rename(columns={"live_rmae_14d": "live_rmae"}), bemp.forecasting.drift_factor)
        for reason in reasons:
            context.log.warning(f"drift: retrain requested: {reason}")
        rows = sum(len(f) for f in inserted)
        return MaterializeResult(metadata={
            "rows_issued": rows, "model_table": markdown, "drift": "; ".join(reasons) or "none",
            "forecast_plot": forecast_plot(recent, "last 14 days: forecasts against actuals") if len(recent) else "_no actuals yet_"})

    return [features, models, tpot_models, backtests, forecasts]


TRAIN_JOB = "ml_train"
FORECAST_JOB = "ml_forecast"


def build_ml_triggers(ml_assets: list[AssetsDefinition]):
    """The ``ml_forecast`` job and its daily schedule (00:15 site time, today's partition), the
    ``ml_train`` job (features, models, TPOT searches, backtests), its weekly schedule (Monday 03:00,
    site time) and the drift sensor: when the newest ``ml/forecasts`` materialisation reports
    drift (live rMAE over the factor), request one retrain, saying why. The sensor reads the
    Dagster event log only, never the warehouse."""
    from dagster import (
        AssetSelection,
        DefaultScheduleStatus,
        DefaultSensorStatus,
        RunRequest,
        ScheduleDefinition,
        SensorEvaluationContext,
        SkipReason,
        build_schedule_from_partitioned_job,
        define_asset_job,
        sensor,
    )

    keys = [a.key for a in ml_assets if a.key.path[-1] != "forecasts"]
    job = define_asset_job(TRAIN_JOB, selection=AssetSelection.assets(*keys),
                           description="Rebuild features, retrain the models (TPOT searches included), backtest the "
                                       "non-TPOT ones and assign roles.")
    weekly = ScheduleDefinition(name="ml_weekly_retrain", job=job, cron_schedule="0 3 * * 1",
                                run_config={"ops": {"ml__backtests": {"config": {"include_tpot": True}}}},
                                default_status=DefaultScheduleStatus.RUNNING)
    forecasts_key = AssetKey([GROUP, "forecasts"])

    @sensor(name="ml_drift_sensor", job=job, minimum_interval_seconds=600, default_status=DefaultSensorStatus.RUNNING,
            description="Requests ml_train when ml/forecasts reports drift (live rMAE > drift_factor x backtest rMAE).")
    def drift_sensor(context: SensorEvaluationContext):
        records = context.instance.fetch_materializations(forecasts_key, limit=1, ascending=False).records
        event = records[0] if records else None
        if event is None or str(event.storage_id) == (context.cursor or ""):
            return SkipReason("no new ml/forecasts materialisation")
        context.update_cursor(str(event.storage_id))
        drift = event.asset_materialization.metadata.get("drift")
        if drift is None or drift.value == "none":
            return SkipReason("no drift in the newest forecasts")
        return RunRequest(run_key=f"drift-{event.storage_id}", tags={"bemp/retrain_reason": drift.value[:200]})

    daily_job = define_asset_job(FORECAST_JOB, selection=AssetSelection.assets(forecasts_key),
                                 description="Issue today's day-ahead forecasts (target day = the partition).")
    daily = build_schedule_from_partitioned_job(daily_job, hour_of_day=0, minute_of_hour=15,
                                                default_status=DefaultScheduleStatus.RUNNING)
    return job, weekly, drift_sensor, daily_job, daily


def _folder(path):
    path.mkdir(parents=True, exist_ok=True)
    return path
