"""The ml assets through a real Dagster instance on a real DuckDB file (steel plant, Jan-Mar 2018)."""
import shutil
from datetime import date

import duckdb
import pandas as pd
from dagster import AssetKey, DagsterEventType, EventRecordsFilter, instance_for_test, materialize

from bemp_assets.assets.ml import build_ml_assets
from bemp_assets.domain.config import load_config
from bemp_assets.partitions import daily_partitions
from resources import WarehouseResource

from .conftest import CONFIG_DIR, make_settings
from .test_models import MODELS, SEOUL, TARGET, config_with, noise_after, steel  # noqa: F401  (module fixture)


def latest_metadata(instance, *path):
    event = instance.get_latest_materialization_event(AssetKey(list(path)))
    return event.asset_materialization.metadata


def test_ml_assets_train_backtest_promote_and_forecast(steel, tmp_path):  # noqa: F811
    settings = make_settings(tmp_path / "home")
    settings.warehouse.parent.mkdir(parents=True)
    shutil.copy2(steel.warehouse, settings.warehouse)
    config = config_with(*MODELS)
    assets = build_ml_assets(daily_partitions(load_config(CONFIG_DIR).site), AssetKey(["agg", "hourly"]), config, settings)
    resources = {"warehouse": WarehouseResource(database=str(settings.warehouse))}
    by_name = {a.key.path[-1]: a for a in assets}
    with instance_for_test() as instance:
        trained = materialize([by_name[n] for n in ("features", "models", "backtests")], instance=instance,
                              resources=resources)
        assert trained.success
        checks = [e for e in trained.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
        assert [(c.event_specific_data.check_name, c.event_specific_data.passed) for c in checks] == \
            [("champion_beats_persistence", True)]
        metadata = latest_metadata(instance, "ml", "backtests")
        assert {f"mae/{m}" for m in ("persistence", "same_hour_last_week", "calendar", "lags_exogenous")} <= set(metadata)
        assert isinstance(metadata["mae/calendar"].value, float)
        assert "data:image/png;base64," in metadata["backtest_plot"].value
        assert "| model_id" in metadata["model_table"].value
        day = "2018-03-20"
        issued = materialize([by_name["forecasts"]], instance=instance, resources=resources, partition_key=day)
        assert issued.success
        assert latest_metadata(instance, "ml", "forecasts")["rows_issued"].value == 24 * 4
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        status = con.execute("SELECT model_id, target, role, backtest_mae, backtest_rmae, last_predicted_ts "
                             "FROM ml.model_status ORDER BY model_id").df()
        forecasts = con.execute("SELECT variable_id, model_id, count(*), min(horizon_h), max(horizon_h), "
                                "min(issued_at) FROM ml.forecasts GROUP BY ALL ORDER BY model_id").fetchall()
        artifacts = con.execute("SELECT artifact_path, train_end FROM ml.models WHERE model_id = 'calendar'").fetchall()
    roles = dict(zip(status.model_id, status.role))
    assert roles["persistence"] == roles["same_hour_last_week"] == "baseline"
    assert sorted(roles[m.name] for m in MODELS) == ["challenger", "champion"]
    assert status["backtest_mae"].notna().all() and (status["target"] == TARGET).all()
    issue = pd.Timestamp(date(2018, 3, 20), tz="Asia/Seoul")
    assert [f[1:] for f in forecasts] == [(m, 24, 0.0, 23.0, issue) for m in sorted(
        ["calendar", "lags_exogenous", "persistence", "same_hour_last_week"])]
    assert all(f[0] == TARGET for f in forecasts)
    # the production version (trained to 1 April) is saved; the day's forecast needed an earlier one
    assert len(artifacts) == 2 and all((settings.artifacts / "models" / "calendar").exists() for _ in artifacts)
    assert status.loc[status.model_id == "calendar", "last_predicted_ts"].iloc[0] == pd.Timestamp("2018-03-20 14:00", tz="UTC")


def test_noise_after_the_issue_leaves_the_forecast_assets_issue_unchanged(steel, tmp_path):  # noqa: F811
    """Two homes with the same warehouse, except that in the second every target value from
    the day's issue on is noise: materialising ml/forecasts for that day (each model trained
    there with the issue as cutoff) must store the same forecasts in both."""
    day = date(2018, 3, 20)
    issue = pd.Timestamp(day, tz=SEOUL).tz_convert("UTC").to_pydatetime()
    stored = {}
    for noisy in (False, True):
        settings = make_settings(tmp_path / f"home_{noisy}")
        settings.warehouse.parent.mkdir(parents=True)
        shutil.copy2(steel.warehouse, settings.warehouse)
        if noisy:
            with duckdb.connect(str(settings.warehouse)) as con:
                noise_after(con, issue)
        assets = build_ml_assets(daily_partitions(load_config(CONFIG_DIR).site), AssetKey(["agg", "hourly"]),
                                 config_with(*MODELS), settings)
        forecasts = [a for a in assets if a.key.path[-1] == "forecasts"]
        with instance_for_test() as instance:
            assert materialize(forecasts, instance=instance, partition_key=day.isoformat(),
                               resources={"warehouse": WarehouseResource(database=str(settings.warehouse))}).success
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            stored[noisy] = con.execute("SELECT model_id, target_ts, issued_at, value FROM ml.forecasts ORDER BY ALL").fetchall()
            stored[f"actual_{noisy}"] = con.execute("SELECT hour, sum FROM agg.hourly WHERE variable_id = ? AND hour >= ? "
                                                    "ORDER BY hour LIMIT 24", [TARGET, issue]).fetchall()
    assert stored["actual_True"] != stored["actual_False"]  # the day's actuals did change
    assert len(stored[False]) == 24 * 4 and all(row[3] is not None for row in stored[False])
    assert stored[True] == stored[False]


def test_forecasts_asset_keeps_the_first_issue(steel, tmp_path):  # noqa: F811
    settings = make_settings(tmp_path / "home")
    settings.warehouse.parent.mkdir(parents=True)
    shutil.copy2(steel.warehouse, settings.warehouse)
    assets = build_ml_assets(daily_partitions(load_config(CONFIG_DIR).site), AssetKey(["agg", "hourly"]),
                             config_with(MODELS[0]), settings)
    forecasts = [a for a in assets if a.key.path[-1] == "forecasts"]
    resources = {"warehouse": WarehouseResource(database=str(settings.warehouse))}
    with instance_for_test() as instance:
        assert materialize(forecasts, instance=instance, resources=resources, partition_key="2018-03-10").success
        with duckdb.connect(str(settings.warehouse)) as con:
            first = con.execute("SELECT model_id, target_ts, value, model_version FROM ml.forecasts ORDER BY ALL").fetchall()
            con.execute("UPDATE agg.hourly SET sum = sum * 3 WHERE variable_id = ?", [TARGET])
            con.execute("DELETE FROM ml.models")
        assert materialize(forecasts, instance=instance, resources=resources, partition_key="2018-03-10").success
        assert latest_metadata(instance, "ml", "forecasts")["rows_issued"].value == 24 * 3
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        again = con.execute("SELECT model_id, target_ts, value, model_version FROM ml.forecasts ORDER BY ALL").fetchall()
    assert again == first and len(first) == 72


def test_drift_sensor_requests_one_retrain_per_drifting_materialisation(tmp_path):
    from dagster import AssetMaterialization, RunRequest, SkipReason, build_sensor_context

    from bemp_assets.assets.ml import build_ml_triggers

    settings = make_settings(tmp_path / "home")
    assets = build_ml_assets(daily_partitions(load_config(CONFIG_DIR).site), AssetKey(["agg", "hourly"]),
                             config_with(MODELS[0]), settings)
    job, weekly, sensor, daily_job, daily = build_ml_triggers(assets)
    assert weekly.cron_schedule == "0 3 * * 1" and job.name == "ml_train"
    assert daily.name == "ml_forecast_schedule" and daily_job.name == "ml_forecast"
    reason = "calendar (t): live rMAE 0.1000 > 1.5 x backtest rMAE 0.0600"
    with instance_for_test() as instance:
        context = build_sensor_context(instance=instance)
        assert isinstance(sensor(context), SkipReason)  # nothing materialised yet
        instance.report_runless_asset_event(AssetMaterialization(["ml", "forecasts"], metadata={"drift": "none"}))
        assert isinstance(sensor(build_sensor_context(instance=instance, cursor=context.cursor)), SkipReason)
        instance.report_runless_asset_event(AssetMaterialization(["ml", "forecasts"], metadata={"drift": reason}))
        context = build_sensor_context(instance=instance, cursor=context.cursor)
        request = sensor(context)
        assert isinstance(request, RunRequest) and request.tags["bemp/retrain_reason"] == reason
        # the same materialisation does not request twice
        assert isinstance(sensor(build_sensor_context(instance=instance, cursor=context.cursor)), SkipReason)


def test_ml_assets_skip_a_target_without_data_instead_of_failing(tmp_path):
    settings = make_settings(tmp_path / "home")
    assets = build_ml_assets(daily_partitions(load_config(CONFIG_DIR).site), AssetKey(["agg", "hourly"]),
                             config_with(*MODELS), settings)
    by_name = {a.key.path[-1]: a for a in assets}
    resources = {"warehouse": WarehouseResource(database=str(settings.warehouse))}
    with instance_for_test() as instance:
        assert materialize([by_name[n] for n in ("features", "models", "backtests")], instance=instance,
                           resources=resources).success
        assert materialize([by_name["forecasts"]], instance=instance, resources=resources,
                           partition_key="2018-03-10").success
        assert latest_metadata(instance, "ml", "forecasts")["rows_issued"].value == 0
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ml.models").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM ml.forecasts").fetchall() == [(0,)]
