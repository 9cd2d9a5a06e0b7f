"""Commissioning rules: is every sensor delivering correct, frequent, complete, fresh data?

Every rule is judged per variable and site-local day (a partition), and only on the days the
variable was expected to report: its **life**, from its registered commissioning date (a
gateway's ``installed``) or else its first reading, to the last reading of its source, without
the stretches of more than ``OUT_OF_SERVICE_DAYS`` days in which its device sent nothing. A
partition range reaching years beyond a source's life judges nothing there and records nothing.

The numbers are computed set-based in DuckDB (one row per variable and day); the pass/fail
decision is made by Great Expectations 1.x expectations over those rows, with each row carrying
its own threshold, so per-variable settings need no per-variable suites. Each row gets a
verdict, ``pass``, ``fail`` or ``no_data`` (completeness on a day on which the variable's
device delivered nothing at all), recorded in ``ops.commissioning_results``; docs/commissioning.md
says how each verdict gates downstream use.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

from .config import BempConfig
from .parsing import SUPPORTED_RANGE
from .timezones import LOCAL_DAYS, QUARTER_US, local_day_of, quarter_of
from .warehouse import registered, temp_table, write_transaction

RESULT_COLUMNS = ["variable_id", "day", "observed", "threshold"]
PASS, FAIL, NO_DATA = "pass", "fail", "no_data"


@dataclass
class RuleOutcome:
    rule: str
    passed: bool
    expectation: str
    checked: int
    failed: int
    # variable_id, day, observed, threshold, passed, verdict, plus the rule's own statistics
    details: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def no_data(self) -> int:
        return int((self.details["verdict"] == NO_DATA).sum()) if len(self.details) else 0

    def worst(self, n: int = 5, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The ``n`` worst failing rows (no-data rows last), with a readable variable name."""
        bad = self.details[~self.details["passed"]] if len(self.details) else self.details
        if not len(bad):
            return []
        ascending = self.rule == "completeness"
        bad = bad.assign(_no_data=bad["verdict"] == NO_DATA).sort_values(["_no_data", "observed"],
                                                                          ascending=[True, ascending]).head(n)
        labels = labels or {}
        return [{"variable_id": r.variable_id, "variable": labels.get(r.variable_id, r.variable_id),
                 **({"day": str(pd.Timestamp(r.day).date())} if pd.notna(r.day) else {}),
                 "observed": _round(r.observed), "threshold": _round(r.threshold), "verdict": r.verdict}
                for r in bad.itertuples()]


def _round(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, (int, float)) and pd.notna(value) else value


def rule_thresholds(con: duckdb.DuckDBPyConnection, config: BempConfig) -> pd.DataFrame:
    """The effective thresholds of every known variable (one row each): what the statistics
    functions take as ``thresholds`` and show their SQL as ``_rules``."""
    variables = con.execute("SELECT variable_id, source, parameter, kind, expected_interval_s FROM meta.variables").df()
    rows = []
    for v in variables.itertuples():
        rules = config.commissioning.rules_for(v.variable_id, v.source, v.parameter)
        rows.append({"variable_id": v.variable_id, "kind": v.kind, "interval_s": int(v.expected_interval_s),
                     "min": rules.get("min"), "max": rules.get("max"),
                     "completeness_min": rules["completeness_min"], "frequency_tolerance": rules["frequency_tolerance"],
                     "freshness_s": rules["freshness"]})
    return pd.DataFrame(rows, columns=["variable_id", "kind", "interval_s", "min", "max", "completeness_min",
                                       "frequency_tolerance", "freshness_s"]).astype({"min": float, "max": float})


def commissioning_dates(config: BempConfig) -> dict[str, date]:
    """Registered sensors and the day they were commissioned: every sensor of a gateway in the
    installation registry (data/config/live.yaml) from the gateway's ``installed`` date."""
    return {s.variable_id(g.sn): g.installed for g in config.gateways for s in g.sensors}


