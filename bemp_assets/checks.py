"""Commissioning rules as Dagster asset checks, one evaluation per judged partition.

The checks are evaluated inside the step that materialises the asset (``check_specs``), so they
judge exactly the partitions just written, with the step's own DuckDB connection and pool slot.
The rules live in ``bemp_assets.domain.commissioning`` (statistics in DuckDB, decisions by Great
Expectations, per variable and site-local day).

A range run (single-run backfill) yields, after its materialisations, one
``AssetCheckEvaluation`` per check and judged partition, each pointing at that partition's
materialisation, plus one run-level evaluation without a partition that sums up the range (what
the UI shows as the check's latest result). Dagster plans an evaluation for every partition of
the run; a partition outside every variable's life is not judged and stays "Skipped", which is
what it is (writing thousands of "not judged" evaluations for a ten-year range would cost more
than the run itself: every evaluation is a write to the instance's event log). Dagster 1.13 has
no ``partition`` on ``AssetCheckResult`` and partitioned check specs only as a preview, hence
the evaluations are built here.

Severity: rules that guard downstream use are ERROR and blocking (duplicates in clean, daily
completeness); the others warn (correctness is ERROR but not blocking: cleaning may repair it).
A completeness day on which a device delivered nothing at all is a no-data day: it fails with
WARN severity and does not block (docs/commissioning.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import duckdb
import pandas as pd
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    MetadataValue,
    Output,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from bemp_assets.domain import commissioning as rules
from bemp_assets.domain.commissioning import DayVerdict, RuleOutcome
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.warehouse import release_memory

RULES = {
    # name: (severity, blocking, description)
    "correctness": (AssetCheckSeverity.ERROR, False,
                    "Per variable and day: no reading outside its physical range (commissioning.yaml min/max, "
                    "e.g. temperature -30 .. 60 °C) and no counter reading lower than the one before, unless it "
                    "drops below 10 % of it (a meter reset)."),
    "frequency": (AssetCheckSeverity.WARN, False,
                  "Per variable and day: the median time between readings is within 50 % of the interval the "
                  "source promises (e.g. 10 min for the gateways, 15 min for the steel plant)."),
    "freshness": (AssetCheckSeverity.WARN, False,
                  "Per variable and day: silent for no longer than its limit (2 d by default, 14 d for the REACH "
                  "dwelling) at the end of the day, or now for today."),
    "duplicates": (AssetCheckSeverity.ERROR, True, "Per variable and day: one clean row per timestamp."),
    "completeness": (AssetCheckSeverity.ERROR, True,
                     "Per variable and site-local day of its life: at least 90 % of the expected readings "
                     "(commissioning.yaml completeness_min). Blocks downstream use; a day on which the device "
                     "sent nothing at all is a no-data day and only warns."),
}
RUN_LEVEL = None  # the evaluation that sums up a run's partitions carries no partition key


def specs(key: list[str], names: list[str]) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(name, asset=AssetKey(key), blocking=RULES[name][1], description=RULES[name][2]) for name in names]


@dataclass(frozen=True)
class Verdict:
    """One check's result on one partition (or, keyed ``RUN_LEVEL``, on the whole run)."""
    passed: bool
    severity: AssetCheckSeverity
    description: str
    metadata: dict[str, Any]


def same_for_partitions(verdict: Verdict, partitions: list[str]) -> dict[str | None, Verdict]:
    """A check whose subject is the run, not a day (files parsed, gateways registered): the same
    verdict on every partition the run wrote rows to, and on the run."""
    return {RUN_LEVEL: verdict, **{key: verdict for key in partitions}}


