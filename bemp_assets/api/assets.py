"""``ops/api_audit``: the API's audit log copied into the warehouse (thin; see audit.py)."""
from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, asset

from bemp_assets.automation import follows_upstream
from bemp_assets.assets.common import WAREHOUSE_POOL
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource

from .audit import load_audit


def build_api_audit_asset(api_raw_keys: list[AssetKey], settings: Settings) -> AssetsDefinition:
    """Refreshed after each ingestion of pushed batches and with the other ops snapshots."""

    @asset(key=["ops", "api_audit"], group_name="ops", pool=WAREHOUSE_POOL, kinds={"duckdb"}, deps=api_raw_keys,
           automation_condition=follows_upstream(),
           description="ops.api_audit: every API request (token id, never the token; method, path, variable, "
                       "batch, rows accepted and rejected, status, outcome), copied from the API's own "
                       "state file $BEMP_HOME/api/api.sqlite.")
    def api_audit(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
        with warehouse.session() as con:
            added = load_audit(con, settings.home)
            (total,) = con.execute("SELECT count(*) FROM ops.api_audit").fetchall()[0]
        context.log.info(f"ops.api_audit: {added} new audit row(s), {total} in all")
        return MaterializeResult(metadata={"dagster/row_count": int(total), "added": added})

    return api_audit
