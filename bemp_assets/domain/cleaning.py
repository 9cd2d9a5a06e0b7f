"""raw -> clean: each variable through its filter chain, one time window at a time.

Always recomputed from raw, never from clean. The window's readings come with one reading of
context on each side per variable (the last before the window, the first after it), so that
de-accumulation, gap spreading and set-point decisions at the window edges match what a
run over the whole history would produce; results are then trimmed to the window.

Only filtered rows are stored (clean.stored). A variable without a chain is clean as it came,
so clean.measurements, a view, shows its raw readings over the spans clean has processed
(clean.passthrough) instead of a copy: half the writes of a backfill (BENCHMARKS.md, issue 14).
A reading raw revises inside such a span shows in clean at once; for a stored variable, when
clean runs again (automation re-runs it after raw).

The write is a diff, not a blind rewrite: rows whose (variable, ts, value, chain version) are
unchanged stay untouched, so re-applying a changed chain rewrites only the variables it
affects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from .chains import FilterChain, assign_chains
from .filters import COLUMNS, TimestepParams, apply_chain
from .warehouse import SPANS, STORED, holds_rows, registered, temp_table, upsert, write_transaction

@dataclass
class CleanReport:
    rows: int = 0
    inserted: int = 0
    deleted: int = 0
    changed_variables: set[str] = field(default_factory=set)
    passed_through: int = 0   # raw readings clean.measurements shows as they are (no chain)
    chains: dict[str, dict] = field(default_factory=dict)

    def merge(self, other: "CleanReport") -> None:
        self.rows += other.rows
        self.inserted += other.inserted
        self.deleted += other.deleted
        self.passed_through += other.passed_through
        self.changed_variables |= other.changed_variables
        for name, info in other.chains.items():
            mine = self.chains.setdefault(name, {"version": info["version"], "variables": info["variables"], "filters": []})
            if not mine["filters"]:
                mine["filters"] = [dict(f) for f in info["filters"]]
            else:
                for total, part in zip(mine["filters"], info["filters"]):
                    for key, value in part.items():
                        if key != "filter":
                            total[key] = total.get(key, 0) + value


def clean_profile(chain: FilterChain | None, kind: str, interval_s: int) -> tuple[str, int]:
    """(kind, sampling interval) of a variable once its chain has run."""
    if chain is None:
        return kind, interval_s
    for name, params in chain.steps:
        if name == "deaccumulate":
            kind = "interval"
        elif name == "timestep" and isinstance(params, TimestepParams):
            interval_s = params.step_seconds
    return kind, interval_s


# readings of one chain that go through pandas at a time: clean's memory is bounded by this,
# not by the window's length or its number of variables (a 31-day chunk of 100 meters at one
# sample a minute is 4.5 M readings, about 1 GB of pandas at once; BENCHMARKS.md, issue 14)
BATCH_ROWS = 500_000
FILTERED = "_clean_filtered"  # temp table: the chained variables' clean rows of the window
# how far from a window the reading next to it is looked for first (_context)
CONTEXT_NEAR = timedelta(days=2)


def _window_counts(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> dict[str, int]:
    """Readings per variable inside [start, end)."""
    return dict(con.execute("SELECT variable_id, count(*) FROM raw.measurements WHERE ts >= $start AND ts < $end "
                            "GROUP BY variable_id", {"start": start, "end": end}).fetchall())


def batches(ids: list[str], counts: dict[str, int], limit: int) -> list[list[str]]:
    """``ids`` sorted and cut into consecutive groups of at most ``limit`` readings (a variable
    with more is a group alone). Every filter works per variable, so a chain over the groups one
    by one gives the rows one pass over all of them gives, in the same (variable, ts) order."""
    groups: list[list[str]] = []
    size = 0
    for variable_id in sorted(ids):
        rows = counts.get(variable_id, 0)
        if not groups or (size and size + rows > limit):
            groups.append([])
            size = 0
        groups[-1].append(variable_id)
        size += rows
    return groups


def _context(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, ids: list[str]) -> pd.DataFrame:
    """Per variable of ``ids``, its last reading before the window and its first after it.

    Each is looked for within CONTEXT_NEAR of the window, and further away only for the
    variables not found there: one scan of all history on each side of every chunk loaded the
    whole raw table into DuckDB (a year of 100 meters, 480 MB on disk, filled the 512MB cap in
    the first chunk; a month never did: BENCHMARKS.md, issue 14, sixth round). Row groups
    outside the bounds are skipped by their ts zone maps.

    Plain statements, not one with the window's readings: over 4.3 M to 13 M raw rows DuckDB
    1.5.5 never finished a single query with a CTE used three times and two joins back to it
    (threads waiting on each other). The reading next to the window is taken with arg_max /
    arg_min (one row per key in raw)."""
    near = CONTEXT_NEAR
    sides = (("max", "arg_max", [(start - near, start), (None, start - near)]),
             ("min", "arg_min", [(end, end + near), (end + near, None)]))
    parts = []
    for first, value, spans in sides:
        missing = ids
        for low, high in spans:
            if missing:
                parts.append(_nearest(con, first, value, missing, low, high))
                missing = sorted(set(missing) - set(parts[-1]["variable_id"]))
    return pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)


def _nearest(con: duckdb.DuckDBPyConnection, first: str, value: str, ids: list[str],
             low: datetime | None, high: datetime | None) -> pd.DataFrame:
    """Per variable of ``ids`` with readings in [low, high) (None: unbounded), the reading
    ``first`` (min or max) picks by ts."""
    bounds = {"low": low, "high": high}
    where = "".join(f" AND ts {op} ${name}" for name, op in (("low", ">="), ("high", "<")) if bounds[name] is not None)
    return con.execute(f"SELECT variable_id, {first}(ts) AS ts, {value}(value, ts) AS value FROM raw.measurements "
                       f"WHERE variable_id IN (SELECT unnest($ids::VARCHAR[])){where} GROUP BY variable_id",
                       {"ids": ids, **{k: v for k, v in bounds.items() if v is not None}}).df()


def _readings(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, ids: list[str],
              context: pd.DataFrame) -> pd.DataFrame:
    """Readings of the variables ``ids`` inside the window, plus their rows of ``context``."""
    inside = con.execute("SELECT variable_id, ts, value FROM raw.measurements WHERE ts >= $start AND ts < $end "
                         "AND variable_id IN (SELECT unnest($ids::VARCHAR[]))", {"start": start, "end": end, "ids": ids}).df()
    beside = context[context["variable_id"].isin(ids)]
    return pd.concat([p for p in (inside, beside) if len(p)] or [inside], ignore_index=True)


def _filter_chain(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime, chain: FilterChain,
                  ids: list[str], variables: pd.DataFrame, counts: dict[str, int], context: pd.DataFrame) -> dict:
    """Run ``chain`` over the window's readings of ``ids``, batch by batch, appending the rows
    inside the window to FILTERED; return the chain's report (version, variables, filter counts)."""
    intervals, kinds = variables["expected_interval_s"], variables["kind"]
    report = CleanReport()
    for batch in batches(ids, counts, BATCH_ROWS):
        out, stats = apply_chain(_readings(con, start, end, batch, context), list(chain.steps), intervals,
                                 kinds.loc[batch])
        out = out.loc[(out["ts"] >= start) & (out["ts"] < end), COLUMNS]
        with registered(con, _clean_batch=out):
            con.execute(f"INSERT INTO {FILTERED} SELECT variable_id, ts::TIMESTAMPTZ, value, $name, $version "
                        "FROM _clean_batch", {"name": chain.name, "version": chain.version})
        report.merge(CleanReport(chains={chain.name: {"version": chain.version, "variables": len(ids),
                                                      "filters": [s.as_dict() for s in stats]}}))
    return report.chains.get(chain.name, {"version": chain.version, "variables": len(ids), "filters": []})


