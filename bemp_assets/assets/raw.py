"""raw layer: one asset per configured CSV source, merged into raw.measurements.

Each asset parses every inbox file of its source and merges the readings that fall inside the
run's partition window (docs/warehouse.md, "raw is merge-only"). Rejected rows go to
raw.rejects. A file that cannot be decoded, is not text, or whose header matches no known
shape is rejected whole (one reject row); the other files of the run are still stored and the
run succeeds: the ``files_parsed`` check reports the file as a WARN and blocks nothing.
The metadata accounts for every record read (docs/warehouse.md, "Accounting").
"""

from datetime import datetime, timezone
from pathlib import Path

from dagster import (
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
)

from bemp_assets.api.registry import with_registered_parameters
from bemp_assets.domain.config import BempConfig, SourceConfig
from bemp_assets.domain.inbox import days_cache
from bemp_assets.domain.parsing import ParsedFile, partition_range
from bemp_assets.domain.raw_ingest import RawRun, ingest_files, source_variables
from bemp_assets.domain.warehouse import IngestReport
from bemp_assets.checks import Verdict, emit_checks, evaluate_rules, same_for_partitions, specs
from bemp_assets.inbox_ledger import record_ingested
from bemp_assets.partitions import clip_days
from resources import CsvInboxResource, WarehouseResource

from .common import report_partitions, run_window, warehouse_asset

# commissioning rules judged on every partition a raw source writes
SOURCE_RULES = ["correctness", "frequency", "freshness"]


def build_raw_asset(source: SourceConfig, config: BempConfig, partitions: PartitionsDefinition) -> AssetsDefinition:
    tz = config.timezone_of(source)
    key = ["raw", source.name]

    @warehouse_asset(
        key=key,
        group_name="raw",
        partitions_def=partitions,
        kinds={"duckdb", "csv"},
        description=(
            f"Readings of source '{source.name}' ({source.format} CSV files matching "
            f"'{source.pattern}' in {f'$BEMP_HOME/{source.inbox}' if source.inbox else 'the inbox'}), merged into "
            "raw.measurements; bad rows in raw.rejects."
        ),
        metadata={"source_format": source.format, "file_pattern": source.pattern, "timezone": tz},
        check_specs=[AssetCheckSpec("files_parsed", asset=key,
                                    description="every inbox file of this source is readable text of a known "
                                                "shape (a WARN: the other files are stored regardless)"),
                     *specs(key, SOURCE_RULES)],
    )
    def raw_source(context: AssetExecutionContext, warehouse: WarehouseResource, inbox: CsvInboxResource):
        start, end = run_window(context)
        files = inbox.files(source, config)
        reading = with_registered_parameters(source, Path(inbox.inbox_dir).parent)
        context.log.info(f"{source.name}: {len(files)} file(s) in the inbox, window {start} .. {end}")
        now = datetime.now(timezone.utc)
        with warehouse.session() as con:
            run = ingest_files(con, [f.path for f in files], reading, config, (start, end), now,
                               partition_range(config.site), on_parsed=_log_parsed(context, len(files)),
                               days_cache=days_cache(Path(inbox.inbox_dir)))
            verdicts = evaluate_rules(context, con, config, SOURCE_RULES, start, end, source_variables(con, source.name))
            metadata, filled = report_partitions(
                context, con, "raw.measurements", "ts", written_at=now,
                where=f"variable_id IN (SELECT variable_id FROM meta.variables WHERE source = '{source.name}')")
        report = run.report
        for warning in report.warnings:
            context.log.warning(warning)
        if run.outside_window:
            context.log.info(f"{source.name}: {len(run.outside_window)} file(s) hold no day of this window, not read: "
                             f"{', '.join(run.outside_window)}")
        _record_covered(context, source.name, run, partitions)
        context.log.info(f"{source.name}: {report.rows_read} records read = {report.stored} stored + "
                         f"{report.rejects_in_files} rejected + {report.folded_duplicates} folded duplicates + "
                         f"{report.outside_window} outside the window; {report.missing_cells} empty cells")
        yield MaterializeResult(metadata={**metadata, **_accounting_metadata(report),
                                          "files_outside_window": MetadataValue.json(run.outside_window)})
        yield from emit_checks(context, {"files_parsed": same_for_partitions(_files_parsed(report), filled), **verdicts})

    return raw_source


def _log_parsed(context: AssetExecutionContext, total: int):
    """Log each file as soon as it is parsed: its readings, rejects and empty cells, or why it
    was rejected whole."""
    def log(index: int, parsed: ParsedFile) -> None:
        if parsed.error:
            context.log.warning(f"[{index}/{total}] file rejected whole: {parsed.error}")
        else:
            context.log.info(f"[{index}/{total}] {parsed.name}: {parsed.rows} readings, "
                             f"{len(parsed.rejects)} rejected rows, {parsed.missing_cells} empty cells")
    return log


def _record_covered(context: AssetExecutionContext, name: str, run: RawRun, partitions: PartitionsDefinition) -> None:
    """Record, for the inbox sensor, the files this (committed) window covered in full (the hash
    is of the bytes parsed: a rewrite since shows as a new hash)."""
    keys = context.partition_key_range
    covered = {}
    for p in run.parsed:
        days = run.days.get(p.name)
        span = clip_days(partitions, *days) if days and p.name not in run.report.failed_files else None
        if span and keys.start <= span[0] and span[1] <= keys.end:
            covered[p.name] = p.sha256
    record_ingested(context.instance, covered, context.run.run_id)
    context.log.info(f"{name}: ingested in full (the inbox sensor will not request them again): {sorted(covered)}")


def _files_parsed(report: IngestReport) -> Verdict:
    """The ``files_parsed`` check: a WARN naming every file rejected whole."""
    failed = "; ".join(report.failed_files.values())
    return Verdict(
        passed=not report.failed_files, severity=AssetCheckSeverity.WARN,
        description=(f"{len(report.failed_files)} of {len(report.files)} file(s) rejected whole: {failed}"
                     if report.failed_files else f"all {len(report.files)} file(s) are readable text of a known shape"),
        metadata={"failed_files": MetadataValue.json(report.failed_files), "files": len(report.files),
                  **({"observed_worst": MetadataValue.text(failed)} if failed else {})})


def _accounting_metadata(report: IngestReport) -> dict:
    """The run's accounting (``run_*``: the whole run, the same on every partition):
    run_rows_read = run_stored + run_rejected_rows + run_folded_duplicates + run_outside_window."""
    return {
        "files": MetadataValue.json(report.files),
        "failed_files": MetadataValue.json(report.failed_files),
        "per_file": MetadataValue.json(report.per_file),
        "variables": report.variables,
        **{f"run_{name}": int(value) for name, value in (
            ("rows_read", report.rows_read), ("stored", report.stored), ("rejected_rows", report.rejects_in_files),
            ("folded_duplicates", report.folded_duplicates), ("outside_window", report.outside_window),
            ("missing_cells", report.missing_cells), ("inserted", report.inserted), ("revised", report.revised),
            ("unchanged", report.unchanged), ("rejected_rows_new", report.rejects_new))},
    }


def build_raw_assets(config: BempConfig, partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    return [build_raw_asset(source, config, partitions) for source in config.sources]
