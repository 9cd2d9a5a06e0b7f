"""`bemp report refresh|day-by-month` and `bemp lineage kpi` (docs/kpis.md, docs/bi.md)."""
from __future__ import annotations

from pathlib import Path

from bemp_assets.cli import CliError, _parse_day, _read_only, settings_env
from bemp_assets.domain.settings import Settings


def add_parsers(sub) -> None:
    report = sub.add_parser("report", help="KPI reports and the BI snapshot (docs/kpis.md)")
    actions = report.add_subparsers(dest="action", required=True)
    actions.add_parser("refresh", help="rebuild KPIs and reports, export them, publish the BI snapshot")
    table = actions.add_parser("day-by-month", help="a variable's daily totals, days 1-31 by month, monthly totals")
    table.add_argument("--variable", required=True)
    table.add_argument("--year", required=True, type=int)
    table.add_argument("--out", help="file.xlsx or file.csv (default: print the table)")
    lineage = sub.add_parser("lineage", help="trace a KPI value back to its variables, rows and source files")
    kinds = lineage.add_subparsers(dest="kind", required=True)
    kpi = kinds.add_parser("kpi", help="one KPI on one day (or the month/year starting that day)")
    kpi.add_argument("name", help="a kpi_id of kpi.definitions, e.g. energy_kwh")
    kpi.add_argument("--day", required=True, help="period start, YYYY-MM-DD")
    kpi.add_argument("--resource", help="one resource_id (site/category, building, vehicle plate, fleet)")


def dispatch(args, settings: Settings) -> int:
    if args.command == "lineage":
        return lineage(settings, args.name, args.day, args.resource)
    if args.action == "refresh":
        return refresh(settings)
    return day_by_month(settings, args.variable, args.year, args.out)


def refresh(settings: Settings, instance=None) -> int:
    """Run the `bemp_kpi` job through the instance (visible in the UI), like `bemp run` does."""
    from dagster import DagsterInstance

    from bemp_assets.cli import _job_assets
    from bemp_assets.jobs import KPI_JOB
    from bemp_assets.launch import code_location, create_run, execute

    instance = instance or DagsterInstance.get()
    with settings_env(settings), code_location(instance) as location:
        ended = execute(instance, create_run(instance, location, KPI_JOB, {}, {}, _job_assets(location, KPI_JOB)))
    print(f"run {ended.run_id} ({KPI_JOB}): {ended.status.value}")
    return 0 if ended.is_success else 1


def day_by_month(settings: Settings, variable: str, year: int, out: str | None) -> int:
    import pandas as pd

    from bemp_assets.domain.config import load_config
    from bemp_assets.domain.report import MONTHS, ReportError, daily_totals, export_day_by_month
    from bemp_assets.domain.report import day_by_month as make_table

    if out and Path(out).suffix not in (".xlsx", ".csv"):
        raise CliError(f"--out {out}: expected a .xlsx or .csv file name")
    if out and not Path(out).resolve().parent.is_dir():
        raise CliError(f"--out {out}: folder {Path(out).resolve().parent} does not exist")
    tz = load_config(settings.config_dir).site.timezone
    with _read_only(settings) as con:
        try:
            daily = daily_totals(con, variable, year, tz)
        except ReportError as exc:
            raise CliError(f"--variable: {exc}") from None
    if daily.empty:
        raise CliError(f"--year {year}: {variable} has no data in {year}")
    table = make_table(daily, variable, year)
    if not out:
        with pd.option_context("display.width", 250, "display.max_columns", 20):
            print(table.set_index("row_label")[MONTHS].round(2).to_string())
        return 0
    target = Path(out).resolve()
    written = export_day_by_month(table, target.parent, target.stem)
    keep = {target, target.with_suffix(".png")}
    for path in written:
        if path not in keep:
            path.unlink()
    print(f"wrote {target} and {target.with_suffix('.png')}")
    return 0


def lineage(settings: Settings, name: str, day: str, resource: str | None) -> int:
    from bemp_assets.domain.lineage import format_lineage, kpi_lineage

    when = _parse_day("--day", day)
    with _read_only(settings) as con:
        known = [r[0] for r in con.execute("SELECT DISTINCT kpi_id FROM kpi.measures ORDER BY 1").fetchall()]
        if name not in known:
            raise CliError(f"kpi {name!r}: no such KPI in kpi.measures; known: {known or 'none (run `bemp report refresh`)'}")
        chain = kpi_lineage(con, name, when, resource)
    if chain.empty:
        raise CliError(f"--day {day}: no {name} value starts that day" + (f" for {resource}" if resource else ""))
    print(format_lineage(chain))
    return 0
