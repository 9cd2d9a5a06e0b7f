"""raw layer: one asset per configured CSV source, merged into raw.measurements.

Each asset parses every inbox file of its source and merges the readings that fall inside the
run's partition window (docs/warehouse.md, "raw is merge-only"). Rejected rows go to
raw.rejects; a file whose header matches no known shape is rejected whole and fails the
``files_parsed`` check, while the other files of the run are still stored.
"""

from datetime import datetime, timezone

from dagster import (
    AssetCheckResult,
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
from bemp_assets.checks import evaluate_rules, specs
from bemp_assets.inbox_ledger import file_span, record_ingested, sha256_of
from resources import CsvInboxResource, WarehouseResource

from .common import WAREHOUSE_POOL, run_window, table_metadata

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
                                    description="every inbox file of this source has a known header shape"),
                     *specs(key, SOURCE_RULES)],
    )
    def raw_source(context: AssetExecutionContext, warehouse: WarehouseResource, inbox: CsvInboxResource):
        start, end = run_window(context)
        files = inbox.files(source, config)
        hashes = {f.name: sha256_of(f.path) for f in files}  # before parsing: a later rewrite shows as a new hash
        context.log.info(f"{source.name}: {len(files)} file(s) in the inbox, window {start} .. {end}")
        with warehouse.session() as con:
            parsed = []
            for index, f in enumerate(files, start=1):
                result = parse_file(con, f.path, source, tz, prefix=f"stage_{index}")
                parsed.append(result)
                if result.error:
                    context.log.error(result.error)
                else:
                    context.log.info(f"[{index}/{len(files)}] {f.name}: {result.rows} readings, {len(result.rejects)} rejected rows")
            report = ingest(con, source, tz, parsed, (start, end), datetime.now(timezone.utc))
            for p in parsed:
                if p.table:
                    con.execute(f"DROP TABLE IF EXISTS {p.table}")
            source_variables = [v for (v,) in con.execute(
                "SELECT variable_id FROM meta.variables WHERE source = ?", [source.name]).fetchall()]
            rule_results = evaluate_rules(context, con, config, SOURCE_RULES, start, end, source_variables)
            metadata = table_metadata(
                con, "raw.measurements", "ts", start, end,
                where=f"variable_id IN (SELECT variable_id FROM meta.variables WHERE source = '{source.name}')")
        for warning in report.warnings:
            context.log.warning(warning)
        # committed: record the files this window covered in full, for the inbox sensor
        keys = context.partition_key_range
        covered = {f.name: hashes[f.name] for f in files if f.name not in report.failed_files
                   and (span := file_span(f.path, source, config, partitions)) and keys.start <= span[0] and span[1] <= keys.end}
        record_ingested(context.instance, covered, context.run.run_id)
        context.log.info(f"{source.name}: ingested in full (the inbox sensor will not request them again): {sorted(covered)}")
        metadata.update({
            "files": MetadataValue.json(report.files),
            "rows_read": report.rows_read,
            "rows_in_window": report.rows_in_window,
            "inserted": report.inserted,
            "revised": report.revised,
            "unchanged": report.unchanged,
            "overlapping_rows": report.overlapping_rows,
            "rejected_rows": report.rejects_in_files,
            "rejected_rows_new": report.rejects_new,
            "variables": report.variables,
        })
        return MaterializeResult(
            metadata=metadata,
            check_results=[AssetCheckResult(
                check_name="files_parsed",
                passed=not report.failed_files,
                severity=AssetCheckSeverity.ERROR,
                metadata={"failed_files": MetadataValue.json(report.failed_files), "files": len(report.files)},
            ), *rule_results],
        )

    return raw_source


def build_raw_assets(config: BempConfig, partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    return [build_raw_asset(source, config, partitions) for source in config.sources]
