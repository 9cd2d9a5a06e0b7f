"""planner layer (thin): measured demand, clusters, HDD models and the 1-7 day forecast.
The logic is in bemp_assets/domain/planner*.py (docs/buildings.md).

The registry (buildings.csv) and planner.yaml are part of every planner asset's code version:
adding or removing a building or changing a feature makes clusters, models and forecast stale in
Dagster once the code location reloads, and re-processing is a materialisation.
"""
import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import requests
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from bemp_assets.domain import planner, planner_cluster, planner_model
from bemp_assets.domain.buildings import load_registry, registry_path, registry_version
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource

from .common import WAREHOUSE_POOL

MEASURED_KEY, CLUSTERS_KEY = AssetKey(["planner", "measured_demand"]), AssetKey(["planner", "clusters"])
MODELS_KEY, FORECAST_KEY = AssetKey(["planner", "models"]), AssetKey(["planner", "forecast"])
CODE = "1"


def planner_version(config: BempConfig, settings: Settings) -> str:
    """Code version of the planner assets: code, registry content and planner.yaml together."""
    settings_hash = hashlib.sha256(config.planner.model_dump_json().encode()).hexdigest()[:8]
    return f"{CODE}-registry-{registry_version(registry_path(settings.config_dir))}-config-{settings_hash}"


def _sample_path(settings: Settings, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else settings.sample_dir / path


def build_planner_assets(config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    cfg = config.planner
    common = dict(group_name="planner", pool=WAREHOUSE_POOL, kinds={"duckdb"})
    version = planner_version(config, settings)

    def versioned(key: AssetKey, upstream: AssetKey, description: str):
        """The decorator of the assets that depend on the registry and planner.yaml."""
        return asset(key=key, deps=[upstream], **common, code_version=version, description=description)

    def registry_and_days(con):
        """The registry (read at run time: the file the code version was computed from) and the valid training days."""
        return (load_registry(registry_path(settings.config_dir)),
                planner.training_days(con, cfg.base_temperature, cfg.train_start, cfg.train_end))

    @asset(key=MEASURED_KEY, **common, code_version=CODE,
           description="planner.daily_demand and planner.daily_temperature from the measured CSVs of planner.yaml "
                       "(sample: 15 Cambridge estates buildings, MIT); whole zero days on cold days stored as gaps.")
    def measured_demand(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        energy, temps = _sample_path(settings, cfg.measured.daily_energy_csv), _sample_path(settings, cfg.measured.daily_temperature_csv)
        with warehouse.session() as con:
            counts = planner.load_measured(con, energy, temps, cfg.base_temperature, datetime.now(timezone.utc))
        context.log.info(f"measured demand: {counts}")
        return MaterializeResult(metadata={"dagster/row_count": counts["energy_stored"], **counts,
                                           "files": [str(energy), str(temps)]})

    @versioned(CLUSTERS_KEY, MEASURED_KEY,
               "planner.clusters and planner.k_scores: k-means (k_min..k_max, best silhouette) on the "
               "registry's characteristics or, when they are incomplete, on measured-data features; "
               "PCA 2D plot; one representative per cluster.")
    def clusters(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            registry, days = registry_and_days(con)
            result = planner_cluster.build_clustering(registry, days, cfg.features, cfg.k_min, cfg.k_max, cfg.min_days, cfg.seed)
            planner_cluster.store(con, result, registry_version(registry_path(settings.config_dir)), datetime.now(timezone.utc))
        picture = planner_cluster.render_pca(result, settings.artifacts / "planner_clusters.png")
        encoded = base64.b64encode(picture.read_bytes()).decode()
        table = result.table
        context.log.info(f"{result.mode} features {result.features}; silhouette {result.scores}; k = {result.k}")
        return MaterializeResult(metadata={
            "dagster/row_count": len(table), "feature_mode": result.mode, "features_used": result.features,
            "silhouette_by_k": MetadataValue.json({str(k): round(v, 4) for k, v in result.scores.items()}),
            "k": result.k, "representatives": sorted(table.loc[table["is_representative"], "building_id"]),
            "not_clustered": MetadataValue.json(table.loc[table["cluster"].isna()].set_index("building_id")["reason"].to_dict()),
            "pca_png": MetadataValue.md(f"![clusters](data:image/png;base64,{encoded})"),
            "registry_version": registry_version(registry_path(settings.config_dir)),
        })

    @versioned(MODELS_KEY, CLUSTERS_KEY,
               "planner.models: daily heating energy = intercept + slope x HDD (base from planner.yaml, fixed "
               "or searched) per building, own fit or the representative's scaled by heated area; R², "
               "CV(RMSE), days used.")
    def models(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        bases = planner_model.candidate_bases(cfg.base_temperature, cfg.base_temperature_search)
        with warehouse.session() as con:
            table = con.execute("SELECT * FROM planner.clusters").df()
            registry, days = registry_and_days(con)
            lines = planner_model.fit_with_base(days, bases)
            frame = planner_model.assign_models(table, lines, registry, cfg.own_model_min_days)
            planner_model.store_models(con, frame, datetime.now(timezone.utc))
        shown = frame.drop(columns=["reason"]).round({"intercept": 1, "slope": 2, "r2": 3, "cv_rmse": 3, "scale": 3})
        return MaterializeResult(metadata={
            "dagster/row_count": len(frame), "modelled": int(frame["method"].notna().sum()),
            "median_cv_rmse": float(frame["cv_rmse"].median()) if frame["cv_rmse"].notna().any() else None,
            "models": MetadataValue.md(shown.to_markdown(index=False)),
        })

    @versioned(FORECAST_KEY, MODELS_KEY,
               "planner.forecast: daily heating demand 1..horizon_days ahead per building and in total "
               "(TOTAL) from the outdoor-temperature forecast (sample: measured temperature stands in).")
    def forecast(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        temperatures = _forecast_temperatures(cfg, settings)
        with warehouse.session() as con:
            frame = con.execute("SELECT * FROM planner.models").df()
            after = cfg.train_end or con.execute("SELECT max(day) FROM planner.daily_demand WHERE valid").fetchall()[0][0]
            plan = planner_model.forecast(frame, temperatures, after, cfg.horizon_days)
            stored = planner_model.store_forecast(con, plan, datetime.now(timezone.utc))
        total = stored[stored["building_id"] == planner.TOTAL]
        context.log.info(f"forecast after {after}: {len(total)} days, total {total['demand_kwh'].sum():.0f} kWh")
        return MaterializeResult(metadata={
            "dagster/row_count": len(stored), "issued_after": str(after), "days": len(total),
            # where the forecast days are measured too (the sample): the total's mean absolute % error
            "total_mape_vs_measured": _mape(total["demand_kwh"], total["measured_kwh"]),
            "total": MetadataValue.md(total[["day", "horizon", "temp_mean_c", "hdd", "demand_kwh", "measured_kwh"]]
                                      .round(1).to_markdown(index=False)),
            "forecast_source": cfg.forecast.url or str(_sample_path(settings, cfg.forecast.csv)),
        })

    return [measured_demand, clusters, models, forecast]


def _forecast_temperatures(cfg, settings: Settings):
    if cfg.forecast.url:
        response = requests.get(cfg.forecast.url, timeout=30)
        response.raise_for_status()
        return planner_model.read_forecast(cfg.forecast.url, response.text)
    return planner_model.read_forecast(str(_sample_path(settings, cfg.forecast.csv)))


def _mape(predicted, measured) -> float | None:
    known = measured.notna() & (measured > 0)
    return round(float(((predicted[known] - measured[known]).abs() / measured[known]).mean()), 4) if known.any() else None