def _chain_groups(assignment: dict[str, FilterChain | None]) -> dict[str, tuple[FilterChain, list[str]]]:
    """Per chain name: the chain and the variables it applies to."""
    groups: dict[str, tuple[FilterChain, list[str]]] = {}
    for variable_id, chain in assignment.items():
        if chain is not None:
            groups.setdefault(chain.name, (chain, []))[1].append(variable_id)
    return groups


def _profiles(assignment: dict[str, FilterChain | None], variables: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """meta.clean_variables' rows: each variable's chain and its kind and interval once cleaned."""
    return pd.DataFrame([
        (v, c.name if c else None, c.version if c else None,
         *clean_profile(c, variables.at[v, "kind"], int(variables.at[v, "expected_interval_s"])), now)
        for v, c in assignment.items()
    ], columns=["variable_id", "chain", "chain_version", "clean_kind", "clean_interval_s", "updated_at"])


def rebuild_clean(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime,
                  chains: list[FilterChain], now: datetime) -> CleanReport:
    """Recompute clean for [start, end), rewriting only variables that changed.

    A variable without a chain is not copied: clean.measurements is a view that shows its raw
    readings over the spans clean has processed (clean.passthrough), so its window costs one
    span update instead of a copy of every reading. The others go through their chain in
    pandas, chain by chain, vectorised over BATCH_ROWS readings of its variables at a time;
    their rows are gathered in a temp table (DuckDB's: it spills under the memory cap) and
    written to clean.stored with the spans, in one transaction.
    """
    variables = con.execute(
        "SELECT variable_id, device, parameter, category, kind, expected_interval_s FROM meta.variables").df()
    assignment = assign_chains(variables, chains)
    by_variable = variables.set_index("variable_id")
    groups = _chain_groups(assignment)
    chain_ids = [v for _, ids in groups.values() for v in ids]
    counts = _window_counts(con, start, end)
    # the unchained variables with readings in the window: they pass through it
    passing = sorted(v for v, chain in assignment.items() if chain is None and counts.get(v))
    report = CleanReport()
    window = {"start": start, "end": end}
    # the window will store FILTERED's rows and show every reading of the passing variables
    passed = sum(counts[v] for v in passing)

    def write(con: duckdb.DuckDBPyConnection) -> tuple[int, set[str], int, int, int]:
        stored = _rewrite_stored if holds_rows(con, STORED, start, end) else _insert_stored
        changed, deleted, inserted = stored(con, window)
        changed |= _pass_through(con, window, passing, chain_ids)
        # rows that changed are replaced, new ones inserted, equal ones not written: no key is
        # needed, and concurrent clean runs (DuckLake) neither duplicate nor conflict (upsert)
        upsert(con, "meta.clean_variables", "profiles", ["variable_id"], ignore=["updated_at"])
        return con.execute(f"SELECT count(*) FROM {FILTERED}").fetchone()[0] + passed, changed, deleted, inserted, passed
    with temp_table(con, FILTERED, f"SELECT {CLEAN_COLUMNS} FROM {STORED} LIMIT 0"):
        if chain_ids:
            context = _context(con, start, end, chain_ids)
            for name, (chain, ids) in groups.items():
                report.chains[name] = _filter_chain(con, start, end, chain, ids, by_variable, counts, context)
        with registered(con, profiles=_profiles(assignment, by_variable, now)):
            (report.rows, report.changed_variables, report.deleted, report.inserted,
             report.passed_through) = write_transaction(con, write, what="write clean")
    return report


CLEAN_COLUMNS = "variable_id, ts, value, chain, chain_version"


def _insert_stored(con: duckdb.DuckDBPyConnection, window: dict) -> tuple[set[str], int, int]:
    """clean.stored holding nothing in the window (a first run, a backfill): the chained
    variables' rows are inserted without comparing. Returns (variables written, deleted, inserted)."""
    inserted = con.execute(f"INSERT INTO {STORED} ({CLEAN_COLUMNS}) SELECT {CLEAN_COLUMNS} FROM {FILTERED}").fetchone()[0]
    changed = {v for (v,) in con.execute(f"SELECT DISTINCT variable_id FROM {FILTERED}").fetchall()}
    return changed, 0, int(inserted)


def _rewrite_stored(con: duckdb.DuckDBPyConnection, window: dict) -> tuple[set[str], int, int]:
    """Make clean.stored's window equal FILTERED, rewriting only variables whose rows differ
    (a variable no longer chained loses its stored rows: the spans show its raw readings);
    return those variables and the rows deleted and inserted.

    A variable's rows are compared by count and an order-independent fingerprint
    (sum of hash(ts, value, chain, chain_version)); an unchanged variable is not touched at all.
    ``window``: FILTERED's start and end."""
    with temp_table(con, "_changed", f"""
        WITH old AS (SELECT variable_id, count(*) AS n, sum(hash(ts, value, chain, chain_version)) AS h
                     FROM {STORED} WHERE ts >= $start AND ts < $end GROUP BY ALL),
             new AS (SELECT variable_id, count(*) AS n, sum(hash(ts, value, chain, chain_version)) AS h
                     FROM {FILTERED} GROUP BY ALL)
        SELECT variable_id FROM old FULL JOIN new USING (variable_id)
        WHERE old.n IS DISTINCT FROM new.n OR old.h IS DISTINCT FROM new.h
    """, window):
        changed = {v for (v,) in con.execute("SELECT variable_id FROM _changed").fetchall()}
        if not changed:
            return changed, 0, 0
        deleted = con.execute(f"DELETE FROM {STORED} WHERE ts >= $start AND ts < $end "
                              "AND variable_id IN (SELECT variable_id FROM _changed)", window).fetchone()[0]
        inserted = con.execute(f"INSERT INTO {STORED} ({CLEAN_COLUMNS}) "
                               f"SELECT {CLEAN_COLUMNS} FROM {FILTERED} SEMI JOIN _changed USING (variable_id)").fetchone()[0]
    return changed, int(deleted), int(inserted)


# clean.passthrough after a window: the unchained variables ($adding) gain [$start, $end), merged
# with their spans that overlap or touch it; the chained ones ($removing) keep what lies outside it
SPANS_AFTER = f"""
    WITH spans AS (
        SELECT variable_id, start_ts, end_ts FROM {SPANS} WHERE variable_id IN (SELECT unnest($adding::VARCHAR[]))
        UNION ALL
        SELECT unnest($adding::VARCHAR[]) AS variable_id, $start::TIMESTAMPTZ AS start_ts, $end::TIMESTAMPTZ AS end_ts
    ), reached AS (
        SELECT *, max(end_ts) OVER (PARTITION BY variable_id ORDER BY start_ts, end_ts
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
        FROM spans
    ), islands AS (
        SELECT *, sum(CASE WHEN reached >= start_ts THEN 0 ELSE 1 END)
                      OVER (PARTITION BY variable_id ORDER BY start_ts, end_ts ROWS UNBOUNDED PRECEDING) AS island
        FROM reached
    )
    SELECT variable_id, min(start_ts) AS start_ts, max(end_ts) AS end_ts FROM islands GROUP BY variable_id, island
    UNION ALL
    SELECT variable_id, start_ts, least(end_ts, $start) FROM {SPANS}
    WHERE variable_id IN (SELECT unnest($removing::VARCHAR[])) AND start_ts < $start
    UNION ALL
    SELECT variable_id, greatest(start_ts, $end), end_ts FROM {SPANS}
    WHERE variable_id IN (SELECT unnest($removing::VARCHAR[])) AND end_ts > $end
"""


def _pass_through(con: duckdb.DuckDBPyConnection, window: dict, passing: list[str], chained: list[str]) -> set[str]:
    """Let clean.measurements show the window's raw readings of the ``passing`` variables
    (unchained, with readings in the window) and stop showing those of the ``chained`` ones
    (their rows are in clean.stored now): their spans in clean.passthrough are rewritten, and
    only when the window changes them (a re-run writes nothing). A variable gains the window
    only where raw holds a reading of it, as a copy would have held it: the spans then depend
    on the data, not on which variables a run knew. Returns the passing variables whose
    readings in the window were not shown before."""
    adding = [v for (v,) in con.execute(f"""
        SELECT u.variable_id FROM (SELECT unnest($ids::VARCHAR[]) AS variable_id) u
        ANTI JOIN {SPANS} p ON p.variable_id = u.variable_id AND p.start_ts <= $start AND p.end_ts >= $end
        ORDER BY 1
    """, {**window, "ids": passing}).fetchall()]
    removing = [v for (v,) in con.execute(f"""
        SELECT DISTINCT variable_id FROM {SPANS}
        WHERE variable_id IN (SELECT unnest($ids::VARCHAR[])) AND start_ts < $end AND end_ts > $start
    """, {**window, "ids": chained}).fetchall()]
    if not adding and not removing:
        return set()
    with temp_table(con, "_spans", SPANS_AFTER, {**window, "adding": adding, "removing": removing}):
        con.execute(f"DELETE FROM {SPANS} WHERE variable_id IN (SELECT unnest($ids::VARCHAR[]))",
                    {"ids": adding + removing})
        con.execute(f"INSERT INTO {SPANS} SELECT variable_id, start_ts, end_ts FROM _spans")
    return set(adding)


def before_after(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime,
                 chains: list[FilterChain], rows: int = 12) -> str:
    """Markdown table of one filtered variable, raw next to clean, for the UI."""
    found = con.execute("""
        SELECT variable_id, chain FROM meta.clean_variables
        WHERE chain IS NOT NULL AND variable_id IN (SELECT variable_id FROM clean.measurements WHERE ts >= $start AND ts < $end)
        ORDER BY chain, variable_id LIMIT 1
    """, {"start": start, "end": end}).fetchone()
    if found is None:
        return "_no filtered variable in this window_"
    variable, chain = found
    table = con.execute("""
        SELECT coalesce(r.ts, c.ts) AS ts, r.value AS raw, c.value AS clean
        FROM (SELECT ts, value FROM raw.measurements WHERE variable_id = $v AND ts >= $start AND ts < $end) r
        FULL JOIN (SELECT ts, value FROM clean.measurements WHERE variable_id = $v AND ts >= $start AND ts < $end) c USING (ts)
        ORDER BY 1 LIMIT $n
    """, {"v": variable, "start": start, "end": end, "n": rows}).df()
    return f"**{variable}** (chain `{chain}`)\n\n" + table.to_markdown(index=False)
