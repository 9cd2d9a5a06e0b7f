"""The `bemp` command: run the pipeline over a range of days through the Dagster instance.

    bemp seed-sample                      copy data/sample/*.csv into the inbox
    bemp run [--start D] [--end D] [--select S]
                                          one run over the range (a single-run backfill);
                                          without dates: the days the inbox files hold;
                                          without --select: the sources with files in them
    bemp summary                          rows per layer, date range, rejects
    bemp status [--as-of T]               the green/red/black installation board
    bemp export --variable ID --start D --end D [--layer raw|clean|hourly] --out FILE.csv
    bemp serve gateway|ipanel [--port N] [--data DIR] [--token T] [--replay] [fault flags]
                                          local reference server of a live source (docs/sources.md)
    bemp alarms list [--active] [--severity S] | ack ID --by NAME [--note TEXT] | history [--rule R] [--variable V]
                                          the alarm board, acknowledgement, event history (docs/alarms.md)
    bemp models list                      configured models, roles and backtest figures
    bemp models train [NAME] [--search-minutes N]
                                          train (and backtest) through the Dagster instance
    bemp forecast --model NAME --day D [--out FILE.csv]
                                          one day-ahead forecast (docs/models.md)
    bemp api serve [--port N] [--host H] | token create --name N --scope S | revoke ID | list
                                          the HTTP API and its tokens (docs/api.md)
    bemp --backend lake COMMAND ...       any command on the embedded scale-out profile: DuckLake
                                          and the Dagster instance on a PostgreSQL under $BEMP_HOME/lake
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Iterator

from bemp_assets.domain.settings import Settings

if TYPE_CHECKING:
    from bemp_assets.domain.inbox import HeldDays


class CliError(Exception):
    """A mistake in the command line: printed as one line, exit code 2."""


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


def run(settings: Settings, start: str | None, end: str | None, select: str | None, instance=None,
        job_name: str | None = None, refresh_status: bool = True, workers: int = 1) -> int:
    """Launch a partitioned job of the ``bemp`` code location, one run per range of days, each
    executed in this process; then refresh the ops snapshots. Without dates, the ranges are
    those the inbox files hold (CSV pipeline).

    ``instance`` defaults to the one DAGSTER_HOME points at, so the runs show in `make dev`,
    with their code location, in the timeline. Runs whose process died are failed first, so
    their pool slots no longer block this one.

    On DuckLake, ``workers`` > 1 splits each range into that many runs executed at once, each
    by its own ``bemp run`` process on the same instance (DAGSTER_HOME); every run executes its
    steps in its process (in-process executor, chosen by run config).
    """
    from dagster import DagsterInstance

    from bemp_assets.domain.lake import is_lake
    from bemp_assets.jobs import PIPELINE_JOB
    from bemp_assets.launch import code_location
    from bemp_assets.runs import reap_dead_runs

    job_name = job_name or PIPELINE_JOB
    # the days each file holds: the spans without dates, the sources without --select
    held = _held_days(settings) if job_name == PIPELINE_JOB and not (select and start and end) else None
    spans = _run_spans(settings, start, end, job_name, held)
    instance = instance or DagsterInstance.get()
    for reaped in reap_dead_runs(instance):
        print(f"run {reaped.run_id} ({reaped.job_name}) marked failed: {reaped.reason}; its pool slot is free")
    lake = is_lake(settings.warehouse)
    if workers > 1 and not lake:
        raise CliError(f"--workers {workers}: the embedded warehouse file takes one writer; parallel runs need "
                       f"BEMP_WAREHOUSE=ducklake:... or --backend lake")
    # DuckLake's code location defaults to the multiprocess executor; `bemp run` keeps a run in its process
    run_config = {"execution": {"config": {"in_process": {}}}} if lake else {}
    with settings_env(settings), code_location(instance) as location:
        if workers > 1:
            failed = [f for first, last in spans for f in run_in_parallel(settings, first, last, select, job_name, workers)]
        else:
            failed = _run_spans_of_job(instance, location, job_name, spans, select, run_config, held)
        if failed is None:
            return 130
        if failed:
            print(f"{len(failed)} of {len(spans)} run(s) failed: {'; '.join(failed)}", file=sys.stderr)
        if not refresh_status:
            return 1 if failed else 0
        refreshed = _refresh_ops(instance, location, run_config)
    return 0 if refreshed and not failed else 1


def _run_spans_of_job(instance, location, job_name: str, spans: list[tuple[str, str]], select: str | None,
                      run_config: dict, held: HeldDays | None) -> list[str] | None:
    """One run of ``job_name`` per span of days, in this process; the spans whose run failed
    (the others go on), or None when a run was cancelled (Ctrl-C). Without --select, a CSV
    pipeline run takes the sources ``held`` says have files in its span."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from bemp_assets.launch import create_run, execute

    selection = _within_job(location, job_name, _resolve_selection(location, select), select)
    failed = []
    for first, last in spans:
        print(f"running {job_name} over {first} .. {last} (one run)")
        created = create_run(instance, location, job_name,
                             {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                             run_config, selection or _span_assets(location, job_name, held, first, last))
        ended = execute(instance, created)
        print(f"run {ended.run_id}: {ended.status.value}")
        _report_failed_checks(instance, ended.run_id)
        if ended.status.value == "CANCELED":
            return None
        if not ended.is_success:
            failed.append(f"{first} .. {last} (run {ended.run_id})")
    return failed


def _span_assets(location, job_name: str, held: HeldDays | None, first: str, last: str) -> list:
    """The job's assets for one span. For the CSV pipeline (``held`` given) the raw assets are
    those of the sources with a file holding a day of the span, or a file whose days cannot be
    read (its run reports it), followed by everything downstream: a source without a file there
    has nothing to ingest, and materialising it would only record an empty partition per day
    (two events each; for a year of a 100-meter site, some 30 s of event writing)."""
    assets = _job_assets(location, job_name)
    if held is None:
        return assets
    sources = held.sources_within(date.fromisoformat(first), date.fromisoformat(last))
    print(f"sources with files in {first} .. {last}: {', '.join(sources) or 'none (clean and agg only)'}")
    return [key for key in assets if key.path[0] != "raw" or key.path[1] in sources]


def _refresh_ops(instance, location, run_config: dict) -> bool:
    """The ops snapshots after the runs: the status job, then the alarms job; whether both succeeded."""
    from bemp_assets.jobs import STATUS_JOB
    from bemp_assets.launch import create_run, execute
    from schedules.alarms import ALARMS_JOB

    status = execute(instance, create_run(instance, location, STATUS_JOB, {}, run_config))
    print(f"run {status.run_id} ({STATUS_JOB}): {status.status.value}")
    alarms = execute(instance, create_run(instance, location, ALARMS_JOB, {}, run_config, _job_assets(location, ALARMS_JOB)))
    print(f"run {alarms.run_id} ({ALARMS_JOB}): {alarms.status.value}")
    return status.is_success and alarms.is_success


def split_days(first: str, last: str, parts: int) -> list[tuple[str, str]]:
    """[first, last] (inclusive days) cut into at most ``parts`` consecutive ranges of nearly
    equal length."""
    start, days = date.fromisoformat(first), (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
    bounds = [round(i * days / parts) for i in range(parts + 1)]
    return [((start + timedelta(days=a)).isoformat(), (start + timedelta(days=b - 1)).isoformat())
            for a, b in zip(bounds, bounds[1:]) if b > a]


def run_in_parallel(settings: Settings, first: str, last: str, select: str | None, job_name: str,
                    workers: int) -> list[str]:
    """Run [first, last] as ``workers`` ranges at once, each by a `bemp run` process of its own
    (same settings and DAGSTER_HOME); the ranges that failed."""
    import os
    import subprocess

    from bemp_assets.domain.connection import connect
    from bemp_assets.domain.warehouse import prepare

    ranges = split_days(first, last, workers)
    prepare(connect(settings.warehouse)).close()  # catalog and schema once, not raced by the workers
    print(f"running {job_name} over {first} .. {last} as {len(ranges)} runs at once: "
          + ", ".join(f"{a} .. {b}" for a, b in ranges))
    env = {**os.environ, **settings.to_env()}
    procs = [(a, b, subprocess.Popen(
        [sys.executable, "-m", "bemp_assets.cli", "run", "--start", a, "--end", b, "--job", job_name, "--no-refresh",
         *(["--select", select] if select else [])], env=env)) for a, b in ranges]
    return [f"{a} .. {b} (worker exit code {code})" for a, b, proc in procs if (code := proc.wait()) != 0]


@contextmanager
def environment(values: dict[str, str]):
    """This process's environment with ``values`` set while the block runs, restored afterwards
    (a code location loaded in this process reads BEMP_* from it)."""
    import os

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def settings_env(settings: Settings):
    """BEMP_* set to ``settings`` while a code location loads and runs."""
    return environment(settings.to_env())


def _held_days(settings: Settings) -> HeldDays:
    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.inbox import held_days

    return held_days(settings.inbox, load_config(settings.config_dir))


def _run_spans(settings: Settings, start: str | None, end: str | None, job_name: str,
               held: HeldDays | None) -> list[tuple[str, str]]:
    """The partition ranges to run: the given dates, else the days the files ``held`` (CSV
    pipeline) or the warehouse holds (live job). A CliError says why there are none."""
    from bemp_assets.domain.config import load_config
    from bemp_assets.jobs import PIPELINE_JOB
    from bemp_assets.partitions import daily_partitions
    from sensors.inbox import clip_days

    config = load_config(settings.config_dir)
    partitions = daily_partitions(config.site)
    first_day, last_day = _parse_day("--start", start), _parse_day("--end", end)
    if first_day and last_day and first_day > last_day:
        raise CliError(f"--start {start} is after --end {end}")
    found = [] if first_day and last_day else (
        held.spans() if held is not None else _live_days_held(settings, config.site.timezone))
    wanted = ([(first_day, last_day)] if first_day and last_day
              else [(first_day or a, last_day or b) for a, b in found])
    if not wanted:
        where = (f"no readable CSV in {settings.inbox}" if job_name == PIPELINE_JOB
                 else "the warehouse holds no live-source data yet")
        raise CliError(f"{where}; give --start and --end")
    spans = [span for first, last in wanted if (span := clip_days(partitions, first, last))]
    if not spans:
        keys = partitions.get_partition_keys()
        raise CliError(f"no partitions in {wanted[0][0]} .. {wanted[-1][1]}; partitions run {keys[0]} .. {keys[-1]}")
    return spans


def _live_days_held(settings: Settings, tz: str) -> list[tuple[date, date]]:
    """The day range the warehouse holds live-source records for: the default range of a
    `bemp_live` run without dates (the partition set itself reaches back to site.start_date)."""
    if not settings.warehouse.exists():
        return []
    from bemp_assets.domain.live import held_days

    with _read_only(settings) as con:
        days = held_days(con, tz)
    return [days] if days else []


def _parse_day(flag: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"{flag} {text!r}: expected a day as YYYY-MM-DD, e.g. 2018-03-01") from None


SELECTION_PREFIXES = ["key", "group", "tag", "kind", "owner", "code_location", "status", "column", "table_name"]


def _job_assets(location, job_name: str) -> list:
    """Every asset of ``job_name``, named in the run so that the automation sees what the run
    materialised and does not request it again (bemp_assets/automation.py)."""
    return sorted(location.get_repository("__repository__").asset_graph.asset_keys_for_job(job_name))


def _resolve_selection(location, select: str | None):
    """Asset keys of a Dagster selection string; a CliError suggests the closest valid one."""
    if not select:
        return None
    from dagster import AssetSelection

    graph = location.get_repository("__repository__").asset_graph
    try:
        keys = list(AssetSelection.from_string(select).resolve(graph))
    except Exception:  # the grammar's own error names only the string: suggest instead
        hint = _suggest_selection(select, graph) or " (e.g. 'group:raw' or 'key:clean/measurements+')"
        raise CliError(f"--select {select!r}: not a valid selection{hint}") from None
    if not keys:
        raise CliError(f"--select {select!r} matches no asset{_suggest_selection(select, graph)}")
    return keys


def _within_job(location, job_name: str, selection, select: str | None):
    """The selected assets that belong to the job: 'key:clean/measurements+' reaches the ml
    assets too, which `bemp models train` and the ml schedules run, not the pipeline."""
    if not selection:
        return selection
    inside = set(_job_assets(location, job_name))
    kept = [key for key in selection if key in inside]
    if not kept:
        raise CliError(f"--select {select!r} matches no asset of job {job_name} (models: `bemp models train`)")
    return kept


def _suggest_selection(select: str, graph) -> str:
    """' (did you mean ...?)' for the closest prefix, group or asset key, or ''."""
    import difflib

    prefix, _, value = select.strip().rstrip("+*").lstrip("+*").partition(":")
    if not value:
        return ""
    candidates = {
        "group": sorted({n.group_name for n in graph.asset_nodes if n.group_name}),
        "key": sorted(n.key.to_user_string() for n in graph.asset_nodes),
    }
    if prefix not in SELECTION_PREFIXES:
        close = difflib.get_close_matches(prefix, SELECTION_PREFIXES, n=1)
        return f" (did you mean '{close[0]}:{value}'?)" if close else ""
    close = difflib.get_close_matches(value.strip('"'), candidates.get(prefix, []), n=1, cutoff=0.5)
    return f" (did you mean '{prefix}:{close[0]}'?)" if close else ""


@contextmanager
def reference_servers(settings: Settings):
    """Both reference servers on free localhost ports, with fresh tokens exported to this
    process's environment (where the clients' EnvVars read them); yields the day span of their
    data in the site time zone."""
    import secrets

    import pandas as pd

    from bemp_assets.domain.config import load_config
    from bemp_assets.refservers import gateway, ipanel, start_server

    tz = load_config(settings.config_dir).site.timezone
    tables = [*gateway.load(settings.sample_dir / "gateway").values(), *ipanel.load(settings.sample_dir / "ipanel").values()]
    times = [t.times for t in tables if len(t.times)]
    span = [pd.Timestamp(int(f(x)), unit="s", tz="UTC").tz_convert(tz).date().isoformat()
            for f, x in ((min, [t[0] for t in times]), (max, [t[-1] for t in times]))]
    tokens = {kind: secrets.token_hex(16) for kind in ("gateway", "ipanel")}
    with start_server("gateway", settings.sample_dir / "gateway", token=tokens["gateway"]) as gw, \
            start_server("ipanel", settings.sample_dir / "ipanel", token=tokens["ipanel"]) as ip, \
            environment({"BEMP_GATEWAY_URL": gw.url, "BEMP_GATEWAY_TOKEN": tokens["gateway"],
                         "BEMP_IPANEL_URL": ip.url, "BEMP_IPANEL_TOKEN": tokens["ipanel"]}):
        print(f"reference servers: gateway {gw.url}, ipanel {ip.url}; data {span[0]} .. {span[1]}")
        yield span


def _report_failed_checks(instance, run_id: str) -> None:
    """Print every failed asset check of a run in plain words: 'failed' for ERROR, 'warning' for
    WARN (a warning does not fail the run)."""
    from dagster import DagsterEventType

    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.partition is None:  # the run-level summary, not each day
            kind = "failed" if evaluation.severity.value == "ERROR" else "warning"
            print(f"  check {kind}: {evaluation.asset_key.to_user_string()} {evaluation.check_name}: "
                  f"{evaluation.description or ''}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bemp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", dest="global_backend", choices=["file", "lake"], default="file",
                        help="lake: run the command on the embedded scale-out profile (PostgreSQL from pip under "
                             "$BEMP_HOME/lake holding the DuckLake catalog and the Dagster instance; docs/deploy.md)")
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
    run_parser.add_argument("--backend", choices=["file", "lake"], default=None,
                            help="same as `bemp --backend ... run` (kept for scripts)")
    run_parser.add_argument("--workers", type=int, default=1,
                            help="DuckLake only: run the days as this many runs at once, each in its own process")
    run_parser.add_argument("--no-refresh", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("summary", help="rows per layer, date range and rejects")
    _add_serve_parser(sub)
    from bemp_assets.cli_api import add_api_parser

    add_api_parser(sub)
    status_parser = sub.add_parser("status", help="the installation status board (green/red/black)")
    status_parser.add_argument("--as-of", help="evaluate at this instant, ISO 8601 (2018-06-01 or 2018-06-01T12:00, "
                                               "UTC unless an offset is given) instead of the stored board")
    export_parser = sub.add_parser("export", help="download one variable's series as CSV")
    export_parser.add_argument("--variable", required=True, help="variable id, as in `bemp summary` or meta.variables")
    export_parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD (site time zone)")
    export_parser.add_argument("--end", required=True, help="last day, YYYY-MM-DD, inclusive")
    export_parser.add_argument("--layer", default="clean", choices=["raw", "clean", "hourly"],
                               help="raw readings, clean readings (default) or hourly statistics")
    export_parser.add_argument("--out", required=True, help="CSV file to write; its folder must exist")
    _add_alarms_parser(sub)
    _add_model_parsers(sub)
    from bemp_assets import cli_planner

    cli_planner.add_parser(sub)

    from bemp_assets import cli_report

    cli_report.add_parsers(sub)
    return parser


def _add_alarms_parser(sub) -> None:
    from bemp_assets.domain.alarms import SEVERITIES

    alarms_parser = sub.add_parser("alarms", help="the alarm board, acknowledgements and history (docs/alarms.md)")
    actions = alarms_parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="alarms of the current rules, newest first (elapsed as 200h59:37)")
    listing.add_argument("--active", action="store_true", help="only the board: alarms raised and not cleared")
    listing.add_argument("--severity", choices=SEVERITIES, help="only this severity")
    ack = actions.add_parser("ack", help="acknowledge an active alarm")
    ack.add_argument("alarm_id", metavar="ID", help="alarm id, as in `bemp alarms list --active`")
    ack.add_argument("--by", required=True, help="who acknowledges")
    ack.add_argument("--note", help="free text")
    hist = actions.add_parser("history", help="every event (raised, cleared, acknowledged), old rule versions included")
    hist.add_argument("--rule", help="only this rule")
    hist.add_argument("--variable", help="only this variable (or gateway serial number)")


def _add_model_parsers(sub) -> None:
    models_parser = sub.add_parser("models", help="list or train the forecasting models (docs/models.md)")
    actions = models_parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="configured models with their role and backtest figures")
    train_parser = actions.add_parser("train", help="train models (all non-TPOT ones by default) and backtest them")
    train_parser.add_argument("name", nargs="?", help="one configured model (a TPOT model runs its search)")
    train_parser.add_argument("--search-minutes", type=float, help="TPOT search budget in minutes (also trains the "
                                                                   "TPOT models when no NAME is given)")
    forecast_parser = sub.add_parser("forecast", help="the day-ahead forecast of one model for one day")
    forecast_parser.add_argument("--model", required=True, help="a configured model name (`bemp models list`)")
    forecast_parser.add_argument("--day", required=True, help="target day, YYYY-MM-DD (the model's local time)")
    forecast_parser.add_argument("--out", help="CSV file to write; its folder must exist")


def main(argv: list[str] | None = None) -> int:
    """Run a command; a mistake in the command line, the config or the warehouse is one line
    on stderr (exit 2, or 1 for the warehouse), never a traceback."""
    from bemp_assets.domain.config import ConfigError
    from bemp_assets.domain.connection import WarehouseError

    args = build_parser().parse_args(argv)
    try:
        settings = _settings()
        if "lake" in (args.global_backend, getattr(args, "backend", None)):
            with on_embedded_lake(settings) as lake:
                return dispatch(args, lake)
        return dispatch(args, settings)
    except (CliError, ConfigError) as exc:
        print(f"bemp {args.command}: {exc}", file=sys.stderr)
        return 2
    except WarehouseError as exc:
        print(f"bemp {args.command}: {exc}", file=sys.stderr)
        return 1


def dispatch(args, settings: Settings) -> int:
    if args.command == "seed-sample":
        copied = seed_sample(settings)
        print(f"inbox {settings.inbox}: copied {copied or 'nothing (already up to date)'}")
        return 0
    if args.command == "run":
        code = run_command(args, settings)
        if code in (0, 1) and not args.no_refresh:  # show what the warehouse now holds
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
    if args.command == "alarms":
        return alarms_command(args, settings)
    if args.command == "planner":
        from bemp_assets import cli_planner

        return cli_planner.dispatch(args, settings)
    if args.command in ("models", "forecast"):
        from bemp_assets import cli_models

        return cli_models.dispatch(args, settings)
    if args.command in ("report", "lineage"):
        from bemp_assets import cli_report

        return cli_report.dispatch(args, settings)

    if args.command == "api":
        from bemp_assets import cli_api

        return cli_api.dispatch(args, settings)
    from bemp_assets.domain.summary import warehouse_summary

    print(warehouse_summary(settings.warehouse))
    return 0


def run_command(args, settings: Settings) -> int:
    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: expected a number of parallel runs >= 1")
    return _run_sources(args, settings)


@contextmanager
def on_embedded_lake(settings: Settings) -> Iterator[Settings]:
    """``bemp --backend lake ...``: start the embedded PostgreSQL under $BEMP_HOME/lake, point the
    warehouse at its DuckLake and DAGSTER_HOME at an instance on the same server (also in this
    process's environment, for the code location loaded here); stop the server afterwards."""
    from bemp_assets.lake_server import embedded_lake

    with embedded_lake(settings) as (lake, dagster_home), \
            environment({"DAGSTER_HOME": str(dagster_home), **lake.to_env()}):
        print(f"DuckLake: catalog {lake.warehouse.describe()}; Dagster instance {dagster_home}")
        yield lake


def _run_sources(args, settings: Settings, instance=None) -> int:
    common = dict(instance=instance, workers=args.workers, refresh_status=not args.no_refresh)
    if not args.with_reference_servers:
        return run(settings, args.start, args.end, args.select, job_name=args.job, **common)
    with reference_servers(settings) as (first, last):
        csv_code = run(settings, args.start, args.end, args.select, **{**common, "refresh_status": False})
        if csv_code not in (0, 1):
            return csv_code
        return run(settings, first, last, args.select, job_name="bemp_live", **common) or csv_code


def _add_serve_parser(sub) -> None:
    """`bemp serve gateway|ipanel|both`; the flags live with the servers (bemp_assets/refservers)."""
    serve_parser = sub.add_parser("serve", help="run local reference servers (gateway, iPanel or both)")
    kinds = serve_parser.add_subparsers(dest="kind", required=True)
    from bemp_assets.refservers import add_serve_arguments, add_serve_both_arguments  # light: no pandas yet

    for kind in ("gateway", "ipanel"):
        add_serve_arguments(kinds.add_parser(kind, help=f"serve {kind} records from a data folder"), kind)
    add_serve_both_arguments(kinds.add_parser("both", help="both servers on their default ports (make serve)"))


def _read_only(settings: Settings):
    from bemp_assets.domain.connection import connect

    if not settings.warehouse.exists():
        raise CliError(f"warehouse {settings.warehouse} does not exist yet: run `make run` or `bemp run` first")
    con = connect(settings.warehouse, read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    return con


def _parse_instant(flag: str, text: str):
    """A UTC pandas Timestamp from ISO 8601 text, or a CliError naming the flag."""
    import pandas as pd

    try:
        at = pd.Timestamp(datetime.fromisoformat(text))
    except ValueError:
        raise CliError(f"{flag} {text!r}: expected an ISO 8601 instant such as 2018-06-01 or "
                       f"2018-06-01T12:00 (UTC) or 2018-06-01T12:00+02:00") from None
    return at.tz_localize("UTC") if at.tz is None else at.tz_convert("UTC")


def status(settings: Settings, as_of: str | None) -> int:
    """Print the board, judged (read-only) at ``as_of``, else at now while data is live, else at
    the newest reading (the header says which)."""
    from datetime import timezone

    from bemp_assets.domain.commissioning import variable_labels
    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.status import current_board, format_board

    at = _parse_instant("--as-of", as_of).to_pydatetime() if as_of else None
    config = load_config(settings.config_dir)
    with _read_only(settings) as con:
        when, board = current_board(con, config, datetime.now(timezone.utc), at)
        labels = variable_labels(con)
    print(when.header())
    print(format_board(board, labels))
    return 0


def export(settings: Settings, variable: str, start: str, end: str, layer: str, out: str) -> int:
    """Write one series to CSV; clear messages for unknown variables and empty ranges."""
    from pathlib import Path

    import pandas as pd

    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.status import ExportError, export_series

    tz = load_config(settings.config_dir).site.timezone
    first_day, last_day = _parse_day("--start", start), _parse_day("--end", end)
    if first_day > last_day:
        raise CliError(f"--start {start} is after --end {end}")
    if not Path(out).parent.is_dir():
        raise CliError(f"--out {out}: folder {Path(out).parent} does not exist")
    first = pd.Timestamp(first_day, tz=tz)
    last = pd.Timestamp(last_day + timedelta(days=1), tz=tz)
    with _read_only(settings) as con:
        try:
            rows = export_series(con, variable, first.to_pydatetime(), last.to_pydatetime(), layer, Path(out))
        except ExportError as exc:
            print(f"bemp export: {exc}", file=sys.stderr)
            return 2
    print(f"wrote {rows} {layer} rows of {variable} to {out}")
    return 0


def alarms_command(args, settings: Settings) -> int:
    """`bemp alarms list|ack|history`: read-only, except ack (one short write)."""
    from datetime import timezone

    from bemp_assets.domain import alarms

    now = datetime.now(timezone.utc)
    if args.action == "ack":
        return _acknowledge(settings, args.alarm_id, args.by, args.note, now)
    with _read_only(settings) as con:
        if args.action == "list":
            frame = alarms.board_frame(con, now, args.severity) if args.active else alarms.episodes(con, now, args.severity)
            print(alarms.format_board(frame) if args.active else alarms.format_episodes(frame))
            return 0
        frame = alarms.history(con, args.rule, args.variable)
        if frame.empty and args.rule:
            known = [r[0] for r in con.execute("SELECT DISTINCT rule FROM ops.alarm_events ORDER BY 1").fetchall()]
            raise CliError(f"--rule {args.rule!r}: no events; rules with events: {known}")
    print(_table(frame, "no events"))
    return 0


def _acknowledge(settings: Settings, alarm_id: str, by: str, note: str | None, now) -> int:
    from bemp_assets.domain import alarms
    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.connection import connect
    from bemp_assets.domain.warehouse import prepare

    config = load_config(settings.config_dir)
    if not settings.warehouse.exists():
        raise CliError(f"warehouse {settings.warehouse} does not exist yet: run `make run` or `bemp run` first")
    with prepare(connect(settings.warehouse)) as con:
        try:
            done = alarms.acknowledge(con, config, alarm_id, by, note, now)
        except alarms.AlarmError as exc:
            raise CliError(str(exc)) from None
    print(f"alarm {alarm_id} ({done['rule']} on {done['subject']}) acknowledged by {by} at {now:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def _table(frame, empty: str) -> str:
    return empty if frame.empty else frame.to_string(index=False)


if __name__ == "__main__":
    # the package's module, not this __main__ copy: one CliError class for cli_models too
    from bemp_assets.cli import main as package_main

    sys.exit(package_main())
