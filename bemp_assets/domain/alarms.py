"""The alarm engine: rules over clean series -> raise/clear events, the board, acknowledgements.

Pure library (no Dagster). Three layers:

* **triggers** (pure, vectorised pandas): per rule type, the instants at which an alarm must
  raise (+1) or clear (-1) on a long frame ``subject, ts, value``;
* **state machine** (:func:`state_changes`): per (rule, subject) normal -> active -> cleared,
  starting from the state stored in the warehouse; a trigger that does not change the state
  is no event, so a chattering value gives no repeated raises;
* **storage** (SQL): ``ops.alarm_events`` (raised, cleared, acknowledged), ``ops.alarm_acks``,
  ``ops.alarms_active`` (the board), ``ops.alarm_evaluations`` (where each rule version stopped).

Evaluation is incremental and idempotent: a rule version is evaluated from where its last
evaluation stopped (or from the earliest reading stored since then), minus a look-back that
covers its durations and delays, plus the last reading before that; the events of that window
are replaced (delete-then-insert in one transaction) by the recomputed ones. Event ids are
hashes of what the event is, so the same window evaluated twice yields the same rows, and an
event keeps its first detection time. A rule whose definition changed (new version) is
re-evaluated over all stored data; the events of the old version stay, marked superseded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from .config import AlarmRuleBase, BempConfig, ConstantRule, NoDataRule, ThresholdRule, TunnelRule
from .warehouse import transaction

SEVERITIES = ["info", "warning", "error", "critical"]
LOOKBACK_MARGIN = timedelta(days=1)
RAW, CLEAN = "raw.measurements", "clean.measurements"

ALARM_DDL = """
CREATE TABLE IF NOT EXISTS ops.alarm_events (
    event_id VARCHAR NOT NULL, alarm_id VARCHAR NOT NULL, rule VARCHAR NOT NULL, rule_version VARCHAR NOT NULL,
    rule_type VARCHAR NOT NULL, severity VARCHAR NOT NULL, subject VARCHAR NOT NULL, subject_kind VARCHAR NOT NULL,
    event VARCHAR NOT NULL, data_ts TIMESTAMPTZ NOT NULL, detected_at TIMESTAMPTZ NOT NULL, value DOUBLE,
    message VARCHAR, superseded_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS ops.alarm_acks (
    alarm_id VARCHAR NOT NULL, rule VARCHAR NOT NULL, subject VARCHAR NOT NULL,
    acked_by VARCHAR NOT NULL, note VARCHAR, acked_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ops.alarms_active (
    alarm_id VARCHAR NOT NULL, rule VARCHAR NOT NULL, rule_type VARCHAR NOT NULL, severity VARCHAR NOT NULL,
    subject VARCHAR NOT NULL, subject_kind VARCHAR NOT NULL, source VARCHAR, raised_at TIMESTAMPTZ NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL, raise_value DOUBLE, last_value DOUBLE, last_ts TIMESTAMPTZ,
    state VARCHAR NOT NULL, acked_by VARCHAR, acked_at TIMESTAMPTZ, message VARCHAR
);
CREATE TABLE IF NOT EXISTS ops.notifications (
    event_id VARCHAR NOT NULL, alarm_id VARCHAR NOT NULL, channel VARCHAR NOT NULL, payload VARCHAR NOT NULL,
    status VARCHAR NOT NULL, attempts INTEGER NOT NULL, last_error VARCHAR, created_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ops.alarm_evaluations (
    rule VARCHAR NOT NULL, rule_version VARCHAR NOT NULL, window_start TIMESTAMPTZ, evaluated_to TIMESTAMPTZ NOT NULL,
    evaluated_at TIMESTAMPTZ NOT NULL, events_in_window INTEGER NOT NULL
);
"""

TRIGGER_COLUMNS = ["subject", "ts", "value", "trigger"]
# the last raise/clear of each (rule, subject): at equal instants (a gap of exactly the no-data
# threshold raises and clears at once) the clear comes last
LAST_EVENT = ("row_number() OVER (PARTITION BY rule, subject, subject_kind "
              "ORDER BY data_ts DESC, event = 'cleared' DESC)")


class AlarmError(ValueError):
    """A request about alarms that cannot be honoured (unknown id, already acknowledged)."""


def rule_version(rule: AlarmRuleBase) -> str:
    """Hash of what the rule does (everything but its description): a change means replay."""
    body = rule.model_dump(mode="json", exclude={"description"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


def short_hash(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:12]


def rule_span(rule: AlarmRuleBase) -> timedelta:
    """How far back from an instant the rule looks to decide there (duration, threshold or
    delay): the data read before the evaluation window."""
    if isinstance(rule, ConstantRule):
        seconds = rule.duration
    elif isinstance(rule, NoDataRule):
        seconds = rule.threshold
    elif isinstance(rule, TunnelRule):
        seconds = rule.hours * 3600
    else:
        seconds = max(rule.on_delay, rule.off_delay)
    return timedelta(seconds=seconds)


# --- triggers: pure functions over long frames (subject, ts, value) -------------------------

def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["subject", "ts"], kind="stable").reset_index(drop=True)


def _run_elapsed(frame: pd.DataFrame, new_run: pd.Series) -> pd.Series:
    """Time since the first sample of the run each sample belongs to (runs restart per subject)."""
    run_id = (new_run | (frame["subject"] != frame["subject"].shift())).cumsum()
    return frame["ts"] - frame.groupby(run_id)["ts"].transform("first")


def threshold_triggers(frame: pd.DataFrame, rule: ThresholdRule) -> pd.DataFrame:
    """Raise where the value has been beyond a limit for ``on_delay`` (every sample of the run
    beyond it); clear where it has been back past the limit by the hysteresis band for
    ``off_delay``. Inside the band neither holds, so the state stays as it was."""
    frame = _sorted(frame)
    value = frame["value"]
    beyond = pd.Series(False, index=frame.index)
    back = pd.Series(True, index=frame.index)
    if rule.upper is not None:
        beyond |= value > rule.upper
        back &= value <= rule.upper - rule.hysteresis
    if rule.lower is not None:
        beyond |= value < rule.lower
        back &= value >= rule.lower + rule.hysteresis
    condition = np.select([beyond, back], [1, -1], 0)
    condition = pd.Series(condition, index=frame.index)
    elapsed = _run_elapsed(frame, condition != condition.shift())
    raise_at = (condition == 1) & (elapsed >= pd.Timedelta(seconds=rule.on_delay))
    clear_at = (condition == -1) & (elapsed >= pd.Timedelta(seconds=rule.off_delay))
    return _triggers(frame, raise_at, clear_at)


def constant_triggers(frame: pd.DataFrame, rule: ConstantRule) -> pd.DataFrame:
    """Raise at the first sample that has stayed within ``tolerance`` of the previous one since
    a stretch began at least ``duration`` earlier; clear at the first sample that leaves it.
    A stretch at ``ignore_value`` (within tolerance) never raises."""
    frame = _sorted(frame)
    step = frame["value"].diff().abs()
    leaves = ~(step <= rule.tolerance)  # NaN at a subject's first sample: a new stretch
    elapsed = _run_elapsed(frame, leaves)
    ignored = (frame["value"] - rule.ignore_value).abs() <= rule.tolerance if rule.ignore_value is not None else False
    raise_at = (elapsed >= pd.Timedelta(seconds=rule.duration)) & ~ignored
    first_of_subject = frame["subject"] != frame["subject"].shift()
    clear_at = leaves & ~first_of_subject
    return _triggers(frame, raise_at, clear_at)


def no_data_triggers(frame: pd.DataFrame, rule: NoDataRule, now: datetime) -> pd.DataFrame:
    """Raise at the instant a silence reaches ``threshold`` (last sample + threshold, as long as
    that instant is not after ``now``), clear at the sample that ends it. A gap of exactly the
    threshold raises and clears at the same instant."""
    frame = _sorted(frame)
    now = pd.Timestamp(now)
    threshold = pd.Timedelta(seconds=rule.threshold)
    following = frame.groupby("subject")["ts"].shift(-1)
    silence_end = following.fillna(now)
    silent = (silence_end - frame["ts"]) >= threshold
    raises = frame.loc[silent, ["subject", "ts", "value"]].assign(ts=lambda f: f["ts"] + threshold, trigger=1)
    ends = silent & following.notna()
    clears = frame.loc[ends, ["subject"]].assign(ts=following[ends], value=frame["value"].shift(-1)[ends], trigger=-1)
    out = pd.concat([raises, clears], ignore_index=True)
    return out.sort_values(["subject", "ts", "trigger"], ascending=[True, True, False], kind="stable")[TRIGGER_COLUMNS]


def tunnel_triggers(frame: pd.DataFrame, rule: TunnelRule) -> pd.DataFrame:
    """On hourly rows (subject, ts, value = actual mean, forecast, mae): raise at the
    ``hours``-th consecutive hour outside max(margin, k x mae) around the forecast; clear at
    the first hour back inside. A missing hour breaks a run."""
    frame = _sorted(frame)
    bound = np.maximum(rule.margin, rule.k * frame["mae"].fillna(0))
    outside = pd.Series(np.where((frame["value"] - frame["forecast"]).abs() > bound, 1, -1), index=frame.index)
    gap = frame["ts"].diff() != pd.Timedelta(hours=1)
    elapsed = _run_elapsed(frame, (outside != outside.shift()) | gap)
    raise_at = (outside == 1) & (elapsed >= pd.Timedelta(hours=rule.hours - 1))
    return _triggers(frame, raise_at, outside == -1)


def _triggers(frame: pd.DataFrame, raise_at: pd.Series, clear_at: pd.Series) -> pd.DataFrame:
    trigger = np.select([raise_at, clear_at], [1, -1], 0)
    out = frame.assign(trigger=trigger)
    return out.loc[out["trigger"] != 0, TRIGGER_COLUMNS].reset_index(drop=True)


def rule_triggers(rule: AlarmRuleBase, frame: pd.DataFrame, now: datetime) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(columns=TRIGGER_COLUMNS)
    if isinstance(rule, ThresholdRule):
        return threshold_triggers(frame, rule)
    if isinstance(rule, ConstantRule):
        return constant_triggers(frame, rule)
    if isinstance(rule, TunnelRule):
        return tunnel_triggers(frame, rule)
    return no_data_triggers(frame, rule, now)


# --- the state machine ------------------------------------------------------------------

def state_changes(triggers: pd.DataFrame, open_alarms: dict[str, pd.Timestamp], rule_name: str) -> pd.DataFrame:
    """Events from triggers: a raise while normal, a clear while active; other triggers change
    nothing. ``open_alarms`` maps a subject to the data instant of its open (active) alarm at
    the start. Each event carries its alarm id: the hash of rule, subject and raise instant, so
    an acknowledgement survives re-evaluation and replay of the same episode."""
    columns = ["subject", "event", "data_ts", "value", "alarm_id"]
    if triggers.empty:
        return pd.DataFrame(columns=columns)
    t = triggers.reset_index(drop=True)
    active = t["trigger"].eq(1)
    initially = t["subject"].isin(list(open_alarms))
    before = active.groupby(t["subject"]).shift().astype("boolean").fillna(initially).astype(bool)
    changed = t[active != before].copy()
    changed["event"] = np.where(changed["trigger"] == 1, "raised", "cleared")
    changed = changed.rename(columns={"ts": "data_ts"})
    raise_ts = changed["data_ts"].where(changed["event"] == "raised")
    opened = changed["subject"].map(open_alarms)
    raise_ts = raise_ts.groupby(changed["subject"]).ffill().fillna(opened)
    changed["alarm_id"] = [short_hash(rule_name, s, pd.Timestamp(ts).isoformat()) for s, ts in zip(changed["subject"], raise_ts)]
    return changed[columns].reset_index(drop=True)


# --- data access -------------------------------------------------------------------------

def selected_variables(con: duckdb.DuckDBPyConnection, rule: AlarmRuleBase) -> list[str]:
    """Variables of meta.variables the rule's selectors match (any of them)."""
    variables = con.execute("SELECT variable_id, source, site, device, parameter, category, kind FROM meta.variables").df()
    return sorted(v["variable_id"] for v in variables.to_dict("records") if any(s.matches(v) for s in rule.select))


def rules_without_variables(con: duckdb.DuckDBPyConnection, config: BempConfig) -> list[str]:
    """Rules whose selectors match no variable: a typo there would silently never raise."""
    return [rule.name for rule in config.alarms.rules if not selected_variables(con, rule)]


def load_series(con: duckdb.DuckDBPyConnection, variables: list[str], start: datetime | None,
                table: str = "clean.measurements") -> pd.DataFrame:
    """Readings of ``variables`` from ``start`` (all when None), plus the last reading before
    ``start`` of each: (subject, ts, value). Clean for values; raw for no-data rules (what the
    sensor sent, whatever a filter removed)."""
    con.register("_alarm_vars", pd.DataFrame({"variable_id": pd.Series(variables, dtype=object)}))
    try:
        if start is None:
            return con.execute(f"""SELECT variable_id AS subject, ts, value FROM {table}
                                   SEMI JOIN _alarm_vars USING (variable_id)""").df()
        return con.execute(f"""
            SELECT variable_id AS subject, ts, value FROM {table}
            SEMI JOIN _alarm_vars USING (variable_id) WHERE ts >= $start
            UNION ALL
            SELECT variable_id, max(ts), arg_max(value, ts) FROM {table}
            SEMI JOIN _alarm_vars USING (variable_id) WHERE ts < $start GROUP BY variable_id
        """, {"start": start}).df()
    finally:
        con.unregister("_alarm_vars")


FORECAST_TABLES = ("forecasts", "model_status")


def forecast_series(con: duckdb.DuckDBPyConnection, variables: list[str], start: datetime | None) -> pd.DataFrame:
    """Hourly actual (agg.hourly: the sum for energy, else the mean) against the champion's
    forecast for that hour, the latest one issued no later than the hour's start, with the
    champion's backtest MAE: (subject, ts, value, forecast, mae). Empty while the ml tables
    do not exist. Contract (the models work's tables): ml.forecasts(variable_id, target_ts,
    value, model_id, issued_at), ml.model_status(model_id, target, role, backtest_mae)."""
    present = con.execute("""SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'ml'
                             AND table_name IN ('forecasts', 'model_status')""").fetchall()[0][0]
    if present < len(FORECAST_TABLES):
        return pd.DataFrame(columns=["subject", "ts", "value", "forecast", "mae"])
    con.register("_alarm_vars", pd.DataFrame({"variable_id": pd.Series(variables, dtype=object)}))
    try:
        return con.execute("""
            WITH champion AS (
                SELECT target AS variable_id, model_id, backtest_mae FROM ml.model_status
                WHERE role = 'champion' AND target IN (SELECT variable_id FROM _alarm_vars)
            ), issued AS (
                SELECT f.variable_id, f.target_ts, arg_max(f.value, f.issued_at) AS forecast, any_value(c.backtest_mae) AS mae
                FROM ml.forecasts f JOIN champion c USING (variable_id, model_id)
                WHERE f.issued_at <= f.target_ts AND ($start IS NULL OR f.target_ts >= $start)
                GROUP BY ALL
            )
            SELECT h.variable_id AS subject, h.hour AS ts, coalesce(h.sum, h.mean) AS value, i.forecast, i.mae
            FROM agg.hourly h JOIN issued i ON i.variable_id = h.variable_id AND i.target_ts = h.hour
        """, {"start": start}).df()
    finally:
        con.unregister("_alarm_vars")


def gateway_series(con: duckdb.DuckDBPyConnection, config: BempConfig, variables: list[str],
                   start: datetime | None) -> pd.DataFrame:
    """Per registered gateway: the instants any of its (selected) sensors reported, value =
    how many did; and its installation day as the instant its silence is counted from."""
    series = load_series(con, variables, start, RAW)
    series["subject"] = series["subject"].str.split(".").str[0]
    per_gateway = series.groupby(["subject", "ts"], as_index=False).agg(value=("value", "size"))
    registry = pd.DataFrame({"subject": [g.sn for g in config.gateways],
                             "ts": [pd.Timestamp(g.installed, tz="UTC") for g in config.gateways]})
    per_gateway = per_gateway[per_gateway["subject"].isin(registry["subject"])]
    installed = registry.assign(value=np.nan)
    if start is not None:  # the installation instant only matters before the first sample
        installed = installed[~installed["subject"].isin(per_gateway["subject"])]
    frame = pd.concat([per_gateway, installed], ignore_index=True)
    return frame.sort_values(["subject", "ts"]).drop_duplicates(["subject", "ts"], keep="first")


# --- evaluation --------------------------------------------------------------------------

@dataclass
class Evaluation:
    rule: str
    version: str
    window_start: datetime | None
    replayed: bool
    events_in_window: int
    superseded: int


def evaluate_rule(con: duckdb.DuckDBPyConnection, config: BempConfig, rule: AlarmRuleBase, now: datetime) -> Evaluation:
    """Evaluate one rule incrementally (or over all history when its version is new); in one
    transaction, supersede other versions' events, replace the window's events and record
    the evaluation, so a crash leaves the previous state (and the next run redoes it)."""
    version = rule_version(rule)
    start = _window_start(con, rule, version)
    new = _event_rows(window_events(con, config, rule, start, now), rule, version, now)
    with transaction(con):
        superseded = _supersede_other_versions(con, rule.name, version, now)
        _replace_window(con, rule.name, version, start, new)
        con.execute("INSERT INTO ops.alarm_evaluations VALUES (?, ?, ?, ?, ?, ?)",
                    [rule.name, version, start, now, now, len(new)])
    return Evaluation(rule.name, version, start, start is None, len(new), superseded)


def window_events(con: duckdb.DuckDBPyConnection, config: BempConfig, rule: AlarmRuleBase,
                  start: datetime | None, now: datetime) -> pd.DataFrame:
    """The events of ``rule`` from ``start`` (all when None). Data is read from ``start`` minus
    the rule's span (plus the reading before), so every trigger from ``start`` on is what a
    run over the whole history gives; the state at ``start`` comes from the stored events."""
    read_from = None if start is None else start - rule_span(rule)
    variables = selected_variables(con, rule)
    subjects = {"variable": forecast_series(con, variables, read_from) if isinstance(rule, TunnelRule)
                else load_series(con, variables, read_from, RAW if isinstance(rule, NoDataRule) else CLEAN)}
    if isinstance(rule, NoDataRule) and rule.per_gateway:
        subjects["gateway"] = gateway_series(con, config, variables, read_from)
    events = []
    for kind, frame in subjects.items():
        triggers = rule_triggers(rule, frame, now)
        if start is not None:
            triggers = triggers[triggers["ts"] >= pd.Timestamp(start)]
        found = state_changes(triggers, _open_alarms(con, rule.name, rule_version(rule), kind, start), rule.name)
        events.append(found.assign(subject_kind=kind))
    found_any = [frame for frame in events if len(frame)]  # pandas warns on concatenating empty frames
    return pd.concat(found_any, ignore_index=True) if found_any else events[0]


def _supersede_other_versions(con, rule: str, version: str, now: datetime) -> int:
    """Keep a changed rule's old events for audit, out of the board and history's current view."""
    count = con.execute("""SELECT count(*) FROM ops.alarm_events WHERE rule = $r AND rule_version <> $v
                           AND superseded_at IS NULL AND event IN ('raised', 'cleared')""", {"r": rule, "v": version}).fetchall()[0][0]
    if count:
        con.execute("""UPDATE ops.alarm_events SET superseded_at = $now WHERE rule = $r AND rule_version <> $v
                       AND superseded_at IS NULL AND event IN ('raised', 'cleared')""", {"r": rule, "v": version, "now": now})
    return int(count)


def _window_start(con, rule: AlarmRuleBase, version: str) -> datetime | None:
    """Where to re-derive events from: the earlier of where the last evaluation of this version
    stopped and the earliest reading stored since (less a margin for the shift between raw and
    clean time stamps); None = all history (a new rule, or a version other than the one
    evaluated last, even one evaluated before: its events were superseded meanwhile)."""
    last = con.execute("""SELECT arg_max(rule_version, evaluated_at), max(evaluated_to), max(evaluated_at)
                          FROM ops.alarm_evaluations WHERE rule = ?""", [rule.name]).fetchone()
    if last[0] != version:  # never evaluated, or another version evaluated last: replay
        return None
    last = last[1:]
    variables = selected_variables(con, rule)
    con.register("_alarm_vars", pd.DataFrame({"variable_id": pd.Series(variables, dtype=object)}))
    changed = con.execute("""SELECT min(ts) FROM raw.measurements SEMI JOIN _alarm_vars USING (variable_id)
                             WHERE ingested_at > ?""", [last[1]]).fetchall()[0][0]
    con.unregister("_alarm_vars")
    since = min(last[0], changed) if changed is not None else last[0]
    return since - LOOKBACK_MARGIN


def _open_alarms(con, rule: str, version: str, kind: str, start: datetime | None) -> dict[str, pd.Timestamp]:
    """Subjects whose last stored event before ``start`` is a raise: subject -> raise instant."""
    if start is None:
        return {}
    rows = con.execute(f"""
        SELECT subject, event, data_ts FROM ops.alarm_events
        WHERE rule = $r AND rule_version = $v AND subject_kind = $k AND event IN ('raised', 'cleared')
          AND data_ts < $start
        QUALIFY {LAST_EVENT} = 1
    """, {"r": rule, "v": version, "k": kind, "start": start}).fetchall()
    return {subject: pd.Timestamp(ts) for subject, event, ts in rows if event == "raised"}


def _event_rows(events: pd.DataFrame, rule: AlarmRuleBase, version: str, now: datetime) -> pd.DataFrame:
    out = events.copy()
    out["event_id"] = [short_hash(rule.name, version, k, s, e, pd.Timestamp(t).isoformat())
                       for k, s, e, t in zip(out["subject_kind"], out["subject"], out["event"], out["data_ts"])]
    out["rule"], out["rule_version"], out["rule_type"], out["severity"] = rule.name, version, rule.type, rule.severity
    out["detected_at"] = pd.Timestamp(now)
    out["message"] = [_message(rule, e, v) for e, v in zip(out["event"], out["value"])]
    out["superseded_at"] = pd.NaT
    return out[["event_id", "alarm_id", "rule", "rule_version", "rule_type", "severity", "subject", "subject_kind",
                "event", "data_ts", "detected_at", "value", "message", "superseded_at"]]


def _message(rule: AlarmRuleBase, event: str, value: float) -> str:
    if event == "cleared":
        return f"{rule.name} cleared"
    if isinstance(rule, NoDataRule):
        return f"no data for {timedelta(seconds=rule.threshold)}"
    if isinstance(rule, TunnelRule):
        return f"actual {value:g} outside the forecast tunnel (max({rule.margin:g}, {rule.k:g} x MAE)) for {rule.hours} h"
    if isinstance(rule, ConstantRule):
        return f"value {value:g} unchanged (±{rule.tolerance:g}) for {timedelta(seconds=rule.duration)}"
    limits = " / ".join(f"{n} {l:g}" for n, l in (("upper", rule.upper), ("lower", rule.lower)) if l is not None)
    return f"value {value:g} beyond {limits}"


def _replace_window(con, rule: str, version: str, start: datetime | None, new: pd.DataFrame) -> None:
    """Delete this version's engine events from ``start`` and insert ``new``; an event that
    was already stored keeps its first detection time."""
    con.register("_new_events", new)
    params = {"r": rule, "v": version, "start": start}
    window = "rule = $r AND rule_version = $v AND event IN ('raised', 'cleared') AND ($start IS NULL OR data_ts >= $start)"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _old_detected AS SELECT event_id, min(detected_at) AS detected_at "
                    f"FROM ops.alarm_events WHERE {window} GROUP BY event_id", params)
        con.execute(f"DELETE FROM ops.alarm_events WHERE {window}", params)
        con.execute("""INSERT INTO ops.alarm_events
                       SELECT n.* REPLACE (coalesce(o.detected_at, n.detected_at) AS detected_at)
                       FROM _new_events n LEFT JOIN _old_detected o USING (event_id)""")
    finally:
        con.unregister("_new_events")


def evaluate_all(con: duckdb.DuckDBPyConnection, config: BempConfig, now: datetime) -> list[Evaluation]:
    """Every configured rule, then the board."""
    results = [evaluate_rule(con, config, rule, now) for rule in config.alarms.rules]
    rebuild_board(con, config)
    return results


# --- the board and acknowledgements ---------------------------------------------------------

def rebuild_board(con: duckdb.DuckDBPyConnection, config: BempConfig) -> int:
    """ops.alarms_active: per configured rule (current version) and subject, the alarm whose
    last event is a raise, with its acknowledgement and the subject's last reading."""
    versions = pd.DataFrame({"rule": [r.name for r in config.alarms.rules],
                             "rule_version": [rule_version(r) for r in config.alarms.rules]})
    con.register("_versions", versions)
    try:
        with transaction(con):
            con.execute("DELETE FROM ops.alarms_active")
            con.execute(f"""
                INSERT INTO ops.alarms_active
                WITH last_event AS (
                    SELECT e.event_id FROM ops.alarm_events e SEMI JOIN _versions USING (rule, rule_version)
                    WHERE e.event IN ('raised', 'cleared') QUALIFY {LAST_EVENT} = 1
                ), raised AS (
                    SELECT e.* FROM ops.alarm_events e SEMI JOIN last_event USING (event_id) WHERE e.event = 'raised'
                ), ack AS (
                    SELECT alarm_id, arg_max(acked_by, acked_at) AS acked_by, max(acked_at) AS acked_at
                    FROM ops.alarm_acks GROUP BY alarm_id
                ), latest AS (
                    SELECT variable_id AS subject, max(ts) AS last_ts, arg_max(value, ts) AS last_value
                    FROM clean.measurements SEMI JOIN raised ON raised.subject = variable_id GROUP BY ALL
                )
                SELECT r.alarm_id, r.rule, r.rule_type, r.severity, r.subject, r.subject_kind,
                       coalesce(v.source, CASE WHEN r.subject_kind = 'gateway' THEN 'gateway' END),
                       r.data_ts, r.detected_at, r.value, l.last_value, l.last_ts,
                       CASE WHEN a.alarm_id IS NULL THEN 'active' ELSE 'acknowledged' END,
                       a.acked_by, a.acked_at, r.message
                FROM raised r LEFT JOIN ack a USING (alarm_id) LEFT JOIN latest l USING (subject)
                LEFT JOIN meta.variables v ON v.variable_id = r.subject
            """)
    finally:
        con.unregister("_versions")
    return con.execute("SELECT count(*) FROM ops.alarms_active").fetchall()[0][0]


def acknowledge(con: duckdb.DuckDBPyConnection, config: BempConfig, alarm_id: str, by: str, note: str | None,
                now: datetime) -> dict:
    """Record who acknowledged an active alarm and when (an event and an ops.alarm_acks row)."""
    if not by.strip():
        raise AlarmError("--by: give the name of who acknowledges")
    row = con.execute("SELECT rule, subject, subject_kind, state, acked_by FROM ops.alarms_active WHERE alarm_id = ?",
                      [alarm_id]).fetchone()
    if row is None:
        raise AlarmError(f"no active alarm with id {alarm_id!r} (see `bemp alarms list --active`)")
    rule, subject, kind, state, acked_by = row
    if state == "acknowledged":
        raise AlarmError(f"alarm {alarm_id} is already acknowledged by {acked_by}")
    raised = con.execute("""SELECT rule_version, rule_type, severity FROM ops.alarm_events
                            WHERE alarm_id = ? AND event = 'raised' AND superseded_at IS NULL""", [alarm_id]).fetchone()
    with transaction(con):
        con.execute("INSERT INTO ops.alarm_acks VALUES (?, ?, ?, ?, ?, ?)", [alarm_id, rule, subject, by, note, now])
        con.execute("INSERT INTO ops.alarm_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'acknowledged', ?, ?, NULL, ?, NULL)",
                    [short_hash(alarm_id, "ack", by, now.isoformat()), alarm_id, rule, raised[0], raised[1], raised[2],
                     subject, kind, now, now, f"acknowledged by {by}" + (f": {note}" if note else "")])
    rebuild_board(con, config)
    return {"alarm_id": alarm_id, "rule": rule, "subject": subject, "acked_by": by, "acked_at": now}


def format_elapsed(seconds: float) -> str:
    """``200h59:37``: hours, minutes, seconds; hours grow past 99 as needed."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}:{rest % 60:02d}"


def board_frame(con: duckdb.DuckDBPyConnection, now: datetime, severity: str | None = None) -> pd.DataFrame:
    """The board as printed: time raised, severity, alarm name, subject, last value, elapsed."""
    board = con.execute("""SELECT alarm_id, raised_at, severity, rule, subject, last_value, raise_value, state, acked_by
                           FROM ops.alarms_active WHERE $s IS NULL OR severity = $s""", {"s": severity}).df()
    board["rank"] = board["severity"].map({s: -i for i, s in enumerate(SEVERITIES)})
    board = board.sort_values(["rank", "raised_at", "rule", "subject"]).drop(columns="rank")
    board["elapsed"] = [format_elapsed((pd.Timestamp(now) - t).total_seconds()) for t in board["raised_at"]]
    return board.reset_index(drop=True)


def format_board(board: pd.DataFrame, markdown: bool = False) -> str:
    """The board as text for the terminal, or as a Markdown table (asset metadata)."""
    if board.empty:
        return "no active alarms"
    shown = board.assign(raised_at=board["raised_at"].dt.strftime("%Y-%m-%d %H:%M"),
                         last_value=board["last_value"].map(lambda v: "" if pd.isna(v) else f"{v:g}"),
                         acked_by=board["acked_by"].fillna(""))
    shown = shown[["alarm_id", "raised_at", "severity", "rule", "subject", "last_value", "elapsed", "state", "acked_by"]]
    return shown.to_markdown(index=False) if markdown else shown.to_string(index=False)


def history(con: duckdb.DuckDBPyConnection, rule: str | None = None, subject: str | None = None) -> pd.DataFrame:
    """Every event, old versions included (``superseded_at`` set), newest data instant last."""
    return con.execute("""
        SELECT data_ts, event, severity, rule, rule_version, subject, value, detected_at, alarm_id, superseded_at, message
        FROM ops.alarm_events WHERE ($r IS NULL OR rule = $r) AND ($s IS NULL OR subject = $s)
        ORDER BY data_ts, rule, subject, event DESC
    """, {"r": rule, "s": subject}).df()


# --- the notification outbox -------------------------------------------------------------

def enqueue_notifications(con: duckdb.DuckDBPyConnection, channel: str, now: datetime, max_age_s: int) -> dict[str, int]:
    """One outbox row per current raised/cleared event and channel not queued yet (anti-join
    insert): ``pending``, or ``skipped`` when the event was detected more than ``max_age_s``
    after its data instant (history found by a backfill or a replay is not news)."""
    before = dict(con.execute("SELECT status, count(*) FROM ops.notifications WHERE channel = ? GROUP BY ALL",
                              [channel]).fetchall())
    with transaction(con):
        con.execute("""
            INSERT INTO ops.notifications
            SELECT e.event_id, e.alarm_id, $channel,
                   json_object('event_id', e.event_id, 'alarm_id', e.alarm_id, 'event', e.event, 'rule', e.rule,
                               'rule_version', e.rule_version, 'severity', e.severity, 'subject', e.subject,
                               'subject_kind', e.subject_kind, 'data_ts', strftime(e.data_ts, '%Y-%m-%dT%H:%M:%SZ'),
                               'detected_at', strftime(e.detected_at, '%Y-%m-%dT%H:%M:%SZ'), 'value', e.value,
                               'message', e.message)::VARCHAR,
                   CASE WHEN epoch(e.detected_at) - epoch(e.data_ts) <= $max_age THEN 'pending' ELSE 'skipped' END,
                   0,
                   CASE WHEN epoch(e.detected_at) - epoch(e.data_ts) > $max_age
                        THEN 'detected more than notify_max_age after its data instant' END,
                   $now, NULL, $now
            FROM ops.alarm_events e
            WHERE e.event IN ('raised', 'cleared') AND e.superseded_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM ops.notifications n WHERE n.event_id = e.event_id AND n.channel = $channel)
        """, {"channel": channel, "now": now, "max_age": max_age_s})
    after = dict(con.execute("SELECT status, count(*) FROM ops.notifications WHERE channel = ? GROUP BY ALL",
                             [channel]).fetchall())
    return {status: after.get(status, 0) - before.get(status, 0) for status in ("pending", "skipped")}


def deliver_notifications(con: duckdb.DuckDBPyConnection, channel: str, send, now: datetime) -> dict[str, int]:
    """Send every pending message of ``channel``, oldest first, through ``send(payload, key)``
    -> (delivered, attempts, error). Each outcome is written at once, so a crash loses nothing
    and a message delivered is never sent again; a failed one stays pending for the next run."""
    rows = con.execute("""SELECT event_id, payload FROM ops.notifications WHERE channel = ? AND status = 'pending'
                          ORDER BY created_at, event_id""", [channel]).fetchall()
    counts = {"sent": 0, "failed": 0}
    for event_id, payload in rows:  # one network request each: the loop is I/O, not data work
        delivered, attempts, error = send(payload, event_id)
        con.execute("""UPDATE ops.notifications SET status = CASE WHEN $ok THEN 'sent' ELSE 'pending' END,
                       attempts = attempts + $n, last_error = $error, sent_at = CASE WHEN $ok THEN $now END,
                       updated_at = $now WHERE event_id = $id AND channel = $channel""",
                    {"ok": delivered, "n": attempts, "error": error, "now": now, "id": event_id, "channel": channel})
        counts["sent" if delivered else "failed"] += 1
    return counts


def recent_events(con: duckdb.DuckDBPyConnection, days: int = 30) -> pd.DataFrame:
    """Per rule, its current raised/cleared events of the ``days`` up to its newest one (the
    sample data is years old, so "the last 30 days" of the wall clock would show nothing)."""
    return con.execute("""
        SELECT rule, event, data_ts, subject FROM ops.alarm_events
        WHERE superseded_at IS NULL AND event IN ('raised', 'cleared')
        QUALIFY data_ts > max(data_ts) OVER (PARTITION BY rule) - to_days($days)
        ORDER BY rule, data_ts
    """, {"days": days}).df()


def render_events(events: pd.DataFrame, path, title: str):
    """A PNG, one panel per rule over its own 30 days: subjects on the vertical axis, a red
    triangle per raise and a green one per clear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    rules = sorted(events["rule"].unique()) if len(events) else ["(no events)"]
    heights = [max(1.0, 0.18 * events.loc[events["rule"] == r, "subject"].nunique() + 0.8) for r in rules]
    fig, axes = plt.subplots(len(rules), 1, figsize=(10, sum(heights) + 0.8), dpi=80, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, rule in zip(axes[:, 0], rules):
        chosen = events[events["rule"] == rule]
        lane = {subject: i for i, subject in enumerate(sorted(chosen["subject"].unique()))}
        for event, marker, colour in (("raised", "^", "tab:red"), ("cleared", "v", "tab:green")):
            part = chosen[chosen["event"] == event]
            ax.scatter(part["data_ts"], part["subject"].map(lane), marker=marker, color=colour, s=24, label=event)
        ax.set_yticks(range(len(lane)), labels=list(lane), fontsize=6)
        if len(chosen):
            newest = chosen["data_ts"].max()
            ax.set_xlim(newest - pd.Timedelta(days=30), newest + pd.Timedelta(days=1))
        ax.set_title(rule, fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def episodes(con: duckdb.DuckDBPyConnection, now: datetime, severity: str | None = None) -> pd.DataFrame:
    """Every alarm of the current rule versions, raised to cleared (or still open), newest first,
    elapsed up to its clear or to ``now``."""
    frame = con.execute("""
        WITH e AS (SELECT * FROM ops.alarm_events WHERE superseded_at IS NULL)
        SELECT r.alarm_id, r.data_ts AS raised_at, c.data_ts AS cleared_at, r.severity, r.rule, r.subject, r.value,
               CASE WHEN c.alarm_id IS NOT NULL THEN 'cleared' WHEN a.alarm_id IS NOT NULL THEN 'acknowledged'
                    ELSE 'active' END AS state
        FROM e r LEFT JOIN e c ON c.alarm_id = r.alarm_id AND c.rule_version = r.rule_version AND c.event = 'cleared'
        LEFT JOIN (SELECT DISTINCT alarm_id FROM ops.alarm_acks) a ON a.alarm_id = r.alarm_id
        WHERE r.event = 'raised' AND ($s IS NULL OR r.severity = $s)
        ORDER BY r.data_ts DESC, r.rule, r.subject
    """, {"s": severity}).df()
    until = frame["cleared_at"].fillna(pd.Timestamp(now))
    frame["elapsed"] = [format_elapsed(s) for s in (until - frame["raised_at"]).dt.total_seconds()]
    return frame


def format_episodes(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "no alarms"
    shown = frame.assign(raised_at=frame["raised_at"].dt.strftime("%Y-%m-%d %H:%M"),
                         cleared_at=frame["cleared_at"].dt.strftime("%Y-%m-%d %H:%M").fillna(""),
                         value=frame["value"].map(lambda v: "" if pd.isna(v) else f"{v:g}"))
    return shown[["alarm_id", "raised_at", "cleared_at", "severity", "rule", "subject", "value", "elapsed",
                  "state"]].to_string(index=False)


def summary_lines(con: duckdb.DuckDBPyConnection, now: datetime, limit: int = 10) -> list[str]:
    """For `bemp summary`: active alarms per severity and the most severe ones."""
    board = board_frame(con, now)
    if board.empty:
        return ["  alarms: none active (bemp alarms list)"]
    counts = ", ".join(f"{n} {s}" for s, n in board["severity"].value_counts().items())
    lines = [f"  alarms: {len(board)} active ({counts}); bemp alarms list --active"]
    for row in board.head(limit).itertuples():
        lines.append(f"    {row.alarm_id} {row.raised_at:%Y-%m-%d %H:%M} {row.severity:<8} {row.rule} {row.subject} {row.elapsed}")
    if len(board) > limit:
        lines.append(f"    ... {len(board) - limit} more")
    return lines