# A device that sends nothing for more than this many days in a row is out of service for that
# stretch: its days are not judged (docs/commissioning.md); shorter silences are no-data days.
OUT_OF_SERVICE_DAYS = 30


@dataclass(frozen=True)
class Life:
    """When each variable was expected to report (:func:`life_of`), as Arrow tables (exact
    DATE and TIMESTAMPTZ types) that the statistics register for their own statement only.

    * ``variables``: per variable with readings, ``first_day`` .. ``last_day`` (site-local):
      from its commissioning date when registered (and earlier than its first reading), else
      the day of its first reading, to the day of the last reading of its *source* (an export
      or platform that ends is not a fault; inside that span every variable of the source is
      expected);
    * ``device_days``: per device and day with readings, its first and last reading, and its
      source's;
    * ``out_of_service``: per device, the stretches of more than ``OUT_OF_SERVICE_DAYS`` days
      without any reading inside that span (before its first reading, between two, after its
      last): the device was not operating, and those days lie outside the life.
    """

    variables: Any
    device_days: Any
    out_of_service: Any

    def relations(self) -> dict[str, Any]:
        """The names the statistics' SQL reads them by."""
        return {"_life": self.variables, "_device_days": self.device_days, "_out_of_service": self.out_of_service}


def life_of(con: duckdb.DuckDBPyConnection, tz: str, commissioned: dict[str, date] | None = None,
            window: tuple[datetime, datetime] | None = None, variables: list[str] | None = None) -> Life:
    """The :class:`Life` of every variable with readings.

    With ``window`` (the days to judge), ``device_days`` holds only the days within
    ``OUT_OF_SERVICE_DAYS + 2`` days of it: whether a day of the window lies in, opens or closes
    a stretch out of service depends on no reading further away, and a run no longer groups
    every reading of the warehouse's history by device and day (20 s for a year of 100 meters).
    With ``variables`` (the ones to judge), only their sources' devices are grouped. Readings
    are grouped by UTC quarter hour before their local day is looked up (3x faster over a year
    than a time-zone conversion per reading): exact wherever the site's UTC offset is a whole
    number of quarter hours, as in every zone since 1972.
    """
    dates = pd.DataFrame({"variable_id": pd.Series(list((commissioned or {}).keys()), dtype=object),
                          "commissioned": pd.Series(list((commissioned or {}).values()), dtype="datetime64[ns]")})
    with registered(con, _commissioned=dates):
        life = con.execute("""
            WITH seen AS (SELECT variable_id, min(ts) AS first_ts, max(ts) AS last_ts FROM raw.measurements GROUP BY ALL),
            life AS (
                SELECT s.variable_id, v.device, v.source, s.first_ts, s.last_ts,
                       max(s.last_ts) OVER (PARTITION BY v.source) AS source_last_ts, c.commissioned::DATE AS commissioned
                FROM seen s JOIN meta.variables v USING (variable_id) LEFT JOIN _commissioned c USING (variable_id)
            )
            SELECT *, least(timezone($tz, first_ts)::DATE, coalesce(commissioned, timezone($tz, first_ts)::DATE)) AS first_day,
                   timezone($tz, source_last_ts)::DATE AS last_day
            FROM life
        """, {"tz": tz}).to_arrow_table()
    device_days = con.execute(f"""
        SELECT *, min(first_ts) OVER (PARTITION BY source, day) AS source_first_ts,
               max(last_ts) OVER (PARTITION BY source, day) AS source_last_ts
        FROM (SELECT source, device, timezone($tz, quarter)::DATE AS day, min(first_ts) AS first_ts, max(last_ts) AS last_ts
              FROM (SELECT v.source, v.device, make_timestamptz({quarter_of("m")} * {QUARTER_US}) AS quarter,
                           min(m.ts) AS first_ts, max(m.ts) AS last_ts
                    FROM raw.measurements m JOIN meta.variables v USING (variable_id)
                    WHERE m.ts >= $from_ts AND m.ts < $to_ts
                      AND (v.source IN (SELECT source FROM meta.variables WHERE list_contains($variables, variable_id))
                           OR $variables IS NULL)
                    GROUP BY ALL)
              GROUP BY ALL)
    """, {"tz": tz, **_device_days_range(window), "variables": variables}).to_arrow_table()
    with registered(con, _life=life, _device_days=device_days):
        out_of_service = con.execute(f"""
            WITH marks AS (  -- days with readings, plus the day before the life and the day after it
                SELECT device, day FROM _device_days
                UNION ALL SELECT device, min(first_day) - 1 FROM _life GROUP BY device
                UNION ALL SELECT device, max(last_day) + 1 FROM _life GROUP BY device
            ),
            gaps AS (SELECT device, day, lag(day) OVER (PARTITION BY device ORDER BY day) AS previous FROM marks)
            SELECT device, previous + 1 AS from_day, day - 1 AS to_day FROM gaps
            WHERE day - previous - 1 > {OUT_OF_SERVICE_DAYS}
        """).to_arrow_table()
    return Life(life, device_days, out_of_service)


