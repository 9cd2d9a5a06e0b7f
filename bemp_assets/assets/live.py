"""raw layer, HTTP sources: IoT gateway measurements and the iPanel e-bus fleet.

Each asset fetches its partition window from the source (all pages, with the client's retries)
inside the run, validates the records, and merges them: re-polling an overlapping window adds
nothing. The newest timestamp committed is recorded as ``acknowledged_until`` in the
materialisation: the polling sensors' cursor, which therefore advances only once data is in
the warehouse.
"""
from datetime import datetime, timezone

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
)

from bemp_assets.checks import Verdict, emit_checks, evaluate_rules, same_for_partitions, specs
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.live import (CHARGER_STATUS, CHARGES, TRIPS, SourceDescription, Table, gateway_batch,
                                     gateway_readings, ipanel_batch, merge_records)
from bemp_assets.domain.raw_ingest import ingest_readings
from bemp_assets.domain.warehouse import store_rejects, transaction
from resources import GatewayClient, IPanelClient, WarehouseResource

from .common import chunks, report_partitions, run_window, warehouse_asset
from .raw import SOURCE_RULES

GATEWAY_KEY = ["raw", "gateway_measurements"]
GATEWAY_ENDPOINT = "gateway:/api/v1/measurements"


def _fetch(context: AssetExecutionContext, name: str, fetch) -> list[dict]:
    """Fetch the run's window chunk by chunk, logging progress."""
    records: list[dict] = []
    for index, count, start, end in chunks(context):
        part = fetch(start, end)
        records.extend(part)
        context.log.info(f"{name} [{index}/{count}] {start.date()} .. {end.date()}: {len(part)} records")
    return records


def _acknowledged(times) -> str | None:
    return None if times.empty else times.max().isoformat()


def build_gateway_asset(config: BempConfig, partitions: PartitionsDefinition) -> AssetsDefinition:
    settings = config.live_sources.gateway
    registry = {g.sn: g for g in config.gateways}

    source = SourceDescription("gateway", settings.site, settings.expected_interval)

    @warehouse_asset(key=GATEWAY_KEY, group_name="raw", partitions_def=partitions, kinds={"duckdb", "api"},
           check_specs=[AssetCheckSpec("registered_gateways", asset=GATEWAY_KEY,
                                       description="Every gateway that reports data is in the installation registry "
                                                   "(data/config/live.yaml); data of others is stored and flagged."),
                        *specs(GATEWAY_KEY, SOURCE_RULES)],
           description="IoT gateway readings (SN, channel, device, medium, value) polled over HTTP into "
                       "raw.gateway_measurements and, as variables <sn>.ch<channel>_<medium>, raw.measurements.")
    def gateway_measurements(context: AssetExecutionContext, warehouse: WarehouseResource, gateway: GatewayClient):
        start, end = run_window(context)
        batch = gateway_batch(_fetch(context, "gateway", gateway.measurements), registry)
        now = datetime.now(timezone.utc)
        with warehouse.session() as con:
            merged = {}
            gateway_rows = batch.rows.drop(columns="variable_id").assign(fetched_at=now)
            report = ingest_readings(con, source, settings.timezone, gateway_readings(batch, GATEWAY_ENDPOINT),
                                     (start, end), now, also=lambda c: merged.update(
                                         merge_records(c, "raw.gateway_measurements", ["sn", "channel", "ts"], gateway_rows)))
            variables = sorted(batch.rows["variable_id"].unique())
            verdicts = evaluate_rules(context, con, config, SOURCE_RULES, start, end, variables)
            metadata, filled = report_partitions(context, con, "raw.gateway_measurements", "ts",
                                         order_by=["sn", "channel"], written_at=now, written_column="fetched_at")
        if batch.unknown_sns:
            context.log.warning(f"unregistered gateways reported data (stored, flagged): {batch.unknown_sns}")
        yield MaterializeResult(
            metadata={**metadata, "run_records_received": batch.received, "run_repeated_in_response": batch.repeated,
                      "run_rejected": len(batch.rejects), "run_inserted": report.inserted, "run_revised": report.revised,
                      "run_unchanged": report.unchanged, "run_gateway_rows_inserted": merged["inserted"],
                      "acknowledged_until": MetadataValue.text(_acknowledged(batch.rows["ts"]) or "")})
        registered = Verdict(
            passed=not batch.unknown_sns, severity=AssetCheckSeverity.WARN,
            description=(f"{len(batch.unknown_sns)} gateway(s) not in the installation registry reported data: "
                         f"{', '.join(batch.unknown_sns)}" if batch.unknown_sns
                         else f"every reporting gateway is among the {len(registry)} registered"),
            metadata={"unregistered": MetadataValue.json(batch.unknown_sns), "registered": len(registry)})
        yield from emit_checks(context, {"registered_gateways": same_for_partitions(registered, filled), **verdicts})

    return gateway_measurements


def build_ipanel_asset(name: str, table: Table, fetch_name: str, partitions: PartitionsDefinition,
                       description: str) -> AssetsDefinition:
    key = ["raw", name]

    @warehouse_asset(key=key, group_name="raw", partitions_def=partitions, kinds={"duckdb", "api"}, description=description)
    def ipanel_records(context: AssetExecutionContext, warehouse: WarehouseResource, ipanel: IPanelClient):
        batch = ipanel_batch(_fetch(context, name, getattr(ipanel, fetch_name)), table)
        now = datetime.now(timezone.utc)
        with warehouse.session() as con, transaction(con):
            merged = merge_records(con, table.name, list(table.key), batch.rows.assign(fetched_at=now))
            store_rejects(con, "ipanel", batch.rejects.assign(source_file=f"ipanel:{name}"), now)
        with warehouse.session() as con:
            metadata, _ = report_partitions(context, con, table.name, f'"{table.time_field}"',
                                         order_by=list(table.key), written_at=now, written_column="fetched_at")
        return MaterializeResult(metadata={
            **metadata, "run_records_received": batch.received, "run_repeated_in_response": batch.repeated,
            "run_rejected": len(batch.rejects), **{f"run_{k}": v for k, v in merged.items()},
            "acknowledged_until": MetadataValue.text(_acknowledged(batch.rows[table.time_field]) or ""),
        })

    return ipanel_records


def build_live_assets(config: BempConfig, partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    return [
        build_gateway_asset(config, partitions),
        build_ipanel_asset("ipanel_trips", TRIPS, "trips", partitions,
                           "iPanel vehicle trips (km, kWh, regeneration, temperatures, CO2) by trip start."),
        build_ipanel_asset("ipanel_charger_status", CHARGER_STATUS, "charger_status_history", partitions,
                           "iPanel charger status snapshots (vehicle, SoC, power, position): a history by lastUpdate."),
        build_ipanel_asset("ipanel_charges", CHARGES, "charges", partitions,
                           "iPanel charges per charger and depot day: number, duration, supplied kWh."),
    ]
