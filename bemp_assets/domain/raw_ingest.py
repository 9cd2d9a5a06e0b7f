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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Sequence

import duckdb

from .config import BempConfig, SourceConfig
from .inbox import file_days
from .live import ReadingBatch
from .parsing import ParsedFile, TimeRange, parse_file
from .warehouse import IngestReport, ingest, registered, temp_table

Days = tuple[date, date] | None


@dataclass
class RawRun:
    """What a run merged: the summed report, each file's parse (staging tables already dropped)
    and the days each file may touch (:func:`file_days`, padded), by file name."""

    report: IngestReport
    parsed: list[ParsedFile] = field(default_factory=list)
    days: dict[str, Days] = field(default_factory=dict)


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
                 on_parsed: Callable[[int, ParsedFile], None] = lambda index, parsed: None) -> RawRun:
    """Parse and merge ``paths`` (oldest first) group by group; ``on_parsed`` hears of each file
    (its 1-based position in ``paths``) as soon as it is parsed."""
    tz = config.timezone_of(source)
    days = [file_days(path, source, config) for path in paths]
    run = RawRun(report=IngestReport(), days={Path(p).name: d for p, d in zip(paths, days)})
    parsed: dict[int, ParsedFile] = {}
    variables: set[str] = set()
    for group in day_groups(days):
        batch = [_parse(con, paths[i], source, tz, bounds, i) for i in group]
        for i, p in zip(group, batch):
            parsed[i] = p
            on_parsed(i + 1, p)
        try:
            run.report.add(ingest(con, source, tz, batch, window, now))
        finally:
            _drop_staging(con, batch)
        variables.update(v for p in batch for v in p.variables.get("variable_id", []))
    run.parsed = [parsed[i] for i in range(len(paths))]
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
        parsed = ParsedFile(path=Path(batch.label), source=batch.source, sha256="", table=table, label=batch.label,
                            rows=len(batch.readings), rejects=batch.rejects, variables=batch.variables, unique_keys=True)
        return ingest(con, source, tz, [parsed], window, now, also=also)


def source_variables(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """Variables meta.variables attributes to ``source``."""
    return [v for (v,) in con.execute("SELECT variable_id FROM meta.variables WHERE source = ?", [source]).fetchall()]


def _parse(con, path: Path, source: SourceConfig, tz: str, bounds: TimeRange, index: int) -> ParsedFile:
    return parse_file(con, path, source, tz, prefix=f"stage_{index + 1}", bounds=bounds)


def _drop_staging(con: duckdb.DuckDBPyConnection, batch: Sequence[ParsedFile]) -> None:
    for p in batch:
        if p.table:
            con.execute(f"DROP TABLE IF EXISTS {p.table}")
            p.table = None


def _in_file_order(report: IngestReport, parsed: Sequence[ParsedFile]) -> None:
    """The report's file lists in merge order, as one merge of all files would give them."""
    report.files = [p.name for p in parsed]
    report.warnings = [w for p in parsed for w in p.warnings]
    report.failed_files = {p.name: p.error for p in parsed if p.error}
    report.per_file = {p.name: report.per_file[p.name] for p in parsed}