def _device_days_range(window: tuple[datetime, datetime] | None) -> dict[str, datetime]:
    """$from_ts, $to_ts: the readings ``_device_days`` needs for ``window`` (all without one)."""
    if window is None:
        return {"from_ts": SUPPORTED_RANGE.start, "to_ts": SUPPORTED_RANGE.end}
    pad = timedelta(days=OUT_OF_SERVICE_DAYS + 2)
    return {"from_ts": window[0] - pad, "to_ts": window[1] + pad}


# CTE ``life_days``: (variable, site-local day) for every day of [$start, $end) inside the life
# of $variables (Life's relations registered), with the day's bounds as instants, whether its
# device sent anything that day, its source's first and last reading that day, and whether the
# device's life begins or resumes (``opens``) or ends or pauses (``closes``) that day
LIFE_DAYS = """life_days AS (
    WITH bounds AS (
        SELECT *, greatest(first_day, timezone($tz, $start)::DATE) AS from_day,
               least(last_day, timezone($tz, $end)::DATE - 1) AS to_day
        FROM _life WHERE list_contains($variables, variable_id)
    ),
    days AS (
        SELECT *, unnest(generate_series(from_day, to_day, INTERVAL 1 DAY))::DATE AS day
        FROM bounds WHERE from_day <= to_day
    )
    SELECT d.variable_id, d.device, d.source, d.first_ts, d.first_day, d.day,
           timezone($tz, d.day::TIMESTAMP) AS day_start, timezone($tz, (d.day + 1)::TIMESTAMP) AS day_end,
           dd.first_ts IS NOT NULL AS device_reported, dd.source_first_ts, dd.source_last_ts,
           d.day = d.first_day OR EXISTS (SELECT 1 FROM _out_of_service o WHERE o.device = d.device AND o.to_day = d.day - 1) AS opens,
           d.day = d.last_day OR EXISTS (SELECT 1 FROM _out_of_service o WHERE o.device = d.device AND o.from_day = d.day + 1) AS closes
    FROM days d LEFT JOIN _device_days dd ON dd.device = d.device AND dd.day = d.day
    WHERE NOT EXISTS (SELECT 1 FROM _out_of_service o WHERE o.device = d.device AND d.day BETWEEN o.from_day AND o.to_day)
)"""


@contextmanager
def judged_days(con: duckdb.DuckDBPyConnection, life: Life, start: datetime, end: datetime, tz: str,
                variables: list[str]) -> Iterator[str]:
    """Temp table ``_life_days`` (LIFE_DAYS) while the block runs. A DuckDB table, not a CTE
    of the statistics' statement nor an Arrow table: DuckDB 1.5.5 plans the freshness as-of
    join over either about 8x slower (0.9 s against 0.11 s per 30 days of 20 meters)."""
    params = {"start": start, "end": end, "tz": tz, "variables": variables}
    with registered(con, **life.relations()), \
            temp_table(con, "_life_days", f"WITH {LIFE_DAYS} SELECT * FROM life_days", params) as table:
        yield table


