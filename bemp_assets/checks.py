"""Commissioning rules as Dagster asset checks.

The checks are evaluated inside the step that materialises the asset (``check_specs`` plus
``MaterializeResult(check_results=...)``), so they always judge exactly the partition window
just written, with the step's own DuckDB connection and pool slot. The rules themselves live
in ``bemp_assets.domain.commissioning`` (statistics in DuckDB, decisions by Great Expectations).

Severity: rules that guard downstream use are ERROR and blocking (duplicates in clean, daily
completeness); the others warn (correctness is ERROR but not blocking: cleaning may repair it).
"""
from datetime import datetime, timezone

import duckdb
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, AssetKey, MetadataValue

from bemp_assets.domain import commissioning as rules
from bemp_assets.domain.commissioning import RuleOutcome
from bemp_assets.domain.config import BempConfig

RULES = {
    # name: (severity, blocking, description)
    "correctness": (AssetCheckSeverity.ERROR, False, "values within the physical range; counters never decrease except at resets"),
    "frequency": (AssetCheckSeverity.WARN, False, "median sampling interval within tolerance of the expected interval"),
    "freshness": (AssetCheckSeverity.WARN, False, "newest sample no older than the freshness threshold"),
    "duplicates": (AssetCheckSeverity.ERROR, True, "one row per variable and timestamp"),
    "completeness": (AssetCheckSeverity.ERROR, True, "share of expected samples per day at least the threshold"),
}


def specs(key: list[str], names: list[str]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=AssetKey(key), blocking=RULES[name][1], description=RULES[name][2]) for name in names]


def as_check_result(outcome: RuleOutcome) -> AssetCheckResult:
    severity = RULES[outcome.rule][0]
    thresholds = outcome.details["threshold"].dropna().unique() if len(outcome.details) else []
    return AssetCheckResult(
        check_name=outcome.rule,
        passed=outcome.passed,
        severity=severity,
        description=f"{outcome.failed} of {outcome.checked} checked rows fail ({outcome.expectation})",
        metadata={
            "checked": outcome.checked,
            "failed": outcome.failed,
            "observed_worst": MetadataValue.json(outcome.worst()),
            "threshold": float(thresholds[0]) if len(thresholds) == 1 else MetadataValue.json(sorted(map(float, thresholds))),
            "expectation": outcome.expectation,
        },
    )


def evaluate_rules(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection, config: BempConfig,
                   names: list[str], start: datetime, end: datetime, variables: list[str] | None = None) -> list[AssetCheckResult]:
    """Evaluate ``names`` over [start, end), record them in ops.commissioning_results, and
    return Dagster check results."""
    rules.register_rules(con, config)
    if variables is None:
        variables = [v for (v,) in con.execute("SELECT variable_id FROM meta.variables").fetchall()]
    now = datetime.now(timezone.utc)
    as_of = config.commissioning.as_of or min(now, end)
    outcomes = []
    for name in names:
        if name == "correctness":
            stats, upper = rules.correctness_stats(con, start, end, variables, config.commissioning.reset_fraction), True
        elif name == "frequency":
            stats, upper = rules.frequency_stats(con, start, end, variables), True
        elif name == "freshness":
            stats, upper = rules.freshness_stats(con, as_of, variables), True
        elif name == "duplicates":
            stats, upper = rules.duplicate_stats(con, "clean.measurements", start, end), True
        else:
            stats, upper = rules.completeness_stats(con, start, end, config.site.timezone, variables), False
        outcome = rules.evaluate(name, stats, upper_bound=upper)
        log = context.log.info if outcome.passed else context.log.warning
        log(f"{context.asset_key.to_user_string()} {name}: {outcome.failed} of {outcome.checked} fail; worst {outcome.worst(3)}")
        outcomes.append(outcome)
    partition = f"{context.partition_key_range.start}..{context.partition_key_range.end}"
    rules.record(con, outcomes, context.asset_key.to_user_string(), partition, context.run.run_id, now)
    return [as_check_result(o) for o in outcomes]
