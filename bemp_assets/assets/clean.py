"""clean layer: raw readings after each variable's filter chain (data/config/filters.yaml).

Always recomputed from raw. The asset's code version is a hash of every chain, so changing a
chain shows clean (and everything downstream) as changed in the UI, and a backfill re-applies
it to history; only variables whose rows actually change are rewritten.
"""
from datetime import datetime, timezone

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
)

from bemp_assets.automation import follows_upstream
from bemp_assets.checks import emit_checks, evaluate_rules, specs
from bemp_assets.domain.chains import chains_version
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.cleaning import CleanReport, before_after, rebuild_clean
from resources import WarehouseResource

from .common import chunks, report_partitions, run_window, warehouse_asset


def build_clean_asset(partitions: PartitionsDefinition, raw_keys: list[AssetKey], config: BempConfig) -> AssetsDefinition:
    chains = config.filter_chains
    # A day's de-accumulated energy needs the last counter reading of the day before and the
    # first reading of the day after, hence the window of raw partitions D-1 .. D+1.
    neighbours = TimeWindowPartitionMapping(start_offset=-1, end_offset=1, allow_nonexistent_upstream_partitions=True)

    @warehouse_asset(
        key=["clean", "measurements"],
        group_name="clean",
        partitions_def=partitions,
        kinds={"duckdb", "pandas"},
        code_version=chains_version(chains),
        automation_condition=follows_upstream(),
        deps=[AssetDep(key, partition_mapping=neighbours) for key in raw_keys],
        metadata={"filter_chains": MetadataValue.json({c.name: c.version for c in chains})},
        check_specs=specs(["clean", "measurements"], ["duplicates"]),
        description="clean.measurements: every variable after its filter chain (de-accumulate, clip, set point, "
                    "time step, ...); interval values labelled by interval start; one partition = one site day. "
                    "A view: filtered rows are stored in clean.stored, a variable without a chain shows its raw "
                    "readings over the spans clean has processed (clean.passthrough; docs/warehouse.md).",
    )
    def clean_measurements(context: AssetExecutionContext, warehouse: WarehouseResource):
        start, end = run_window(context)
        total = CleanReport()
        with warehouse.session() as con:
            for index, count, chunk_start, chunk_end in chunks(context, con):
                report = rebuild_clean(con, chunk_start, chunk_end, chains, datetime.now(timezone.utc))
                total.merge(report)
                context.log.info(f"clean [{index}/{count}] {chunk_start.date()} .. {chunk_end.date()}: {report.rows} rows, "
                                 f"{report.inserted} written, {report.deleted} removed, {report.passed_through} passed through, "
                                 f"{len(report.changed_variables)} variable(s) changed")
            metadata, _ = report_partitions(context, con, "clean.measurements", "ts")
            example = before_after(con, start, end, chains)
            verdicts = evaluate_rules(context, con, config, ["duplicates"], start, end)
        metadata.update({
            "run_rows_written": total.inserted,
            "run_rows_removed": total.deleted,
            "run_rows_passed_through": total.passed_through,
            "variables_changed": MetadataValue.json(sorted(total.changed_variables)),
            "chains": MetadataValue.json(total.chains),
            "before_after": MetadataValue.md(example),
        })
        yield MaterializeResult(metadata=metadata)
        yield from emit_checks(context, verdicts)

    return clean_measurements