# ------------------------------------------------------------------ statistics (DuckDB)
# days of a run judged by one statement: a year of 100 meters at one sample a minute judged in
# one pass sorted 52 M readings under the memory cap (20-35 s a rule; BENCHMARKS.md, issue 14)
CHUNK_DAYS = 31


def day_chunks(start: datetime, end: datetime, tz: str, days: int = CHUNK_DAYS) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at every ``days``-th site-local midnight after ``start``: each chunk
    holds whole local days, so a per-day statistic never straddles two chunks."""
    zone = ZoneInfo(tz)
    first = start.astimezone(zone).date()
    cuts, step = [start], 1
    while cuts[-1] < end:
        midnight = datetime.combine(first + timedelta(days=days * step), time(), zone).astimezone(timezone.utc)
        cuts.append(min(end, midnight))
        step += 1
    return list(zip(cuts, cuts[1:])) or [(start, end)]


# the readings (variable_id, ts, value) of $variables in [$start, $end), plus ``_previous``: each
# variable's newest reading before $start, whose row a window function may use as the previous
# reading (the caller keeps only ts >= $start): a chunk of a longer run then judges its first
# readings as one pass over the run would
READINGS_WITH_PREVIOUS = """
    SELECT variable_id, ts, value FROM raw.measurements
    WHERE ts >= $start AND ts < $end AND variable_id IN (SELECT unnest($variables::VARCHAR[]))
    UNION ALL
    SELECT variable_id, ts, value FROM _previous"""
NO_PREVIOUS = pd.DataFrame({"variable_id": pd.Series(dtype=object), "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                            "value": pd.Series(dtype=float)})


def newest_readings(con, start: datetime | None, end: datetime, variables: list[str],
                    before: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variable of ``variables``: its newest reading (variable_id, ts, value) in [start,
    end) (``start`` None: all history before ``end``), else its row of ``before``. Carried from
    chunk to chunk, it gives each chunk the readings before it without reading them again."""
    with registered(con, _before=NO_PREVIOUS if before is None else before):
        return con.execute("""
            SELECT variable_id, max(ts) AS ts, arg_max(value, ts) AS value FROM (
                SELECT variable_id, ts, value FROM raw.measurements
                WHERE ts >= $start AND ts < $end AND variable_id IN (SELECT unnest($variables::VARCHAR[]))
                UNION ALL SELECT variable_id, ts, value FROM _before
            ) GROUP BY variable_id
        """, {"start": start or SUPPORTED_RANGE.start, "end": end, "variables": variables}).df()


