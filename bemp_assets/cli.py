"""The `bemp` command: run the pipeline over a range of days through the Dagster instance.

    bemp seed-sample                      copy data/sample/*.csv into the inbox
    bemp run [--start D] [--end D] [--select S]
                                          one run over the range (a single-run backfill);
                                          without dates: the days the inbox files hold
    bemp summary                          rows per layer, date range, rejects
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from datetime import date

from bemp_assets.domain.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def seed_sample(settings: Settings) -> list[str]:
    """Copy the bundled sample CSVs into the inbox; unchanged files are left alone (idempotent)."""
    settings.inbox.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(settings.sample_dir.glob("*.csv")):
        target = settings.inbox / path.name
        if not target.exists() or not filecmp.cmp(path, target, shallow=False):
            shutil.copy2(path, target)
            copied.append(path.name)
    return copied


def inbox_day_range(settings: Settings, config) -> tuple[str, str] | None:
    from bemp_assets.domain.inbox import file_days, list_inbox, source_for

    spans = []
    for f in list_inbox(settings.inbox):
        source = source_for(f.name, config)
        days = file_days(f.path, source, config) if source else None
        if days:
            spans.append(days)
    if not spans:
        return None
    return min(s[0] for s in spans).isoformat(), max(s[1] for s in spans).isoformat()


def run(settings: Settings, start: str | None, end: str | None, select: str | None, instance=None) -> int:
    """Execute the pipeline job in this process, as one run over the partition range.

    ``instance`` defaults to the one DAGSTER_HOME points at, so the run shows in `make dev`.
    """
    from dagster import AssetSelection, DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from bemp_assets.definitions import build_definitions
    from bemp_assets.domain.config import load_config
    from bemp_assets.jobs import PIPELINE_JOB
    from bemp_assets.partitions import daily_partitions
    from sensors.inbox import clip_days

    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    if start is None or end is None:
        span = inbox_day_range(settings, config)
        if span is None:
            print(f"no readable CSV in {settings.inbox}; give --start and --end or drop files there", file=sys.stderr)
            return 2
        start, end = start or span[0], end or span[1]
    try:
        span = clip_days(partitions, date.fromisoformat(start), date.fromisoformat(end))
    except ValueError as exc:
        print(f"--start/--end: expected YYYY-MM-DD ({exc})", file=sys.stderr)
        return 2
    if span is None:
        keys = partitions.get_partition_keys()
        print(f"no partitions between {start} and {end}; partitions run {keys[0]} .. {keys[-1]}", file=sys.stderr)
        return 2
    defs = build_definitions(settings)
    job = defs.resolve_job_def(PIPELINE_JOB)
    selection = None
    if select:
        selection = list(AssetSelection.from_string(select).resolve(defs.resolve_asset_graph()))
        if not selection:
            print(f"--select {select!r} matches no asset", file=sys.stderr)
            return 2
    print(f"running {PIPELINE_JOB} over {span[0]} .. {span[1]} (one run)")
    result = job.execute_in_process(
        instance=instance or DagsterInstance.get(),
        asset_selection=selection,
        tags={ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[1]},
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        raise_on_error=False,
    )
    print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bemp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("seed-sample", help="copy the bundled sample CSVs into the inbox")
    run_parser = sub.add_parser("run", help="materialise a range of days in one run")
    run_parser.add_argument("--start", help="first day, YYYY-MM-DD (default: from the inbox files)")
    run_parser.add_argument("--end", help="last day, YYYY-MM-DD, inclusive (default: from the inbox files)")
    run_parser.add_argument("--select", help="Dagster asset selection, e.g. 'group:raw' or 'key:clean/measurements'")
    sub.add_parser("summary", help="rows per layer, date range and rejects")
    args = parser.parse_args(argv)
    settings = _settings()
    if args.command == "seed-sample":
        copied = seed_sample(settings)
        print(f"inbox {settings.inbox}: copied {copied or 'nothing (already up to date)'}")
        return 0
    if args.command == "run":
        code = run(settings, args.start, args.end, args.select)
        from bemp_assets.domain.summary import warehouse_summary

        print(warehouse_summary(settings.warehouse))
        return code
    from bemp_assets.domain.summary import warehouse_summary

    print(warehouse_summary(settings.warehouse))
    return 0


if __name__ == "__main__":
    sys.exit(main())
