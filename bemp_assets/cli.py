"""The `bemp` command: run the pipeline over a range of days through the Dagster instance.

    bemp seed-sample                      copy data/sample/*.csv into the inbox
    bemp run [--start D] [--end D] [--select S]
                                          one run over the range (a single-run backfill);
                                          without dates: the days the inbox files hold
    bemp summary                          rows per layer, date range, rejects
    bemp status [--as-of T]               the green/red/black installation board
    bemp export --variable ID --start D --end D [--layer raw|clean|hourly] --out FILE.csv
    bemp serve gateway|ipanel [--port N] [--data DIR] [--token T] [--replay] [fault flags]
                                          local reference server of a live source (docs/sources.md)
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from contextlib import contextmanager
from datetime import date, timedelta

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


def inbox_day_spans(settings: Settings, config) -> list[tuple[date, date]]:
    """The day ranges the inbox files hold, overlapping ranges merged (a year without data
    between two exports is not processed)."""
    from bemp_assets.domain.inbox import file_days, list_inbox, source_for

    spans = sorted(days for f in list_inbox(settings.inbox)
                   if (source := source_for(f.name, config)) and (days := file_days(f.path, source, config)))
    merged: list[tuple[date, date]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def run(settings: Settings, start: str | None, end: str | None, select: str | None, instance=None,
        job_name: str | None = None, refresh_status: bool = True) -> int:
    """Execute a partitioned job in this process, one run per range of days, then refresh the
    ops snapshots. Without dates, the ranges are those the inbox files hold (CSV pipeline).

    ``instance`` defaults to the one DAGSTER_HOME points at, so the runs show in `make dev`.
    """
    from dagster import AssetSelection, DagsterInstance
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from bemp_assets.definitions import build_definitions
    from bemp_assets.domain.config import load_config
    from bemp_assets.jobs import PIPELINE_JOB, STATUS_JOB
    from bemp_assets.partitions import daily_partitions
    from sensors.inbox import clip_days

    job_name = job_name or PIPELINE_JOB
    if job_name != PIPELINE_JOB and not (start and end):
        print(f"--job {job_name}: give --start and --end (the inbox only dates CSV files)", file=sys.stderr)
        return 2
    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    try:
        wanted = ([(date.fromisoformat(start), date.fromisoformat(end))] if start and end
                  else [(date.fromisoformat(start) if start else a, date.fromisoformat(end) if end else b)
                        for a, b in inbox_day_spans(settings, config)])
    except ValueError as exc:
        print(f"--start/--end: expected YYYY-MM-DD ({exc})", file=sys.stderr)
        return 2
    if not wanted:
        print(f"no readable CSV in {settings.inbox}; give --start and --end or drop files there", file=sys.stderr)
        return 2
    spans = [span for first, last in wanted if (span := clip_days(partitions, first, last))]
    if not spans:
        keys = partitions.get_partition_keys()
        print(f"no partitions in {wanted[0][0]} .. {wanted[-1][1]}; partitions run {keys[0]} .. {keys[-1]}", file=sys.stderr)
        return 2
    defs = build_definitions(settings)
    instance = instance or DagsterInstance.get()
    selection = None
    if select:
        selection = list(AssetSelection.from_string(select).resolve(defs.resolve_asset_graph()))
        if not selection:
            print(f"--select {select!r} matches no asset", file=sys.stderr)
            return 2
    job = defs.resolve_job_def(job_name)
    failed = []
    for first, last in spans:
        print(f"running {job_name} over {first} .. {last} (one run)")
        result = job.execute_in_process(
            instance=instance,
            asset_selection=selection,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
            raise_on_error=False,
        )
        print(f"run {result.run_id}: {'success' if result.success else 'FAILED'}")
        _report_failed_checks(result)
        if not result.success:  # go on with the other ranges; report at the end
            failed.append(f"{first} .. {last} (run {result.run_id})")
    if failed:
        print(f"{len(failed)} of {len(spans)} run(s) failed: {'; '.join(failed)}", file=sys.stderr)
    if not refresh_status:
        return 1 if failed else 0
    status = defs.resolve_job_def(STATUS_JOB).execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    print(f"run {status.run_id} ({STATUS_JOB}): {'success' if status.success else 'FAILED'}")
    return 0 if status.success and not failed else 1


@contextmanager
def reference_servers(settings: Settings):
    """Both reference servers on free localhost ports, with fresh tokens exported to this
    process's environment (where the clients' EnvVars read them); yields the day span of their
    data in the site time zone."""
    import os
    import secrets

    import pandas as pd

    from bemp_assets.domain.config import load_config
    from bemp_assets.refservers import gateway, ipanel, start_server

    tz = load_config(settings.config_dir).site.timezone
    tables = [*gateway.load(settings.sample_dir / "gateway").values(), *ipanel.load(settings.sample_dir / "ipanel").values()]
    times = [t.times for t in tables if len(t.times)]
    span = [pd.Timestamp(int(f(x)), unit="s", tz="UTC").tz_convert(tz).date().isoformat()
            for f, x in ((min, [t[0] for t in times]), (max, [t[-1] for t in times]))]
    saved = {k: os.environ.get(k) for k in ("BEMP_GATEWAY_URL", "BEMP_GATEWAY_TOKEN", "BEMP_IPANEL_URL", "BEMP_IPANEL_TOKEN")}
    tokens = {kind: secrets.token_hex(16) for kind in ("gateway", "ipanel")}
    with start_server("gateway", settings.sample_dir / "gateway", token=tokens["gateway"]) as gw, \
            start_server("ipanel", settings.sample_dir / "ipanel", token=tokens["ipanel"]) as ip:
        os.environ.update({"BEMP_GATEWAY_URL": gw.url, "BEMP_GATEWAY_TOKEN": tokens["gateway"],
                           "BEMP_IPANEL_URL": ip.url, "BEMP_IPANEL_TOKEN": tokens["ipanel"]})
        print(f"reference servers: gateway {gw.url}, ipanel {ip.url}; data {span[0]} .. {span[1]}")
        try:
            yield span
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _report_failed_checks(result) -> None:
    """Print every failed asset check of a run, with its worst offenders."""
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if not evaluation.passed:
            worst = evaluation.metadata.get("observed_worst")
            print(f"  check failed: {evaluation.asset_key.to_user_string()} {evaluation.check_name}"
                  f" ({evaluation.severity.value}): {worst.value if worst else ''}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bemp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("seed-sample", help="copy the bundled sample CSVs into the inbox")
    run_parser = sub.add_parser("run", help="materialise a range of days in one run")
    run_parser.add_argument("--start", help="first day, YYYY-MM-DD (default: from the inbox files)")
    run_parser.add_argument("--end", help="last day, YYYY-MM-DD, inclusive (default: from the inbox files)")
    run_parser.add_argument("--select", help="Dagster asset selection, e.g. 'group:raw' or 'key:clean/measurements'")
    run_parser.add_argument("--with-reference-servers", action="store_true",
                            help="also start the gateway and iPanel reference servers and run bemp_live over their data")
    run_parser.add_argument("--job", default="bemp_pipeline", choices=["bemp_pipeline", "bemp_live"],
                            help="bemp_pipeline: the CSV inbox (default); bemp_live: the gateway and iPanel APIs")
    sub.add_parser("summary", help="rows per layer, date range and rejects")
    _add_serve_parser(sub)
    status_parser = sub.add_parser("status", help="the installation status board (green/red/black)")
    status_parser.add_argument("--as-of", help="evaluate at this instant (ISO 8601) instead of the stored board")
    export_parser = sub.add_parser("export", help="download one variable's series as CSV")
    export_parser.add_argument("--variable", required=True)
    export_parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD (site time zone)")
    export_parser.add_argument("--end", required=True, help="last day, YYYY-MM-DD, inclusive")
    export_parser.add_argument("--layer", default="clean", choices=["raw", "clean", "hourly"])
    export_parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    settings = _settings()
    if args.command == "seed-sample":
        copied = seed_sample(settings)
        print(f"inbox {settings.inbox}: copied {copied or 'nothing (already up to date)'}")
        return 0
    if args.command == "run":
        if args.with_reference_servers:
            with reference_servers(settings) as (first, last):
                csv_code = run(settings, args.start, args.end, args.select, refresh_status=False)
                code = run(settings, first, last, args.select, job_name="bemp_live") or csv_code
        else:
            code = run(settings, args.start, args.end, args.select, job_name=args.job)
        from bemp_assets.domain.summary import warehouse_summary

        print(warehouse_summary(settings.warehouse))
        return code
    if args.command == "serve":
        from bemp_assets.refservers import serve

        return serve(args.kind, args, settings.sample_dir)
    if args.command == "status":
        return status(settings, args.as_of)
    if args.command == "export":
        return export(settings, args.variable, args.start, args.end, args.layer, args.out)
    from bemp_assets.domain.summary import warehouse_summary

    print(warehouse_summary(settings.warehouse))
    return 0


def _add_serve_parser(sub) -> None:
    """`bemp serve gateway|ipanel`; the flags live with the servers (bemp_assets/refservers)."""
    serve_parser = sub.add_parser("serve", help="run a local reference server (gateway or iPanel)")
    kinds = serve_parser.add_subparsers(dest="kind", required=True)
    from bemp_assets.refservers import add_serve_arguments  # light: pandas loads only when serving

    for kind in ("gateway", "ipanel"):
        add_serve_arguments(kinds.add_parser(kind, help=f"serve {kind} records from a data folder"), kind)


def _read_only(settings: Settings):
    import duckdb

    if not settings.warehouse.exists():
        raise SystemExit(f"warehouse {settings.warehouse} does not exist yet: run `make run` or `bemp run` first")
    con = duckdb.connect(str(settings.warehouse), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def status(settings: Settings, as_of: str | None) -> int:
    """Print the stored board, or recompute it (read-only) at ``as_of``."""
    import pandas as pd

    from bemp_assets.domain.commissioning import register_rules
    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.status import format_board, installation_status

    with _read_only(settings) as con:
        if as_of:
            config = load_config(settings.config_dir)
            register_rules(con, config)
            at = pd.Timestamp(as_of)
            board = installation_status(con, at.tz_localize("UTC") if at.tz is None else at, config.expected_variables())
        else:
            board = con.execute("SELECT * FROM ops.installation_status").df()
    stamp = board["as_of"].iloc[0] if len(board) else "-"
    print(f"installation status as of {stamp}")
    print(format_board(board))
    return 0


def export(settings: Settings, variable: str, start: str, end: str, layer: str, out: str) -> int:
    """Write one series to CSV; clear messages for unknown variables and empty ranges."""
    from pathlib import Path

    import pandas as pd

    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.status import ExportError, export_series

    tz = load_config(settings.config_dir).site.timezone
    try:
        first = pd.Timestamp(date.fromisoformat(start), tz=tz)
        last = pd.Timestamp(date.fromisoformat(end) + timedelta(days=1), tz=tz)
    except ValueError as exc:
        print(f"--start/--end: expected YYYY-MM-DD ({exc})", file=sys.stderr)
        return 2
    with _read_only(settings) as con:
        try:
            rows = export_series(con, variable, first.to_pydatetime(), last.to_pydatetime(), layer, Path(out))
        except ExportError as exc:
            print(f"bemp export: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {rows} {layer} rows of {variable} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
