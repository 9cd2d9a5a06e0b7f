"""`bemp models list|train` and `bemp forecast` (docs/models.md); mistakes are CliErrors."""
from __future__ import annotations

import difflib
import sys
from pathlib import Path

from bemp_assets.cli import CliError, _parse_day, _read_only, settings_env
from bemp_assets.domain.settings import Settings


def dispatch(args, settings: Settings) -> int:
    if args.command == "forecast":
        return forecast(settings, args.model, args.day, args.out)
    if args.action == "list":
        return list_models(settings)
    return train(settings, args.name, args.search_minutes)


def _config(settings: Settings):
    from bemp_assets.domain.config import load_config

    return load_config(settings.config_dir)


def _known_model(config, name: str, flag: str):
    """The configured spec called ``name``, or a CliError naming the closest one."""
    names = [m.name for m in config.forecasting.models]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; configured: {names}"
        raise CliError(f"{flag} {name!r}: no such model in {config.files.get('forecasting', 'models.yaml')}{hint}")
    return config.forecasting.model(name)


def list_models(settings: Settings) -> int:
    """Configured models; with the warehouse, their role and backtest figures (ml.model_status)."""
    import pandas as pd

    config = _config(settings)
    table = pd.DataFrame([{"model_id": m.name, "target": m.target, "learner": m.learner, "category": m.category,
                           "description": m.description} for m in config.forecasting.models])
    if table.empty:
        print("no models configured (data/config/models.yaml, section forecasting)")
        return 0
    if settings.warehouse.exists():
        with _read_only(settings) as con:
            known = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ml' "
                                "AND table_name = 'model_status'").fetchall()[0][0]
            if known:
                status = con.execute("SELECT model_id, target, role, backtest_mae, backtest_rmae, skill_persistence, "
                                     "last_trained, last_predicted_ts FROM ml.model_status").df()
                table = status.merge(table, on=["model_id", "target"], how="outer")
    print(table.to_markdown(index=False, floatfmt=".4g"))
    return 0


def train(settings: Settings, name: str | None, search_minutes: float | None, instance=None) -> int:
    """Train through the Dagster instance, as the UI would: features, the non-TPOT models and
    their backtests; a TPOT model (named, or all with --search-minutes) on ml/tpot_models."""
    from dagster import AssetKey, DagsterInstance

    from bemp_assets.assets.ml import TRAIN_JOB
    from bemp_assets.launch import code_location, create_run, execute

    config = _config(settings)
    if search_minutes is not None and search_minutes <= 0:
        raise CliError(f"--search-minutes {search_minutes}: expected a positive number of minutes")
    spec = _known_model(config, name, "NAME") if name else None
    tpot = spec.learner == "tpot" if spec else search_minutes is not None
    steps = ["features", *(["tpot_models"] if tpot else []), *([] if spec and tpot else ["models", "backtests"])]
    names = [name] if name else []
    run_config = {"ops": {"ml__models": {"config": {"models": [] if tpot and spec else names}},
                          "ml__tpot_models": {"config": {"models": names, "search_minutes": search_minutes}}}}
    run_config["ops"] = {k: v for k, v in run_config["ops"].items() if k.split("__")[1] in steps}
    instance = instance or DagsterInstance.get()
    with settings_env(settings), code_location(instance) as location:
        created = create_run(instance, location, TRAIN_JOB, {}, run_config, [AssetKey(["ml", s]) for s in steps])
        ended = execute(instance, created)
    print(f"run {ended.run_id} ({TRAIN_JOB}: {', '.join(steps)}): {ended.status.value}")
    if ended.is_success:
        list_models(settings)
    return 0 if ended.is_success else 1


def forecast(settings: Settings, model: str, day_text: str, out: str | None) -> int:
    """Issue one model's forecast for a day with a version trained before its issue (training
    one if none exists), print it and optionally write it as CSV. Nothing is stored in
    ml.forecasts: that is the ml/forecasts asset's job."""
    from bemp_assets.domain.connection import connect
    from bemp_assets.domain.forecasting import ForecastError
    from bemp_assets.domain.forecasting_jobs import forecast_day
    from bemp_assets.domain.forecasting_store import ensure_ml_tables
    from bemp_assets.domain.warehouse import prepare

    config = _config(settings)
    spec = _known_model(config, model, "--model")
    day = _parse_day("--day", day_text)
    if out and not Path(out).parent.is_dir():
        raise CliError(f"--out {out}: folder {Path(out).parent} does not exist")
    if not settings.warehouse.exists():
        raise CliError(f"warehouse {settings.warehouse} does not exist yet: run `make run` or `bemp run` first")
    con = prepare(connect(settings.warehouse))
    try:
        ensure_ml_tables(con)
        rows = forecast_day(con, config, settings.artifacts, day, names=[spec.name], store=False,
                            log=lambda line: print(line, file=sys.stderr))
    except ForecastError as exc:
        raise CliError(str(exc)) from None
    finally:
        con.close()
    rows = rows[rows["model_id"] == spec.name]
    if rows.empty:
        raise CliError(f"--model {model}: no version trained before the issue of {day}; run `bemp models train {model}`")
    table = rows[["target_ts", "value", "variable_id", "model_id", "model_version", "issued_at", "horizon_h"]]
    if out:
        table.to_csv(out, index=False)
        print(f"wrote {len(table)} forecast rows of {model} for {day} to {out}")
    else:
        print(table.to_string(index=False))
    return 0
