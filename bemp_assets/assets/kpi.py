"""kpi layer (thin): daily energy, intensities, the e-bus months and the generic KPI store.

Unpartitioned snapshots over the whole history, rebuilt whole in one transaction each (the
domain code is bemp_assets/domain/kpi*.py, docs/kpis.md); they follow their upstreams with
``follows_upstream`` and run in the ``duckdb`` pool like every warehouse step.
"""

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from bemp_assets.automation import follows_upstream
from bemp_assets.domain import kpi_jobs
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource

from .common import WAREHOUSE_POOL, column_schema

ENERGY_KEY, INTENSITY_KEY = AssetKey(["kpi", "energy_daily"]), AssetKey(["kpi", "intensity"])
EBUS_KEY, MEASURES_KEY = AssetKey(["kpi", "ebus_monthly"]), AssetKey(["kpi", "measures"])


def table_metadata(con, table: str, rows: int, **extra) -> dict:
    return {"dagster/row_count": rows, "dagster/table_name": f"warehouse.{table}",
            "dagster/column_schema": column_schema(con.execute(f"DESCRIBE {table}").fetchall()), **extra}


def rebuild(warehouse: WarehouseResource, table: str, refresh) -> MaterializeResult:
    """Run ``refresh(con)`` (returns the rows written to ``table``) and describe the table."""
    with warehouse.session() as con:
        return MaterializeResult(metadata=table_metadata(con, table, refresh(con)))


def build_kpi_assets(hourly: AssetKey, ipanel: list[AssetKey], config: BempConfig,
                     settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name="kpi", pool=WAREHOUSE_POOL, kinds={"duckdb"}, automation_condition=follows_upstream())

    @asset(key=ENERGY_KEY, deps=[hourly], **common,
           description="kpi.energy_daily (and kpi.energy_daily_inputs per variable): per site, local day, category and "
                       "carrier: energy, primary energy, CO2, cost (tariff currency and EUR), coverage, and whether a "
                       "day failing a blocking commissioning rule was used (flagged) or left out.")
    def energy_daily(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            counts = kpi_jobs.refresh_energy_daily(con, config)
            return MaterializeResult(metadata=table_metadata(con, "kpi.energy_daily", counts["rows"],
                                                             inputs_rows=counts["inputs"]))

    @asset(key=INTENSITY_KEY, deps=[ENERGY_KEY], **common,
           description="kpi.intensity: energy and cost per ton (production series), per EUR and per heated m2 "
                       "(building registry), daily and monthly, with the coverage of numerator and denominator.")
    def intensity(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        return rebuild(warehouse, "kpi.intensity", lambda con: kpi_jobs.refresh_intensity(con, config, settings.config_dir))

    @asset(key=EBUS_KEY, deps=ipanel, **common,
           description="kpi.ebus_monthly: per vehicle and for the fleet, by month and year: km, traction/auxiliary/"
                       "total kWh, kWh/km, regeneration share, charges, charger energy, CO2 avoided against a diesel bus.")
    def ebus_monthly(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        return rebuild(warehouse, "kpi.ebus_monthly", lambda con: kpi_jobs.refresh_ebus(con, config))

    @asset(key=MEASURES_KEY, deps=[ENERGY_KEY, INTENSITY_KEY, EBUS_KEY], **common,
           description="kpi.definitions, kpi.measures (every KPI value in one long table: kpi_id, resource_id, period, "
                       "ts, value, unit, coverage, blocked) and kpi.measure_inputs (lineage), plus meta.source_files.")
    def measures(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            counts = kpi_jobs.refresh_measures(con, config, settings.inbox)
            return MaterializeResult(metadata=table_metadata(
                con, "kpi.measures", counts["rows"], inputs_rows=counts["inputs"],
                definitions=counts["definitions"], source_files=counts["source_files"]))

    return [energy_daily, intensity, ebus_monthly, measures]


def build_report_assets(config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name="report", pool=WAREHOUSE_POOL, kinds={"duckdb"}, automation_condition=follows_upstream())

    @asset(key=["report", "day_by_month"], deps=[ENERGY_KEY], **common,
           description="report.day_by_month: for the variables and years of kpis.yaml, daily totals as days 1-31 by "
                       "January-December with monthly totals underneath; exported as CSV, XLSX and PNG to "
                       "$BEMP_HOME/reports on each materialisation.")
    def day_by_month(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            paths = kpi_jobs.refresh_day_by_month(con, config, settings.home / "reports")
            rows = con.execute("SELECT count(*) FROM report.day_by_month").fetchall()[0][0]
            metadata = table_metadata(con, "report.day_by_month", rows)
        for path in paths:
            context.log.info(f"exported {path}")
        return MaterializeResult(metadata={**metadata, "files": MetadataValue.json([str(p) for p in paths])})

    @asset(key=["report", "category_summary"], deps=[ENERGY_KEY], **common,
           description="report.category_summary: sums and daily means of energy, CO2 and cost per month and year, "
                       "grouped by site, site and category, site and carrier.")
    def category_summary(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        return rebuild(warehouse, "report.category_summary", lambda con: kpi_jobs.refresh_category_summary(con, config))

    return [day_by_month, category_summary]