def correctness_stats(con, thresholds: pd.DataFrame, start: datetime, end: datetime, tz: str, variables: list[str],
                      reset_fraction: float, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variable and local day: readings outside the physical range, and counter decreases
    that are not resets (a reset drops below ``reset_fraction`` of the previous reading).
    ``previous`` (:func:`newest_readings`): each variable's reading before ``start`` its first
    one is compared with (a chunk of a longer run, judged as in one pass over the run)."""
    with registered(con, _rules=thresholds, _previous=NO_PREVIOUS if previous is None else previous):
        return con.execute(f"""
        WITH {LOCAL_DAYS},
        r AS (
            SELECT m.variable_id, m.ts, m.value, u.kind, u.min, u.max,
                   lag(m.value) OVER (PARTITION BY m.variable_id ORDER BY m.ts) AS previous
            FROM ({READINGS_WITH_PREVIOUS}) m JOIN _rules u USING (variable_id)
        )
        SELECT r.variable_id, {local_day_of("r")} AS day,
               count(*) FILTER (WHERE value < min OR value > max)
                 + count(*) FILTER (WHERE kind = 'cumulative' AND value < previous AND value >= $fraction * previous) AS observed,
               0 AS threshold, count(*) AS n,
               min(value) AS lowest, max(value) AS highest, any_value(min) AS range_min, any_value(max) AS range_max
        FROM r JOIN local_days l ON l.quarter = {quarter_of("r")}
        WHERE r.ts >= $start GROUP BY ALL ORDER BY r.variable_id, day
    """, {"start": start, "end": end, "tz": tz, "variables": variables, "fraction": reset_fraction}).df()


def frequency_stats(con, thresholds: pd.DataFrame, start: datetime, end: datetime, tz: str, variables: list[str],
                    previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variable and local day: relative deviation of the median sampling interval from the
    expected one (a step belongs to the day of its later reading). ``previous`` as for
    :func:`correctness_stats`."""
    with registered(con, _rules=thresholds, _previous=NO_PREVIOUS if previous is None else previous):
        return con.execute(f"""
        WITH {LOCAL_DAYS},
        gaps AS (
            SELECT variable_id, ts, epoch(ts) - epoch(lag(ts) OVER (PARTITION BY variable_id ORDER BY ts)) AS step
            FROM ({READINGS_WITH_PREVIOUS})
        )
        SELECT g.variable_id, {local_day_of("g")} AS day,
               abs(median(g.step) / any_value(u.interval_s) - 1) AS observed,
               any_value(u.frequency_tolerance) AS threshold,
               median(g.step) AS median_interval_s, any_value(u.interval_s) AS expected_interval_s
        FROM gaps g JOIN _rules u USING (variable_id) JOIN local_days l ON l.quarter = {quarter_of("g")}
        WHERE g.step IS NOT NULL AND g.ts >= $start GROUP BY ALL ORDER BY g.variable_id, day
    """, {"start": start, "end": end, "tz": tz, "variables": variables}).df()


def completeness_stats(con, thresholds: pd.DataFrame, life: Life, start: datetime, end: datetime, tz: str,
                       variables: list[str]) -> pd.DataFrame:
    """Per variable and local day of its life: readings present over readings expected.

    Readings are expected all day, except on the day of the variable's first reading (from
    that reading), on the day its device's life opens or resumes after a stretch out of service
    (from the source's first reading that day) and on the day it ends or pauses (up to the
    source's last reading that day, plus one interval): an export that ends mid-day is not a
    gap, a device that stops while its source goes on is. ``device_reported`` says whether the
    device delivered anything at all that day; the caller turns a silent device's day into a
    ``no_data`` verdict.
    """
    with registered(con, _rules=thresholds), judged_days(con, life, start, end, tz, variables):
        return con.execute(f"""
        WITH {LOCAL_DAYS},
        present AS (
            SELECT m.variable_id, {local_day_of("m")} AS day, count(*) AS n
            FROM raw.measurements m JOIN local_days l ON l.quarter = {quarter_of("m")}
            WHERE m.ts >= $start AND m.ts < $end AND m.variable_id IN (SELECT unnest($variables::VARCHAR[])) GROUP BY ALL
        ),
        expected AS (
            SELECT d.variable_id, d.device, d.day, u.interval_s, u.completeness_min,
                   d.device_reported,
                   CASE WHEN d.first_ts >= d.day_start AND d.first_ts < d.day_end THEN d.first_ts
                        WHEN d.opens THEN coalesce(d.source_first_ts, d.day_start) ELSE d.day_start END AS from_ts,
                   CASE WHEN d.closes THEN least(d.day_end, coalesce(d.source_last_ts, d.day_end) + to_seconds(u.interval_s))
                        ELSE d.day_end END AS to_ts
            FROM _life_days d JOIN _rules u USING (variable_id)
        ),
        counted AS (
            SELECT e.*, coalesce(p.n, 0) AS n, ceil((epoch(e.to_ts) - epoch(e.from_ts)) / e.interval_s) AS expected_n
            FROM expected e LEFT JOIN present p USING (variable_id, day)
            WHERE e.to_ts > e.from_ts
        )
        SELECT variable_id, day, least(1.0, n / expected_n) AS observed, completeness_min AS threshold,
               n, expected_n, device, device_reported
        FROM counted ORDER BY variable_id, day
    """, {"start": start, "end": end, "tz": tz, "variables": variables}).df()


def duplicate_stats(con, table: str, start: datetime, end: datetime, tz: str) -> pd.DataFrame:
    """Per variable and local day: rows beyond one per timestamp in ``table``."""
    return con.execute(f"""
        WITH {LOCAL_DAYS}
        SELECT m.variable_id, {local_day_of("m")} AS day, count(*) - count(DISTINCT m.ts) AS observed, 0 AS threshold, count(*) AS n
        FROM {table} m JOIN local_days l ON l.quarter = {quarter_of("m")}
        WHERE m.ts >= $start AND m.ts < $end GROUP BY ALL ORDER BY m.variable_id, day
    """, {"start": start, "end": end, "tz": tz}).df()


def freshness_stats(con, thresholds: pd.DataFrame, life: Life, start: datetime, end: datetime, tz: str,
                    as_of: datetime, variables: list[str], previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per variable and local day of its life: seconds since its newest reading at the end of
    that day, or at ``as_of`` for the day containing it (the live case). Days after ``as_of``
    are not judged. ``previous``: :func:`newest_readings` before ``start`` (read when omitted)."""
    if previous is None:  # the newest reading before the window, from all history
        previous = newest_readings(con, None, start, variables)
    with registered(con, _rules=thresholds, _previous=previous), judged_days(con, life, start, end, tz, variables):
        return con.execute(f"""
        WITH days AS (
            SELECT *, least($as_of::TIMESTAMPTZ, day_end) AS at FROM _life_days WHERE day_start < $as_of::TIMESTAMPTZ
        ),
        readings AS (  -- the window's, and the newest before it: all an as-of match can pick
            SELECT variable_id, ts FROM raw.measurements
            WHERE ts >= $start AND ts < $end AND variable_id IN (SELECT unnest($variables::VARCHAR[]))
            UNION ALL
            SELECT variable_id, ts FROM _previous
        )
        SELECT d.variable_id, d.day,
               epoch(d.at) - epoch(coalesce(r.ts, timezone($tz, d.first_day::TIMESTAMP))) AS observed,
               u.freshness_s AS threshold, r.ts AS last_ts, d.at AS judged_at
        FROM days d ASOF LEFT JOIN readings r ON d.variable_id = r.variable_id AND d.at > r.ts
        JOIN _rules u ON u.variable_id = d.variable_id
        ORDER BY d.variable_id, d.day
    """, {"start": start, "end": end, "tz": tz, "as_of": as_of, "variables": variables}).df()


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
    ``upper_bound``, at least it otherwise), using GX's ExpectColumnPairValuesAToBeGreaterThanB.

    A completeness row whose device delivered nothing that day (``device_reported`` false)
    fails with the verdict ``no_data`` instead of ``fail``."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    rows = stats.reset_index(drop=True)
    if upper_bound:
        expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="threshold", column_B="observed", or_equal=True)
    else:
        expectation = gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="observed", column_B="threshold", or_equal=True)
    if not len(rows):
        return RuleOutcome(rule, True, expectation.expectation_type, 0, 0,
                           pd.DataFrame(columns=[*RESULT_COLUMNS, "passed", "verdict"]))
    rows["day"] = rows["day"].astype(object).where(rows["day"].notna(), None)
    suite = gx.ExpectationSuite(name=f"bemp_{rule}", expectations=[expectation])
    batch = _gx_batch_definition().get_batch(
        batch_parameters={"dataframe": rows[RESULT_COLUMNS].astype({"observed": float, "threshold": float})})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["variable_id", "day"]})
    outcome = result.results[0]
    bad = {(u["variable_id"], u.get("day")) for u in outcome.result.get("unexpected_index_list", [])}
    rows["passed"] = [(v, d) not in bad for v, d in zip(rows["variable_id"], rows["day"])]
    silent = ~rows["device_reported"].astype(bool) if "device_reported" in rows else pd.Series(False, index=rows.index)
    rows["verdict"] = [PASS if ok else NO_DATA if quiet else FAIL for ok, quiet in zip(rows["passed"], silent)]
    return RuleOutcome(rule=rule, passed=bool(outcome.success), expectation=expectation.expectation_type,
                       checked=int(outcome.result.get("element_count", len(rows))),
                       failed=int(outcome.result.get("unexpected_count", 0)), details=rows)


def record(con, outcomes: list[RuleOutcome], asset: str, run_id: str, checked_at: datetime) -> int:
    """Append every variable-day verdict to ops.commissioning_results, in one transaction
    (history is kept for BI and the board). ``partition`` is the day's partition key."""
    frames = [o.details[[*RESULT_COLUMNS, "passed", "verdict"]].assign(rule=o.rule) for o in outcomes if len(o.details)]
    if not frames:
        return 0
    rows = pd.concat(frames, ignore_index=True)
    con.register("_outcomes", rows)
    insert = """
        INSERT INTO ops.commissioning_results
            (checked_at, run_id, asset, partition, variable_id, day, rule, passed, observed, threshold, verdict)
        SELECT $checked_at, $run_id, $asset, strftime(day::DATE, '%Y-%m-%d'), variable_id, day::DATE, rule, passed,
               observed, threshold, verdict
        FROM _outcomes
    """
    params = {"checked_at": checked_at, "run_id": run_id, "asset": asset}
    write_transaction(con, lambda con: con.execute(insert, params), what="record commissioning verdicts")
    con.unregister("_outcomes")
    return len(rows)


# ------------------------------------------------------------------ plain words
_HASHED_DEVICE = re.compile(r"^[0-9a-f]{16,}$")


def variable_labels(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """A readable name per variable: the id itself (``GW-BE-0001.ch1_temperature``), except
    for devices named by a hash (REACH meters), shown as ``meter 7f6eca13 active_energy``."""
    rows = con.execute("SELECT variable_id, device, parameter FROM meta.variables").fetchall()
    return {v: (f"meter {device[:8]} {parameter}" if _HASHED_DEVICE.match(device or "") else v) for v, device, parameter in rows}


def plain_duration(seconds: float) -> str:
    """``3 d 4 h``, ``5 h 10 min``, ``10 min``, ``45 s``: two units at most, no decimals."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "min")]
    start = next(i for i, (n, _) in enumerate(parts) if n)
    return " ".join(f"{n} {unit}" for n, unit in parts[start:start + 2] if n)


@dataclass(frozen=True)
class DayVerdict:
    """One rule's verdict on one partition (site-local day), in plain words."""
    passed: bool
    blocking: bool          # a real fault: fails the rule's blocking check
    checked: int
    failed: int
    no_data: int
    description: str
    worst: list[dict[str, Any]]


def day_verdicts(outcome: RuleOutcome, labels: dict[str, str]) -> dict[date, DayVerdict]:
    """Per local day judged: did the rule pass, and why not, in words with units. A day with
    only ``no_data`` rows fails without being a blocking fault (docs/commissioning.md)."""
    if not len(outcome.details):
        return {}
    verdicts = {}
    for day, rows in outcome.details.groupby(outcome.details["day"].map(lambda d: pd.Timestamp(d).date())):
        day_outcome = RuleOutcome(outcome.rule, bool(rows["passed"].all()), outcome.expectation, len(rows),
                                  int((~rows["passed"]).sum()), rows)
        faults = int((rows["verdict"] == FAIL).sum())
        verdicts[day] = DayVerdict(passed=day_outcome.passed, blocking=faults > 0, checked=day_outcome.checked,
                                   failed=faults, no_data=day_outcome.no_data,
                                   description=describe(day_outcome, labels), worst=day_outcome.worst(5, labels))
    return verdicts


def describe(outcome: RuleOutcome, labels: dict[str, str]) -> str:
    """One sentence on a rule's rows (usually one day's), with units and readable names."""
    rows = outcome.details
    n = len(rows)
    if not n:
        return "not judged: no variable was expected to report"
    bad = rows[rows["verdict"] == FAIL]
    quiet = rows[rows["verdict"] == NO_DATA]
    if len(bad):
        return f"{len(bad)} of {n} variables fail: {worst_faults(outcome, labels)}"
    if len(quiet):
        devices = sorted(quiet["device"].unique())
        return (f"no data at all from {', '.join(devices[:3])}{' and others' if len(devices) > 3 else ''} "
                f"({len(quiet)} of {n} variables): a no-data day, not blocking")
    return _all_good(outcome.rule, rows, labels)


def worst_faults(outcome: RuleOutcome, labels: dict[str, str], n: int = 3) -> str:
    """The ``n`` worst ``fail`` rows in words, e.g. ``GW-BE-0001.ch2_humidity has 48% of its
    expected readings (69 of 144; limit 90%)``, with the day when the rows span several."""
    bad = outcome.details[outcome.details["verdict"] == FAIL]
    bad = bad.sort_values("observed", ascending=outcome.rule == "completeness")
    several_days = bad["day"].nunique() > 1
    shown = "; ".join(_fault(outcome.rule, row, labels.get(row.variable_id, row.variable_id))
                      + (f" on {pd.Timestamp(row.day).date()}" if several_days else "") for row in bad.head(n).itertuples())
    return shown + (f" (and {len(bad) - n} more)" if len(bad) > n else "")


def _fault(rule: str, row, label: str) -> str:
    if rule == "completeness":
        return f"{label} has {row.observed:.0%} of its expected readings ({int(row.n)} of {int(row.expected_n)}; limit {row.threshold:.0%})"
    if rule == "freshness":
        return f"{label} silent for {plain_duration(row.observed)} (limit {plain_duration(row.threshold)})"
    if rule == "frequency":
        return (f"{label} median interval {plain_duration(row.median_interval_s)} instead of "
                f"{plain_duration(row.expected_interval_s)} (off by {row.observed:.0%}, limit {row.threshold:.0%})")
    if rule == "correctness":
        return (f"{label} has {int(row.observed)} reading(s) outside {_range(row)} or counter drops "
                f"(values {row.lowest:g} .. {row.highest:g})")
    return f"{label} has {int(row.observed)} duplicate row(s)"


def _range(row) -> str:
    low = "" if pd.isna(row.range_min) else f"{row.range_min:g}"
    high = "" if pd.isna(row.range_max) else f"{row.range_max:g}"
    return f"[{low} .. {high}]"


def _all_good(rule: str, rows: pd.DataFrame, labels: dict[str, str]) -> str:
    n = len(rows)
    name = lambda row: labels.get(row.variable_id, row.variable_id)  # noqa: E731
    if rule == "completeness":
        low = rows.loc[rows["observed"].idxmin()]
        return f"all {n} variables have their expected readings (lowest {low.observed:.0%}, {name(low)}; limit {low.threshold:.0%})"
    if rule == "freshness":
        late = rows.loc[rows["observed"].idxmax()]
        return (f"all {n} variables reported within their limit (longest silence {plain_duration(late.observed)}, "
                f"{name(late)}; limit {plain_duration(late.threshold)})")
    if rule == "frequency":
        return f"all {n} variables report at their expected interval (median within ±{rows['threshold'].min():.0%})"
    if rule == "correctness":
        return f"all {n} variables within their physical range, no counter drops ({int(rows['n'].sum())} readings)"
    return f"one row per variable and timestamp ({n} variables, {int(rows['n'].sum())} rows)"
