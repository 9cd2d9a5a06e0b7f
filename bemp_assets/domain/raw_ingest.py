"""Inbox files of one source -> raw.measurements, a group of files at a time.

Parsing a year of files and merging it in one go needs memory in proportion to the year. Here
the files are first grouped by the local days their timestamps name (:func:`file_days`, one
cheap read of the timestamp column): files that share a day form a group, a file that shares
none is a group of its own. Each group is parsed, merged in its own transaction
(:func:`warehouse.ingest`) and its staging tables dropped before the next group is parsed, so
peak memory follows the largest group (usually one monthly export), not the backfill.

Two files of different groups name no common local day, so they cannot hold a common key
(same source, same time zone): merging the groups one after another stores, revises and folds
exactly what one merge of all files would. Within a group the newest file still wins.

A file none of whose days falls in the run's window is not read at all: it could only add
readings outside the window, which the merge leaves alone. So a run of a few days (a
partition, a sensor's request, one of the parallel workers of a backfill) reads the exports
holding those days, not the whole inbox; a file's rejects are recorded by the runs of its days.
A file whose days cannot be told (unreadable, no timestamp) is always read, so its run says why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence
from zoneinfo import ZoneInfo

import duckdb

from .config import BempConfig, SourceConfig
from .inbox import file_days
from .live import ReadingBatch
from .parsing import ParsedFile, StagedReadings, TimeRange, drop_staged, parse_file
from .warehouse import IngestReport, ingest, registered, release_memory, temp_table

Days = tuple[date, date] | None


@dataclass
class RawRun:
    """What a run merged: the summed report, each file's parse (staging tables already dropped)
    and the days each file may touch (:func:`file_days`, padded), by file name."""

    report: IngestReport
    parsed: list[ParsedFile] = field(default_factory=list)
    days: dict[str, Days] = field(default_factory=dict)
    outside_window: list[str] = field(default_factory=list)  # files holding no day of the window, not read


def day_groups(days: Sequence[Days]) -> list[list[int]]:
    """Indices of files (in merge order) grouped so that files naming a common local day share a
    group; each group keeps merge order, groups come in the order of their first file.

    ``days`` are :func:`file_days` spans, padded by one day each side: unpadded here, else
    consecutive monthly files would always touch."""
    spans = [(d[0] + timedelta(days=1), d[1] - timedelta(days=1)) if d else None for d in days]
    group_of = list(range(len(spans)))

    def root(i: int) -> int:
        while group_of[i] != i:
            i = group_of[i]
        return i

    for i, a in enumerate(spans):
        for j in range(i):
            b = spans[j]
            if a and b and a[0] <= b[1] and b[0] <= a[1]:
                group_of[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(spans)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def ingest_files(con: duckdb.DuckDBPyConnection, paths: Sequence[Path], source: SourceConfig, config: BempConfig,
                 window: tuple[datetime, datetime], now: datetime, bounds: TimeRange,
                 on_parsed: Callable[[int, ParsedFile], None] = lambda index, parsed: None,
                 days_cache: Path | None = None) -> RawRun:
    """Parse and merge ``paths`` (oldest first) group by group; ``on_parsed`` hears of each file
    (its 1-based position in ``paths``) as soon as it is parsed. Files holding no day of
    ``window`` are not read (listed in ``outside_window``); ``days_cache`` keeps each file's
    days between runs (:func:`inbox.file_days`)."""
    tz = config.timezone_of(source)
    days = [file_days(Path(path), source, config, cache=days_cache) for path in paths]
    run = RawRun(report=IngestReport(), days={Path(p).name: d for p, d in zip(paths, days)})
    wanted = window_days(window, config.site.timezone)
    run.outside_window = [Path(paths[i]).name for i, d in enumerate(days) if not touches(d, wanted)]
    parsed: dict[int, ParsedFile] = {}
    variables: set[str] = set()
    for group in day_groups(days):
        group = [i for i in group if touches(days[i], wanted)]
        if not group:
            continue
        batch = [_parse(con, paths[i], source, tz, bounds, i) for i in group]
        for i, p in zip(group, batch):
            parsed[i] = p
            on_parsed(i + 1, p)
        try:
            run.report.add(ingest(con, source, tz, batch, window, now))
        finally:
            _drop_staging(con, batch)
        release_memory(con)  # the next group starts without what DuckDB held for this one
        variables.update(v for p in batch for v in p.variables.get("variable_id", []))
    run.parsed = [parsed[i] for i in sorted(parsed)]
    _in_file_order(run.report, run.parsed)
    run.report.variables = len(variables)
    return run


def ingest_readings(con: duckdb.DuckDBPyConnection, source, tz: str, batch: ReadingBatch,
                    window: tuple[datetime, datetime], now: datetime,
                    also: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> IngestReport:
    """Merge one HTTP fetch into raw by the rules of :func:`warehouse.ingest`, in one transaction
    with ``also``; the readings are staged in a temp table only while the merge runs."""
    sql = "SELECT variable_id, ts::TIMESTAMPTZ AS ts, value, 0::INTEGER AS line FROM _readings"
    with registered(con, _readings=batch.readings), temp_table(con, "stage_readings", sql) as table:
        staged = StagedReadings(source=batch.source, label=batch.label, table=table, rows=len(batch.readings),
                                rejects=batch.rejects, variables=batch.variables, unique_keys=True)
        return ingest(con, source, tz, [staged], window, now, also=also)


def window_days(window: tuple[datetime, datetime], site_tz: str) -> tuple[date, date]:
    """First and last site-local day of the half-open window [start, end)."""
    zone = ZoneInfo(site_tz)
    start, end = window
    return start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()


def touches(days: Days, wanted: tuple[date, date]) -> bool:
    """Whether a file's (padded) days meet the wanted days; a file of unknown days may."""
    return days is None or (days[0] <= wanted[1] and wanted[0] <= days[1])


def source_variables(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """Variables meta.variables attributes to ``source``."""
    return [v for (v,) in con.execute("SELECT variable_id FROM meta.variables WHERE source = ?", [source]).fetchall()]


def _parse(con, path: Path, source: SourceConfig, tz: str, bounds: TimeRange, index: int) -> ParsedFile:
    return parse_file(con, path, source, tz, prefix=f"stage_{index + 1}", bounds=bounds)


def _drop_staging(con: duckdb.DuckDBPyConnection, batch: Sequence[ParsedFile]) -> None:
    for p in batch:
        if p.table:
            drop_staged(con, p.table)
            p.table = None


def _in_file_order(report: IngestReport, parsed: Sequence[ParsedFile]) -> None:
    """The report's file lists in merge order, as one merge of all files would give them."""
    report.files = [p.name for p in parsed]
    report.warnings = [w for p in parsed for w in p.warnings]
    report.failed_files = {p.name: p.error for p in parsed if p.error}
    report.per_file = {p.name: report.per_file[p.name] for p in parsed}
