"""`bemp planner run|export` (docs/buildings.md); mistakes are CliErrors."""
from __future__ import annotations

from pathlib import Path

from bemp_assets.cli import CliError, _read_only, settings_env
from bemp_assets.domain.settings import Settings


def add_parser(sub) -> None:
    planner = sub.add_parser("planner", help="comfort and the thermal demand planner (docs/buildings.md)")
    actions = planner.add_subparsers(dest="action", required=True)
    actions.add_parser("run", help="materialise comfort/* and planner/* (re-process after a registry edit)")
    export_parser = actions.add_parser("export", help="write the planner table (forecast per building and total) as CSV")
    export_parser.add_argument("--out", required=True, help="CSV file to write; its folder must exist")


def dispatch(args, settings: Settings) -> int:
    if args.action == "run":
        return run(settings)
    return export(settings, args.out)


def run(settings: Settings, instance=None) -> int:
    """One run of the bemp_buildings job through the Dagster instance, as the UI would."""
    from dagster import DagsterInstance

    from bemp_assets.cli import _job_assets
    from bemp_assets.jobs import BUILDINGS_JOB
    from bemp_assets.launch import code_location, create_run, execute

    instance = instance or DagsterInstance.get()
    with settings_env(settings), code_location(instance) as location:
        ended = execute(instance, create_run(instance, location, BUILDINGS_JOB, {}, {}, _job_assets(location, BUILDINGS_JOB)))
    print(f"run {ended.run_id} ({BUILDINGS_JOB}): {ended.status.value}")
    return 0 if ended.is_success else 1


def export(settings: Settings, out: str) -> int:
    from bemp_assets.domain.planner_model import export_plan

    if not Path(out).parent.is_dir():
        raise CliError(f"--out {out}: folder {Path(out).parent} does not exist")
    if not settings.warehouse.exists():
        raise CliError(f"warehouse {settings.warehouse} does not exist yet: run `make run` or `bemp planner run` first")
    with _read_only(settings) as con:
        held = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'planner' "
                           "AND table_name = 'forecast'").fetchall()[0][0]
        table = export_plan(con) if held else None
    if table is None or table.empty:
        raise CliError("no planner forecast in the warehouse yet: run `bemp planner run` first")
    table.to_csv(out, index=False)
    print(f"wrote {len(table)} rows ({table['building_id'].nunique() - 1} buildings and the total, "
          f"{table['day'].nunique()} days) to {out}")
    return 0