def evaluate_rules(context: AssetExecutionContext, con: duckdb.DuckDBPyConnection, config: BempConfig,
                   names: list[str], start: datetime, end: datetime,
                   variables: list[str] | None = None) -> dict[str, dict[str | None, Verdict]]:
    """Evaluate ``names`` over [start, end) on the days inside each variable's life, record the
    variable-day verdicts in ops.commissioning_results, and return per check the verdict of
    every partition of the run and of the run as a whole."""
    tz = config.site.timezone
    if variables is None:
        variables = [v for (v,) in con.execute("SELECT variable_id FROM meta.variables").fetchall()]
    now = datetime.now(timezone.utc)
    judging = Judging(rules.rule_thresholds(con, config), variables, tz, config.commissioning.as_of or now,
                      config.commissioning.reset_fraction)
    if {"completeness", "freshness"} & set(names):  # the rules judged on the days of a life only
        judging.life = rules.life_of(con, tz, rules.commissioning_dates(config), window=(start, end), variables=variables)
    labels = rules.variable_labels(con)
    outcomes = judge(con, judging, names, start, end)
    rules.record(con, outcomes, context.asset_key.to_user_string(), context.run.run_id, now)
    verdicts = {}
    for outcome in outcomes:
        by_day = rules.day_verdicts(outcome, labels)
        _log(context, outcome, len(by_day), labels)
        judged = {key: _partition_verdict(outcome, by_day[day]) for key in context.partition_keys
                  if (day := datetime.fromisoformat(key).date()) in by_day}
        verdicts[outcome.rule] = {**judged, RUN_LEVEL: _run_verdict(outcome, judged, len(context.partition_keys), labels)}
    return verdicts


@dataclass
class Judging:
    """What every rule of one evaluation needs: thresholds, variables, the site's time zone,
    the instant judged at, the life when needed, and how many days one statement judges."""

    thresholds: pd.DataFrame
    variables: list[str]
    tz: str
    as_of: datetime
    reset_fraction: float
    life: rules.Life | None = None
    chunk_days: int = rules.CHUNK_DAYS


# the rules whose statistics compare a reading with the one before it (carried across chunks)
FOLLOWS_READINGS = {"correctness", "frequency", "freshness"}


def judge(con, judging: Judging, names: list[str], start: datetime, end: datetime) -> list[RuleOutcome]:
    """Rules ``names`` over [start, end), their statistics computed ``chunk_days`` days at a time
    (``rules.day_chunks``): memory and time per chunk do not grow with the run's length.

    Each chunk gets every variable's newest reading before it, read once per chunk for all the
    rules and carried to the next: freshness takes it from all history before the run,
    correctness and frequency only from the run (as one pass over the run would), so the rows
    equal one pass."""
    follows = FOLLOWS_READINGS & set(names)
    previous = rules.newest_readings(con, None, start, judging.variables) if "freshness" in follows else None
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in names}
    chunks = rules.day_chunks(start, end, judging.tz, judging.chunk_days)
    for index, chunk in enumerate(chunks):
        in_run = None if previous is None else previous[previous["ts"] >= start]
        for name in names:
            frames[name].append(_chunk_stats(con, judging, name, chunk, previous if name == "freshness" else in_run))
        release_memory(con)  # the next chunk, or what follows the rules, starts with this one's memory given back
        if follows and index + 1 < len(chunks):
            previous = rules.newest_readings(con, *chunk, judging.variables, previous)
    return [_outcome(name, parts) for name, parts in frames.items()]


def _outcome(name: str, parts: list[pd.DataFrame]) -> RuleOutcome:
    """The rule's verdicts over its chunks' statistics, ordered as one pass orders them."""
    stats = pd.concat([f for f in parts if len(f)] or parts[:1], ignore_index=True)
    stats = stats.sort_values(["variable_id", "day"], kind="stable", ignore_index=True)
    return rules.evaluate(name, stats, upper_bound=name != "completeness")


def _chunk_stats(con, j: Judging, name: str, chunk: tuple[datetime, datetime],
                 previous: pd.DataFrame | None) -> pd.DataFrame:
    """Rule ``name``'s per variable-day statistics over one chunk of the run."""
    if name == "correctness":
        return rules.correctness_stats(con, j.thresholds, *chunk, j.tz, j.variables, j.reset_fraction, previous)
    if name == "frequency":
        return rules.frequency_stats(con, j.thresholds, *chunk, j.tz, j.variables, previous)
    if name == "freshness":
        return rules.freshness_stats(con, j.thresholds, j.life, *chunk, j.tz, j.as_of, j.variables, previous)
    if name == "duplicates":
        return rules.duplicate_stats(con, "clean.measurements", *chunk, j.tz)
    return rules.completeness_stats(con, j.thresholds, j.life, *chunk, j.tz, j.variables)


