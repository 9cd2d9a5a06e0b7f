"""Operator views of commissioning: the green/red/black board, the missing-data heat map, and
series export. Pure functions over a DuckDB connection."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .commissioning import OUT_OF_SERVICE_DAYS, plain_duration, rule_thresholds, variable_labels
from .config import BempConfig
from .transform import LOCAL_DAY_SECONDS
from .warehouse import registered, transaction

STATUS_COLUMNS = ["level", "device", "variable_id", "source", "status", "first_seen", "last_seen",
                  "completeness_7d", "freshness_s", "as_of", "incomplete_days", "no_data_days"]


@dataclass(frozen=True)
class BoardTime:
    """The instant a board is judged at, and why that one."""
    as_of: datetime
    newest: datetime | None  # the newest reading in the warehouse
    basis: str               # "now", "newest data" or "given"
    live_within_s: int       # data is live when something reported this recently

    @property
    def historical(self) -> bool:
        return self.basis == "newest data"

    def header(self) -> str:
        """``as of 2018-12-31 14:45 UTC (newest data; data is historical)`` and the like."""
        stamp = f"as of {pd.Timestamp(self.as_of).tz_convert('UTC'):%Y-%m-%d %H:%M} UTC"
        if self.basis == "given":
            return f"{stamp} (as asked)"
        if self.historical:
            return (f"{stamp} (newest data; data is historical: nothing reported in the last "
                    f"{plain_duration(self.live_within_s)})")
        return f"{stamp} (now; {'data is live' if self.newest is not None else 'no data yet'})"


def board_time(con: duckdb.DuckDBPyConnection, now: datetime, live_within_s: int, given: datetime | None = None) -> BoardTime:
    """When to judge the board: ``given`` if any; else now while some source reported within
    ``live_within_s`` (the default freshness limit, 2 d), else the newest reading's time, so
    that a historical warehouse is judged as it stood when its data ended, not red against
    today."""
    newest = con.execute("SELECT max(ts) FROM raw.measurements").fetchall()[0][0]
    if given is not None:
        return BoardTime(given, newest, "given", live_within_s)
    if newest is not None and (pd.Timestamp(now) - pd.Timestamp(newest)).total_seconds() > live_within_s:
        return BoardTime(newest, newest, "newest data", live_within_s)
    return BoardTime(now, newest, "now", live_within_s)


def stored_board_time(con: duckdb.DuckDBPyConnection, live_within_s: int) -> BoardTime | None:
    """How the stored board (ops.installation_status) was judged, read back from its ``as_of``
    and the newest reading: at the newest data (historical), after it (now), or before it
    (an instant asked for). None when no board is stored yet."""
    as_of, newest = con.execute("SELECT (SELECT max(as_of) FROM ops.installation_status), "
                                "(SELECT max(ts) FROM raw.measurements)").fetchall()[0]
    if as_of is None:
        return None
    basis = "newest data" if as_of == newest else "now" if newest is None or as_of > newest else "given"
    return BoardTime(as_of, newest, basis, live_within_s)


def current_board(con: duckdb.DuckDBPyConnection, config: BempConfig, now: datetime,
                  given: datetime | None = None) -> tuple[BoardTime, pd.DataFrame]:
    """The status board and the instant it is judged at: what the ops asset stores and what
    `bemp status` and the summary print. Works on a read-only connection."""
    when = board_time(con, now, int(config.commissioning.defaults.freshness), given or config.commissioning.as_of)
    return when, installation_status(con, rule_thresholds(con, config), when.as_of, config.expected_variables())


def installation_status(con: duckdb.DuckDBPyConnection, thresholds: pd.DataFrame, as_of: datetime,
                        expected: list[str]) -> pd.DataFrame:
    """One row per sensor (variable) and one per device.

    * green: reported within its freshness threshold before ``as_of``;
    * red: stopped (silent for longer than the threshold), with ``last_seen``;
    * black: expected (``expected`` lists variable ids) but never reported.

    A device is green when any of its sensors is green, black when all are black, else red:
    a gateway can be green while one of its sensors is red. ``completeness_7d`` is samples
    present over samples expected in the 7 days before ``as_of``. ``incomplete_days`` and
    ``no_data_days`` count the days up to ``as_of`` whose latest completeness verdict
    (ops.commissioning_results) is ``fail`` or ``no_data``; a device shows its worst sensor's.
    ``thresholds``: commissioning.rule_thresholds.
    """
    start = as_of - timedelta(days=7)
    sensors = _sensor_rows(con, thresholds, expected, start, as_of)
    devices = sensors.groupby("device", as_index=False).agg(
        source=("source", "first"), first_seen=("first_seen", "min"), last_seen=("last_seen", "max"),
        completeness_7d=("completeness_7d", "mean"), freshness_s=("freshness_s", "max"), as_of=("as_of", "first"),
        incomplete_days=("incomplete_days", "max"), no_data_days=("no_data_days", "max"),
        green=("status", lambda s: (s == "green").any()), black=("status", lambda s: (s == "black").all()))
    devices["status"] = devices["green"].map({True: "green", False: "red"}).where(~devices["black"], "black")
    devices = devices.assign(level="device", variable_id=None)[STATUS_COLUMNS]
    return pd.concat([devices, sensors[STATUS_COLUMNS]], ignore_index=True).sort_values(
        ["device", "level", "variable_id"], ignore_index=True, na_position="first")


def _sensor_rows(con: duckdb.DuckDBPyConnection, thresholds: pd.DataFrame, expected: list[str],
                 start: datetime, as_of: datetime) -> pd.DataFrame:
    """installation_status's sensor rows, before the devices' are derived from them."""
    with registered(con, _rules=thresholds, _expected=pd.DataFrame({"variable_id": pd.Series(expected, dtype=object)})):
        return con.execute("""
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
        ),
        latest AS (  -- the newest completeness verdict of each variable-day
            SELECT variable_id, day,
                   arg_max(coalesce(verdict, CASE WHEN passed THEN 'pass' ELSE 'fail' END), checked_at) AS verdict
            FROM ops.commissioning_results WHERE rule = 'completeness' AND day <= $as_of::DATE GROUP BY ALL
        ),
        days AS (
            SELECT variable_id, count(*) FILTER (WHERE verdict = 'fail') AS incomplete_days,
                   count(*) FILTER (WHERE verdict = 'no_data') AS no_data_days
            FROM latest GROUP BY ALL
        )
        SELECT 'sensor' AS level, k.device, k.variable_id, k.source,
               CASE WHEN s.last_seen IS NULL THEN 'black'
                    WHEN epoch($as_of::TIMESTAMPTZ) - epoch(s.last_seen) <= k.freshness_s THEN 'green'
                    ELSE 'red' END AS status,
               s.first_seen, s.last_seen,
               CASE WHEN s.last_seen IS NOT NULL
                    THEN least(1.0, s.recent * k.interval_s / (7 * 86400.0)) END AS completeness_7d,
               k.freshness_s, $as_of::TIMESTAMPTZ AS as_of,
               coalesce(d.incomplete_days, 0) AS incomplete_days, coalesce(d.no_data_days, 0) AS no_data_days
        FROM known k LEFT JOIN seen s USING (variable_id) LEFT JOIN days d USING (variable_id)
    """, {"start": start, "as_of": as_of}).df()


def write_status(con: duckdb.DuckDBPyConnection, board: pd.DataFrame) -> None:
    """Replace ops.installation_status with ``board`` (one snapshot: the latest)."""
    con.register("_board", board)
    columns = ", ".join(STATUS_COLUMNS)
    with transaction(con):
        con.execute("DELETE FROM ops.installation_status")
        con.execute(f"INSERT INTO ops.installation_status ({columns}) SELECT {columns} FROM _board")
    con.unregister("_board")


def format_board(board: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """The board as aligned text for the terminal: readable names, and for a red sensor how
    long it has been silent against its limit."""
    if not len(board):
        return "no sensors known yet"
    icon = {"green": "● green", "red": "● red  ", "black": "○ black"}
    labels = labels or {}
    silent = (pd.to_datetime(board["as_of"], utc=True) - pd.to_datetime(board["last_seen"], utc=True)).dt.total_seconds()
    shown = board.assign(
        status=board["status"].map(icon),
        what=board["variable_id"].map(lambda v: "(device)" if v is None or pd.isna(v) else labels.get(v, v)),
        last_seen=board["last_seen"].map(_stamp),
        silent=[f"silent for {plain_duration(s)} (limit {plain_duration(f)})" if status == "red" and pd.notna(s) and pd.notna(f)
                else "" for status, s, f in zip(board["status"], silent, board["freshness_s"])],
        completeness_7d=board["completeness_7d"].map(lambda v: "" if pd.isna(v) else f"{v:.0%}"),
        incomplete_days=board["incomplete_days"].map(_count),
        no_data_days=board["no_data_days"].map(_count),
    )[["device", "what", "status", "last_seen", "silent", "completeness_7d", "incomplete_days", "no_data_days"]]
    return shown.to_string(index=False)


def _count(value) -> str:
    return "" if pd.isna(value) or not value else str(int(value))


def _stamp(value) -> str:
    return "" if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def source_lifetimes(con: duckdb.DuckDBPyConnection) -> list[tuple[str, datetime, datetime, list[str]]]:
    """(source, first reading, last reading, its variables) per source, in name order."""
    return con.execute("""
        SELECT v.source, min(m.ts), max(m.ts), list(DISTINCT v.variable_id ORDER BY v.variable_id)
        FROM raw.measurements m JOIN meta.variables v USING (variable_id) GROUP BY ALL ORDER BY 1
    """).fetchall()


def coverage_matrix(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, tz: str,
                    variables: list[str] | None = None) -> pd.DataFrame:
    """variable x site-local day: samples present / samples expected in that local day (0..1;
    a 23-hour DST day with every sample is 1), for ``variables`` (default: all)."""
    frame = con.execute(f"""
        SELECT variable_id, bucket AS day, least(1.0, n * interval_s / {LOCAL_DAY_SECONDS}) AS coverage
        FROM (SELECT m.variable_id, timezone($tz, m.ts)::DATE AS bucket, count(*) AS n,
                     any_value(v.expected_interval_s) AS interval_s
              FROM raw.measurements m JOIN meta.variables v USING (variable_id)
              WHERE m.ts >= $start AND m.ts < $end AND ($variables IS NULL OR list_contains($variables, m.variable_id))
              GROUP BY ALL)
    """, {"start": start, "end": end, "tz": tz, "variables": variables}).df()
    days = pd.date_range(pd.Timestamp(start).tz_convert(tz).date(), pd.Timestamp(end).tz_convert(tz).date(),
                         freq="D", inclusive="left").date
    if not len(frame):
        return pd.DataFrame(index=pd.Index(variables or [], name="variable_id"), columns=days, dtype=float).fillna(0.0)
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    matrix = frame.pivot(index="variable_id", columns="day", values="coverage").reindex(columns=days)
    return (matrix.reindex(index=sorted(variables)) if variables else matrix).fillna(0.0)


def source_heatmaps(con: duckdb.DuckDBPyConnection, tz: str, folder: Path) -> list[tuple[str, pd.DataFrame, Path]]:
    """One coverage heat map per source over its own life (first to last reading), written as
    ``folder/coverage_<source>.png``; returns (source, matrix, path) per source."""
    labels = variable_labels(con)
    maps = []
    for source, first, last, variables in source_lifetimes(con):
        start = pd.Timestamp(first).tz_convert(tz).normalize()
        end = pd.Timestamp(last).tz_convert(tz).normalize() + pd.Timedelta(days=1)
        matrix, gaps = drop_out_of_service(coverage_matrix(con, start.to_pydatetime(), end.to_pydatetime(), tz, variables))
        left_out = "".join(f"\nout of service, left out: {a} .. {b}" for a, b in gaps)
        title = (f"{source}, {matrix.columns[0]} .. {matrix.columns[-1]}{left_out}\n"
                 f"readings present / expected per site-local day")
        maps.append((source, matrix, render_heatmap(matrix.rename(index=labels), folder / f"coverage_{source}.png", title)))
    return maps


def drop_out_of_service(matrix: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple]]:
    """The matrix without the stretches of more than OUT_OF_SERVICE_DAYS days in which no
    variable of the source has a reading (the source was out of service: commissioning does not
    judge them, and drawn they would be a wall of red); returns the stretches left out."""
    silent = (matrix.fillna(0.0) <= 0).all(axis=0).to_numpy().astype(int)
    edges = np.diff(np.concatenate(([0], silent, [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long = (ends - starts) > OUT_OF_SERVICE_DAYS
    keep = np.ones(len(silent), dtype=bool)
    for first, stop in zip(starts[long], ends[long]):
        keep[first:stop] = False
    gaps = [(matrix.columns[first], matrix.columns[stop - 1]) for first, stop in zip(starts[long], ends[long])]
    return matrix.loc[:, keep], gaps


HEATMAP_MAX_PX = 900  # the Dagster UI's metadata dialog shows about this width without scrolling
HEATMAP_MIN_PX = 640  # room for the title and the colour scale of a source with few days


def render_heatmap(matrix: pd.DataFrame, path: Path, title: str) -> Path:
    """A PNG of the coverage matrix at most ``HEATMAP_MAX_PX`` wide: red = no readings, yellow =
    half, green = all expected readings, with a labelled colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    dpi = 100
    width = min(HEATMAP_MAX_PX, max(HEATMAP_MIN_PX, 420 + 6 * len(matrix.columns))) / dpi
    fig, ax = plt.subplots(figsize=(width, 1.8 + 0.22 * max(1, len(matrix))), dpi=dpi)
    image = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(matrix)), labels=list(matrix.index), fontsize=7)
    if len(matrix.columns):
        step = max(1, -(-len(matrix.columns) // 8))
        ax.set_xticks(range(0, len(matrix.columns), step), labels=[str(d) for d in matrix.columns[::step]],
                      rotation=30, ha="right", fontsize=7)
    ax.set_title(title, fontsize=8, loc="left")
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, ticks=[0, 0.25, 0.5, 0.75, 1])
    bar.ax.set_yticklabels(["0 %", "25 %", "50 %", "75 %", "100 %"], fontsize=7)
    bar.set_label("share of expected readings", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
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
