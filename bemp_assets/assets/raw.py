"""raw layer: one asset per configured CSV source, merged into raw.measurements.

Each asset parses every inbox file of its source and merges the readings that fall inside the
run's partition window (docs/warehouse.md, "raw is merge-only"). Rejected rows go to
raw.rejects; a file whose header matches no known shape is rejected whole and fails the
``files_parsed`` check, while the other files of the run are still stored.
"""

from datetime import datetime, timezone

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from bemp_assets.domain.config import BempConfig, SourceConfig
from bemp_assets.domain.parsing import parse_file
from bemp_assets.domain.warehouse import ingest
from bemp_assets.checks import Verdict, emit_checks, evaluate_rules, same_for_partitions, specs
from resources import CsvInboxResource, WarehouseResource

from .common import WAREHOUSE_POOL, report_partitions, run_window

# commissioning rules judged on every partition a raw source writes
SOURCE_RULES = ["correctness", "frequency", "freshness"]


def build_raw_asset(source: SourceConfig, config: BempConfig, partitions: PartitionsDefinition) -> AssetsDefinition:
    tz = config.timezone_of(source)
    key = ["raw", source.name]

    @asset(
        key=key,
        group_name="raw",
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "csv"},
        description=(
            f"Readings of source '{source.name}' ({source.format} CSV files matching "
            f"'{source.pattern}' in the inbox), merged into raw.measurements; bad rows in raw.rejects."
        ),
        metadata={"source_format": source.format, "file_pattern": source.pattern, "timezone": tz},
        check_specs=[AssetCheckSpec("files_parsed", asset=key,
                                    description="Every inbox file of this source has a header of a known shape (REACH or the "
                                                "configured wide export); a file that does not is rejected whole."),
                     *specs(key, SOURCE_RULES)],
    )
    def raw_source(context: AssetExecutionContext, warehouse: WarehouseResource, inbox: CsvInboxResource):
        start, end = run_window(context)
        files = inbox.files(source, config)
        context.log.info(f"{source.name}: {len(files)} file(s) in the inbox, window {start} .. {end}")
        now = datetime.now(timezone.utc)
        with warehouse.session() as con:
            parsed = []
            for index, f in enumerate(files, start=1):
                result = parse_file(con, f.path, source, tz, prefix=f"stage_{index}")
                parsed.append(result)
                if result.error:
                    context.log.error(result.error)
                else:
                    context.log.info(f"[{index}/{len(files)}] {f.name}: {result.rows} readings, {len(result.rejects)} rejected rows")
            report = ingest(con, source, tz, parsed, (start, end), now)
            for p in parsed:
                if p.table:
                    con.execute(f"DROP TABLE IF EXISTS {p.table}")
            source_variables = [v for (v,) in con.execute(
                "SELECT variable_id FROM meta.variables WHERE source = ?", [source.name]).fetchall()]
            verdicts = evaluate_rules(context, con, config, SOURCE_RULES, start, end, source_variables)
            metadata, filled = report_partitions(
                context, con, "raw.measurements", "ts", written_at=now,
                where=f"variable_id IN (SELECT variable_id FROM meta.variables WHERE source = '{source.name}')")
        for warning in report.warnings:
            context.log.warning(warning)
        metadata.update({
            "files": MetadataValue.json(report.files),
            "run_rows_read": report.rows_read,
            "run_rows_in_window": report.rows_in_window,
            "run_inserted": report.inserted,
            "run_revised": report.revised,
            "run_unchanged": report.unchanged,
            "run_overlapping_rows": report.overlapping_rows,
            "run_rejected_rows": report.rejects_in_files,
            "run_rejected_rows_new": report.rejects_new,
            "variables": report.variables,
        })
        yield MaterializeResult(metadata=metadata)
        files_parsed = Verdict(
            passed=not report.failed_files, severity=AssetCheckSeverity.ERROR,
            description=(f"{len(report.failed_files)} of {len(report.files)} file(s) have a header of no known shape"
                         if report.failed_files else f"all {len(report.files)} file(s) have a known header shape"),
            metadata={"failed_files": MetadataValue.json(report.failed_files), "files": len(report.files)})
        yield from emit_checks(context, {"files_parsed": same_for_partitions(files_parsed, filled), **verdicts})

    return raw_source


def build_raw_assets(config: BempConfig, partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    return [build_raw_asset(source, config, partitions) for source in config.sources]
