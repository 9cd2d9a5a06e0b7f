"""raw -> clean: each variable through its filter chain, one time window at a time.

Always recomputed from raw, never from clean. The window's readings come with one reading of
context on each side per variable (the last before the window, the first after it), so that
de-accumulation, gap spreading and set-point decisions at the window edges match what a
run over the whole history would produce; results are then trimmed to the window.

The write is a diff, not a blind rewrite: rows whose (variable, ts, value, chain version) are
unchanged stay untouched, so re-applying a changed chain rewrites only the variables it
affects.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandas as pd

from .chains import FilterChain, assign_chains
from .filters import COLUMNS, TimestepParams, apply_chain
from .warehouse import transaction

CLEAN_DDL = """
ALTER TABLE clean.measurements ADD COLUMN IF NOT EXISTS chain VARCHAR;
ALTER TABLE clean.measurements ADD COLUMN IF NOT EXISTS chain_version VARCHAR;
CREATE TABLE IF NOT EXISTS meta.clean_variables (
    variable_id VARCHAR PRIMARY KEY,
    chain VARCHAR,
    chain_version VARCHAR,
    clean_kind VARCHAR NOT NULL,
    clean_interval_s INTEGER NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
"""


@dataclass
class CleanReport:
    rows: int = 0
    inserted: int = 0
    deleted: int = 0
    changed_variables: set[str] = field(default_factory=set)
    chains: dict[str, dict] = field(default_factory=dict)

    def merge(self, other: "CleanReport") -> None:
        self.rows += other.rows
        self.inserted += other.inserted
        self.deleted += other.deleted
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


def raw_with_context(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pd.DataFrame:
    return con.execute("""
        WITH before AS (SELECT variable_id, max(ts) AS ts FROM raw.measurements WHERE ts < $start GROUP BY ALL),
             after AS (SELECT variable_id, min(ts) AS ts FROM raw.measurements WHERE ts >= $end GROUP BY ALL)
        SELECT variable_id, ts, value FROM raw.measurements WHERE ts >= $start AND ts < $end
        UNION ALL SELECT m.variable_id, m.ts, m.value FROM raw.measurements m JOIN before USING (variable_id, ts)
        UNION ALL SELECT m.variable_id, m.ts, m.value FROM raw.measurements m JOIN after USING (variable_id, ts)
    """, {"start": start, "end": end}).df()


def rebuild_clean(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime,
                  chains: list[FilterChain], now: datetime) -> CleanReport:
    """Recompute clean.measurements for [start, end) and write only what changed."""
    con.execute(CLEAN_DDL)
    variables = con.execute(
        "SELECT variable_id, device, parameter, category, kind, expected_interval_s FROM meta.variables").df()
    assignment = assign_chains(variables, chains)
    intervals = variables.set_index("variable_id")["expected_interval_s"]
    kinds = variables.set_index("variable_id")["kind"]
    raw = raw_with_context(con, start, end)
    groups: dict[str | None, list[str]] = defaultdict(list)
    by_name = {None: None}
    for variable_id, chain in assignment.items():
        key = chain.name if chain else None
        groups[key].append(variable_id)
        by_name[key] = chain
    report, pieces = CleanReport(), []
    for key, ids in groups.items():
        chain = by_name[key]
        part = raw[raw["variable_id"].isin(ids)]
        if chain is None:
            out = part
        else:
            out, stats = apply_chain(part, list(chain.steps), intervals, kinds.loc[ids])
            report.chains[chain.name] = {"version": chain.version, "variables": len(ids),
                                         "filters": [s.as_dict() for s in stats]}
        out = out[(out["ts"] >= start) & (out["ts"] < end)]
        pieces.append(out[COLUMNS].assign(chain=chain.name if chain else None,
                                          chain_version=chain.version if chain else None))
    new = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=[*COLUMNS, "chain", "chain_version"])
    profiles = pd.DataFrame([
        (v, c.name if c else None, c.version if c else None, *clean_profile(c, kinds[v], int(intervals[v])), now)
        for v, c in assignment.items()
    ], columns=["variable_id", "chain", "chain_version", "clean_kind", "clean_interval_s", "updated_at"])
    with transaction(con):
        _write_window(con, new, start, end, report)
        con.register("_profiles", profiles)
        con.execute("INSERT OR REPLACE INTO meta.clean_variables SELECT * FROM _profiles")
        con.unregister("_profiles")
    report.rows = len(new)
    return report


def _write_window(con, new: pd.DataFrame, start: datetime, end: datetime, report: CleanReport) -> None:
    """Make clean's window equal ``new`` by deleting and inserting only differing rows."""
    con.register("_clean_new_df", new)
    con.execute("CREATE OR REPLACE TEMP TABLE _clean_new AS SELECT variable_id, ts::TIMESTAMPTZ AS ts, value, chain, chain_version FROM _clean_new_df")
    con.unregister("_clean_new_df")
    same = "c.variable_id = n.variable_id AND c.ts = n.ts AND c.value = n.value AND c.chain_version IS NOT DISTINCT FROM n.chain_version"
    changed = con.execute(f"""
        SELECT DISTINCT variable_id FROM (
            SELECT c.variable_id FROM clean.measurements c
            WHERE c.ts >= $start AND c.ts < $end AND NOT EXISTS (SELECT 1 FROM _clean_new n WHERE {same})
            UNION ALL
            SELECT n.variable_id FROM _clean_new n
            WHERE NOT EXISTS (SELECT 1 FROM clean.measurements c WHERE c.ts >= $start AND c.ts < $end AND {same}))
    """, {"start": start, "end": end}).fetchall()
    report.changed_variables |= {v for (v,) in changed}
    report.deleted += con.execute(f"""
        DELETE FROM clean.measurements c
        WHERE c.ts >= $start AND c.ts < $end AND NOT EXISTS (SELECT 1 FROM _clean_new n WHERE {same})
    """, {"start": start, "end": end}).fetchone()[0]
    report.inserted += con.execute(f"""
        INSERT INTO clean.measurements (variable_id, ts, value, chain, chain_version)
        SELECT n.* FROM _clean_new n
        WHERE NOT EXISTS (SELECT 1 FROM clean.measurements c WHERE c.ts >= $start AND c.ts < $end AND {same})
    """, {"start": start, "end": end}).fetchone()[0]
    con.execute("DROP TABLE _clean_new")


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