def _log(context: AssetExecutionContext, outcome: RuleOutcome, days: int, labels: dict[str, str]) -> None:
    faults = outcome.failed - outcome.no_data
    text = (f"{context.asset_key.to_user_string()} {outcome.rule}: {faults} of {outcome.checked} variable-days fail, "
            f"{outcome.no_data} without any data, over {days} day(s) judged")
    if faults:
        text += "; worst: " + rules.worst_faults(outcome, labels)
    (context.log.warning if faults and RULES[outcome.rule][0] == AssetCheckSeverity.ERROR else context.log.info)(text)


def _thresholds(rows: list[dict]) -> Any:
    values = sorted({float(r["threshold"]) for r in rows})
    return values[0] if len(values) == 1 else MetadataValue.json(values)


def _partition_verdict(outcome: RuleOutcome, day: DayVerdict) -> Verdict:
    severity = RULES[outcome.rule][0]
    return Verdict(
        passed=day.passed,
        severity=severity if day.passed or day.blocking else AssetCheckSeverity.WARN,
        description=day.description,
        metadata={"checked": day.checked, "failed": day.failed, "no_data": day.no_data,
                  "observed_worst": MetadataValue.json(day.worst), "threshold": _thresholds(day.worst) if day.worst else None,
                  "expectation": outcome.expectation},
    )


def _run_verdict(outcome: RuleOutcome, judged: dict[str, Verdict], partitions: int, labels: dict[str, str]) -> Verdict:
    """The run's range in one evaluation: which days failed, and the worst rows."""
    failed = sorted(k for k, v in judged.items() if not v.passed)
    blocking = [k for k in failed if judged[k].severity == RULES[outcome.rule][0]]
    outside = f"{partitions - len(judged)} of {partitions} partition(s) outside every variable's life, not judged"
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        description = f"{len(failed)} of {len(judged)} day(s) judged fail: {shown}; {outside}"
    else:
        description = (f"all {len(judged)} day(s) judged pass; {outside}" if judged
                       else f"no day judged: {outside}")
    severity = RULES[outcome.rule][0] if blocking or not failed else AssetCheckSeverity.WARN
    worst = outcome.worst(5, labels)
    return Verdict(not failed, severity, description, {
        "days_judged": len(judged), "days_failed": len(failed), "days_not_judged": partitions - len(judged), "checked": outcome.checked,
        "failed": outcome.failed - outcome.no_data, "no_data": outcome.no_data,
        "observed_worst": MetadataValue.json(worst), "expectation": outcome.expectation,
    })


def emit_checks(context: AssetExecutionContext, verdicts: dict[str, dict[str | None, Verdict]]) -> Iterator:
    """Yield, after the asset's MaterializeResult, each selected check's output and its
    evaluations: one per judged partition, and the run-level one."""
    targets = _materializations_of_this_run(context)
    for name, by_partition in verdicts.items():
        key = AssetCheckKey(context.asset_key, name)
        if key not in context.selected_asset_check_keys:
            continue
        spec = context.assets_def.get_spec_for_check_key(key)
        yield Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
        for partition, verdict in by_partition.items():
            yield AssetCheckEvaluation(
                asset_key=context.asset_key, check_name=name, passed=verdict.passed, severity=verdict.severity,
                description=verdict.description, blocking=spec.blocking, partition=partition,
                metadata={k: v for k, v in verdict.metadata.items() if v is not None},
                target_materialization_data=targets.get(partition))


def _materializations_of_this_run(context: AssetExecutionContext) -> dict[str | None, AssetCheckEvaluationTargetMaterializationData]:
    """Storage ids of the materialisations this run just recorded, per partition (one query),
    so that each evaluation counts as judging the partition's latest materialisation."""
    keys = list(context.partition_keys)
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=keys), limit=len(keys)).records
    targets: dict[str | None, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:  # newest first
        entry = record.event_log_entry
        if entry.run_id == context.run.run_id:
            data = AssetCheckEvaluationTargetMaterializationData(run_id=entry.run_id, storage_id=record.storage_id,
                                                                 timestamp=record.timestamp)
            targets.setdefault(record.partition_key, data)
            targets.setdefault(RUN_LEVEL, data)
    return targets
