"""Operator views of commissioning: the green/red/black board, the missing-data heat map, and
series export. Pure functions over a DuckDB connection."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from .transform import LOCAL_DAY_SECONDS
from .warehouse import transaction

STATUS_COLUMNS = ["level", "device", "variable_id", "source", "status", "first_seen", "last_seen",
                  "completeness_7d", "freshness_s", "as_of"]


def installation_status(con: duckdb.DuckDBPyConnection, as_of: datetime, expected: list[str]) -> pd.DataFrame:
    """One row per sensor (variable) and one per device.

    * green: reported within its freshness threshold before ``as_of``;
    * red: stopped (silent for longer than the threshold), with ``last_seen``;
    * black: expected (``expected`` lists variable ids) but never reported.

    A device is green when any of its sensors is green, black when all are black, else red:
    a gateway can be green while one of its sensors is red. ``completeness_7d`` is samples
    present over samples expected in the 7 days before ``as_of``. Needs the ``_rules`` table
    (commissioning.register_rules).
    """
    start = as_of - timedelta(days=7)
    con.register("_expected", pd.DataFrame({"variable_id": pd.Series(expected, dtype=object)}))
    sensors = con.execute("""
        WITH seen AS (
            SELECT variable_id, min(ts) AS first_seen, max(ts) AS last_seen,
                   count(*) FILTER (WHERE ts >= $start) AS recent
            FROM raw.measurements WHERE ts <= $as_of GROUP BY ALL
        ),
        known AS (
            SELECT v.variable_id, v.device, v.source, u.interval_s, u.freshness_s
            FROM meta.variables v JOIN _rules u USING (variable_id)
            UNION ALL
            SELECT e.variable_id, split_part(e.variable_id, '.', 1), NULL, NULL, NULL
            FROM _expected e ANTI JOIN meta.variables v USING (variable_id)
        )
        SELECT 'sensor' AS level, k.device, k.variable_id, k.source,
               CASE WHEN s.last_seen IS NULL THEN 'black'
                    WHEN epoch($as_of::TIMESTAMPTZ) - epoch(s.last_seen) <= k.freshness_s THEN 'green'
                    ELSE 'red' END AS status,
               s.first_seen, s.last_seen,
               CASE WHEN s.last_seen IS NOT NULL
                    THEN least(1.0, s.recent * k.interval_s / (7 * 86400.0)) END AS completeness_7d,
               k.freshness_s, $as_of::TIMESTAMPTZ AS as_of
        FROM known k LEFT JOIN seen s USING (variable_id)
    """, {"start": start, "as_of": as_of}).df()
    con.unregister("_expected")
    devices = sensors.groupby("device", as_index=False).agg(
        source=("source", "first"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max"),
        completeness_7d=("completeness_7d", "mean"), freshness_s=("freshness_s", "max"), as_of=("as_of", "first"),
        green=("status", lambda s: (s == "green").any()), black=("status", lambda s: (s == "black").all()))
    devices["status"] = devices["green"].map({True: "green", False: "red"}).where(~devices["black"], "black")
    devices = devices.assign(level="device", variable_id=None)[STATUS_COLUMNS]
    return pd.concat([devices, sensors[STATUS_COLUMNS]], ignore_index=True).sort_values(
        ["device", "level", "variable_id"], ignore_index=True, na_position="first")


def write_status(con: duckdb.DuckDBPyConnection, board: pd.DataFrame) -> None:
    """Replace ops.installation_status with ``board`` (one snapshot: the latest)."""
    con.register("_board", board)
    with transaction(con):
        con.execute("DELETE FROM ops.installation_status")
        con.execute(f"INSERT INTO ops.installation_status SELECT {', '.join(STATUS_COLUMNS)} FROM _board")
    con.unregister("_board")


def format_board(board: pd.DataFrame) -> str:
    """The board as aligned text for the terminal."""
    if not len(board):
        return "no sensors known yet"
    icon = {"green": "● green", "red": "● red  ", "black": "○ black"}
    shown = board.assign(
        status=board["status"].map(icon),
        what=board["variable_id"].fillna("(device)"),
        first_seen=board["first_seen"].map(_stamp), last_seen=board["last_seen"].map(_stamp),
        completeness_7d=board["completeness_7d"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"),
    )[["device", "what", "status", "first_seen", "last_seen", "completeness_7d"]]
    return shown.to_string(index=False)


def _stamp(value) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def coverage_matrix(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, tz: str) -> pd.DataFrame:
    """variable x site-local day: samples present / samples expected in that local day (0..1;
    a 23-hour DST day with every sample is 1)."""
    frame = con.execute(f"""
        SELECT variable_id, bucket AS day, least(1.0, n * interval_s / {LOCAL_DAY_SECONDS}) AS coverage
        FROM (SELECT m.variable_id, timezone($tz, m.ts)::DATE AS bucket, count(*) AS n,
                     any_value(v.expected_interval_s) AS interval_s
              FROM raw.measurements m JOIN meta.variables v USING (variable_id)
              WHERE m.ts >= $start AND m.ts < $end GROUP BY ALL)
    """, {"start": start, "end": end, "tz": tz}).df()
    days = pd.date_range(pd.Timestamp(start).tz_convert(tz).date(), pd.Timestamp(end).tz_convert(tz).date(),
                         freq="D", inclusive="left").date
    if not len(frame):
        return pd.DataFrame(columns=days, dtype=float)
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame.pivot(index="variable_id", columns="day", values="coverage").reindex(columns=days).fillna(0.0)


def render_heatmap(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """A PNG of the coverage matrix: red = missing, green = complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    height = max(2.5, 0.28 * len(matrix) + 1.5)
    fig, ax = plt.subplots(figsize=(min(24, max(6, 0.03 * len(matrix.columns) + 4)), height), dpi=80)
    image = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(matrix)), labels=list(matrix.index), fontsize=7)
    if len(matrix.columns):
        step = max(1, len(matrix.columns) // 12)
        ax.set_xticks(range(0, len(matrix.columns), step), labels=[str(d) for d in matrix.columns[::step]],
                      rotation=45, ha="right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="coverage", fraction=0.03)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


LAYERS = {
    "raw": ("raw.measurements", "ts", "ts, value, source_file, source_line"),
    "clean": ("clean.measurements", "ts", "ts, value, chain, chain_version"),
    "hourly": ("agg.hourly", "hour", "hour, mean, min, max, sum, n, coverage"),
}


class ExportError(ValueError):
    """Unknown variable, empty range or bad layer; the message says which and what exists."""


def export_series(con: duckdb.DuckDBPyConnection, variable: str, start: datetime, end: datetime,
                  layer: str, out: Path) -> int:
    """Write one variable's rows in [start, end) of ``layer`` to CSV; returns the row count."""
    if layer not in LAYERS:
        raise ExportError(f"unknown layer {layer!r}; expected one of {sorted(LAYERS)}")
    known = [v for (v,) in con.execute("SELECT variable_id FROM meta.variables ORDER BY 1").fetchall()]
    if variable not in known:
        close = [v for v in known if variable.lower() in v.lower()][:10]
        hint = f"; did you mean {close}?" if close else f"; {len(known)} variables exist (bemp status lists them)"
        raise ExportError(f"unknown variable {variable!r}{hint}")
    table, time_column, columns = LAYERS[layer]
    frame = con.execute(
        f"SELECT variable_id, {columns} FROM {table} WHERE variable_id = $v AND {time_column} >= $start "
        f"AND {time_column} < $end ORDER BY {time_column}", {"v": variable, "start": start, "end": end}).df()
    if not len(frame):
        first, last = con.execute(f"SELECT min({time_column}), max({time_column}) FROM {table} WHERE variable_id = ?", [variable]).fetchone()
        span = f"its {layer} data runs {first} .. {last}" if first else f"it has no {layer} rows at all"
        raise ExportError(f"{variable}: no {layer} rows between {start} and {end}; {span}")
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    return len(frame)
