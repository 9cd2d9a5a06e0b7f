"""Commissioning rules: is every sensor delivering correct, frequent, complete, fresh data?

The numbers are computed set-based in DuckDB (one row per variable, or per variable and day);
the pass/fail decision is made by Great Expectations 1.x expectations over those rows, with
each row carrying its own threshold, so per-variable settings need no per-variable suites.
Results are returned as :class:`RuleOutcome` and recorded in ``ops.commissioning_results``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from .config import BempConfig

RESULT_COLUMNS = ["variable_id", "day", "observed", "threshold"]


@dataclass
class RuleOutcome:
    rule: str
    passed: bool
    expectation: str
    checked: int
    failed: int
    details: pd.DataFrame = field(default_factory=pd.DataFrame)  # variable_id, day, observed, threshold, passed

    def worst(self, n: int = 5) -> list[dict[str, Any]]:
        bad = self.details[~self.details["passed"]] if len(self.details) else self.details
        if not len(bad):
            return []
        ascending = self.rule in ("completeness",)
        bad = bad.sort_values("observed", ascending=ascending).head(n)
        return [{"variable_id": r.variable_id, **({"day": str(pd.Timestamp(r.day).date())} if pd.notna(r.day) else {}),
                 "observed": _round(r.observed), "threshold": _round(r.threshold)} for r in bad.itertuples()]

    def summary(self) -> dict[str, Any]:
        return {"rule": self.rule, "passed": self.passed, "checked": self.checked, "failed": self.failed,
                "expectation": self.expectation, "worst": self.worst()}


def _round(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, (int, float)) and pd.notna(value) else value


def register_rules(con: duckdb.DuckDBPyConnection, config: BempConfig) -> pd.DataFrame:
    """Temp table ``_rules``: the effective thresholds of every known variable."""
    variables = con.execute("SELECT variable_id, source, parameter, kind, expected_interval_s FROM meta.variables").df()
    rows = []
    for v in variables.itertuples():
        rules = config.commissioning.rules_for(v.variable_id, v.source, v.parameter)
        rows.append({"variable_id": v.variable_id, "kind": v.kind, "interval_s": int(v.expected_interval_s),
                     "min": rules.get("min"), "max": rules.get("max"),
                     "completeness_min": rules["completeness_min"], "frequency_tolerance": rules["frequency_tolerance"],
                     "freshness_s": rules["freshness"]})
    frame = pd.DataFrame(rows, columns=["variable_id", "kind", "interval_s", "min", "max", "completeness_min",
                                        "frequency_tolerance", "freshness_s"]).astype({"min": float, "max": float})
    con.register("_rules_df", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE _rules AS SELECT * FROM _rules_df")
    con.unregister("_rules_df")
    return frame


# ------------------------------------------------------------------ statistics (DuckDB)
def correctness_stats(con, start: datetime, end: datetime, variables: list[str], reset_fraction: float) -> pd.DataFrame:
    """Per variable: readings outside the physical range, and counter decreases that are not
    resets (a reset drops below ``reset_fraction`` of the previous reading)."""
    return con.execute("""
        WITH r AS (
            SELECT m.variable_id, m.ts, m.value, u.kind, u.min, u.max,
                   lag(m.value) OVER (PARTITION BY m.variable_id ORDER BY m.ts) AS previous
            FROM raw.measurements m JOIN _rules u USING (variable_id)
            WHERE m.ts >= $start AND m.ts < $end AND list_contains($variables, m.variable_id)
        )
        SELECT variable_id, NULL::DATE AS day,
               count(*) FILTER (WHERE value < min OR value > max)
                 + count(*) FILTER (WHERE kind = 'cumulative' AND value < previous AND value >= $fraction * previous) AS observed,
               0 AS threshold, count(*) AS n,
               min(value) AS lowest, max(value) AS highest, any_value(min) AS range_min, any_value(max) AS range_max
        FROM r GROUP BY variable_id ORDER BY variable_id
    """, {"start": start, "end": end, "variables": variables, "fraction": reset_fraction}).df()


def frequency_stats(con, start: datetime, end: datetime, variables: list[str]) -> pd.DataFrame:
    """Per variable: relative deviation of the median sampling interval from the expected one."""
    return con.execute("""
        WITH gaps AS (
            SELECT variable_id, epoch(ts) - epoch(lag(ts) OVER (PARTITION BY variable_id ORDER BY ts)) AS step
            FROM raw.measurements WHERE ts >= $start AND ts < $end AND list_contains($variables, variable_id)
        )
        SELECT g.variable_id, NULL::DATE AS day,
               abs(median(g.step) / any_value(u.interval_s) - 1) AS observed,
               any_value(u.frequency_tolerance) AS threshold,
               median(g.step) AS median_interval_s, any_value(u.interval_s) AS expected_interval_s
        FROM gaps g JOIN _rules u USING (variable_id)
        WHERE g.step IS NOT NULL GROUP BY g.variable_id ORDER BY g.variable_id
    """, {"start": start, "end": end, "variables": variables}).df()


def completeness_stats(con, start: datetime, end: datetime, tz: str, variables: list[str]) -> pd.DataFrame:
    """Per variable and site-local day: samples present over samples expected.

    Expected samples are counted only while the sensor was supposed to report: from its first
    reading ever, up to the last reading of its source (an export that ends mid-day is not a
    gap; a source that went silent is the freshness rule's business).
    """
    return con.execute("""
        WITH span AS (
            SELECT m.variable_id, min(m.ts) AS first_ts FROM raw.measurements m
            WHERE list_contains($variables, m.variable_id) GROUP BY ALL
        ),
        source_end AS (
            SELECT v.source, max(m.ts) AS last_ts FROM raw.measurements m JOIN meta.variables v USING (variable_id)
            GROUP BY ALL
        ),
        days AS (
            SELECT s.variable_id, d.day::DATE AS day,
                   timezone($tz, d.day::TIMESTAMP) AS day_start, timezone($tz, (d.day + INTERVAL 1 DAY)::TIMESTAMP) AS day_end,
                   s.first_ts, e.last_ts, u.interval_s, u.completeness_min
            FROM span s JOIN meta.variables v USING (variable_id) JOIN source_end e USING (source)
                 JOIN _rules u USING (variable_id),
                 range(timezone($tz, $start)::DATE, timezone($tz, $end)::DATE, INTERVAL 1 DAY) d(day)
        ),
        expected AS (
            SELECT *, greatest(day_start, first_ts) AS from_ts, least(day_end, last_ts + to_seconds(interval_s)) AS to_ts
            FROM days
        ),
        present AS (  -- readings per local day; none exist before first_ts or after last_ts
            SELECT variable_id, timezone($tz, ts)::DATE AS day, count(*) AS n FROM raw.measurements
            WHERE ts >= $start AND ts < $end AND list_contains($variables, variable_id) GROUP BY ALL
        ),
        counted AS (
            SELECT e.variable_id, e.day, e.completeness_min, coalesce(p.n, 0) AS n,
                   ceil((epoch(e.to_ts) - epoch(e.from_ts)) / e.interval_s) AS expected_n
            FROM expected e LEFT JOIN present p USING (variable_id, day) WHERE e.to_ts > e.from_ts
        )
        SELECT variable_id, day, least(1.0, n / expected_n) AS observed, completeness_min AS threshold,
               n, expected_n
        FROM counted ORDER BY variable_id, day
    """, {"start": start, "end": end, "tz": tz, "variables": variables}).df()


def duplicate_stats(con, table: str, start: datetime, end: datetime) -> pd.DataFrame:
    """Per variable: rows beyond one per timestamp in ``table`` inside the window."""
    return con.execute(f"""
        SELECT variable_id, NULL::DATE AS day, count(*) - count(DISTINCT ts) AS observed, 0 AS threshold, count(*) AS n
        FROM {table} WHERE ts >= $start AND ts < $end GROUP BY variable_id ORDER BY variable_id
    """, {"start": start, "end": end}).df()


def freshness_stats(con, as_of: datetime, variables: list[str] | None = None) -> pd.DataFrame:
    """Per variable: seconds since its newest sample at ``as_of``."""
    return con.execute("""
        SELECT m.variable_id, NULL::DATE AS day, epoch($as_of::TIMESTAMPTZ) - epoch(max(m.ts)) AS observed,
               any_value(u.freshness_s) AS threshold, max(m.ts) AS last_ts
        FROM raw.measurements m JOIN _rules u USING (variable_id)
        WHERE m.ts <= $as_of AND ($variables IS NULL OR list_contains($variables, m.variable_id))
        GROUP BY m.variable_id ORDER BY m.variable_id
    """, {"as_of": as_of, "variables": variables}).df()


# ------------------------------------------------------------------ decisions (Great Expectations)
@functools.lru_cache(maxsize=1)
def _gx_batch_definition():
    """One ephemeral GX context per process, with a pandas data source taking any frame."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("bemp").add_dataframe_asset("rule_rows")
    return asset.add_batch_definition_whole_dataframe("all_rows")


def evaluate(rule: str, stats: pd.DataFrame, upper_bound: bool = True) -> RuleOutcome:
    """Pass each row whose ``observed`` is within its ``threshold`` (at most it when
    ``upper_bound``, at least it otherwise), using GX's ExpectColumnPairValuesAToBeGreaterThanB."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    rows = stats.reset_index(drop=True).assign(day=stats["day"].astype(object).where(stats["day"].notna(), None) if len(stats) else None)
    if upper_bound:
        expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="threshold", column_B="observed", or_equal=True)
    else:
        expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="observed", column_B="threshold", or_equal=True)
    if not len(rows):
        return RuleOutcome(rule, True, expectation.expectation_type, 0, 0, pd.DataFrame(columns=[*RESULT_COLUMNS, "passed"]))
    suite = gx.ExpectationSuite(name=f"bemp_{rule}", expectations=[expectation])
    batch = _gx_batch_definition().get_batch(batch_parameters={"dataframe": rows.astype({"observed": float, "threshold": float})})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["variable_id", "day"]})
    outcome = result.results[0]
    bad = {(u["variable_id"], u.get("day")) for u in outcome.result.get("unexpected_index_list", [])}
    rows["passed"] = [(v, d) not in bad for v, d in zip(rows["variable_id"], rows["day"])]
    return RuleOutcome(rule=rule, passed=bool(outcome.success), expectation=expectation.expectation_type,
                       checked=int(outcome.result.get("element_count", len(rows))),
                       failed=int(outcome.result.get("unexpected_count", 0)), details=rows[[*RESULT_COLUMNS, "passed"]])


def record(con, outcomes: list[RuleOutcome], asset: str, partition: str, run_id: str, checked_at: datetime) -> int:
    """Append outcomes to ops.commissioning_results (history is kept for BI and the board)."""
    frames = [o.details.assign(rule=o.rule) for o in outcomes if len(o.details)]
    if not frames:
        return 0
    rows = pd.concat(frames, ignore_index=True)
    con.register("_outcomes", rows)
    con.execute("""
        INSERT INTO ops.commissioning_results
        SELECT $checked_at, $run_id, $asset, $partition, variable_id, day::DATE, rule, passed, observed, threshold
        FROM _outcomes
    """, {"checked_at": checked_at, "run_id": run_id, "asset": asset, "partition": partition})
    con.unregister("_outcomes")
    return len(rows)
