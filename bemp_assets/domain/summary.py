"""A short text summary of the warehouse, for the terminal after `make run`."""
from __future__ import annotations

from .connection import Target, connect, describe

from .status import stored_board_time

LAYER_TABLES = ["meta.variables", "raw.measurements", "raw.rejects", "raw.revisions", "raw.gateway_measurements",
                "raw.ipanel_trips", "raw.ipanel_charger_status", "raw.ipanel_charges", "clean.measurements",
                "agg.hourly", "agg.daily", "ops.commissioning_results", "ops.installation_status"]


def warehouse_summary(path: Target, live_within_s: int = 2 * 86400) -> str:
    """Rows per table, readings per source, rejects, and the stored board's colours with the
    instant it was judged at (``live_within_s``: the default freshness limit, see
    status.board_time)."""
    if not path.exists():
        return f"warehouse {path} does not exist yet: run `make run` or `bemp run` first"
    with connect(path, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        lines = [f"warehouse: {describe(path)}"]
        for table in LAYER_TABLES:
            count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            lines.append(f"  {table:<28} {count:>10,} rows")
        per_source = con.execute("""
            SELECT v.source, count(*), min(m.ts), max(m.ts)
            FROM raw.measurements m JOIN meta.variables v USING (variable_id)
            GROUP BY v.source ORDER BY v.source
        """).fetchall()
        for source, count, first, last in per_source:
            lines.append(f"  raw[{source}]: {count:,} readings, {first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC")
        rejects = con.execute("SELECT source_file, count(*) FROM raw.rejects GROUP BY ALL ORDER BY 1").fetchall()
        lines.append("  rejected rows: " + (", ".join(f"{f}: {n}" for f, n in rejects) if rejects else "none"))
        board = con.execute("SELECT status, count(*) FROM ops.installation_status WHERE level = 'sensor' GROUP BY ALL ORDER BY 1").fetchall()
        when = stored_board_time(con, live_within_s)
        lines.append("  sensors: " + (", ".join(f"{n} {s}" for s, n in board) + f" {when.header()}" if board and when
                                      else "no status board yet") + " (bemp status)")
        lines += _alarm_lines(con)
    return "\n".join(lines)


def _alarm_lines(con) -> list[str]:
    """Active alarms (a warehouse from before alarms existed has no board yet)."""
    from datetime import datetime, timezone

    from .alarms import summary_lines

    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ops' AND table_name = 'alarms_active'").fetchone()[0]:
        return ["  alarms: no board yet"]
    return summary_lines(con, datetime.now(timezone.utc))
