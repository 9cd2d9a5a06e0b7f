"""Files in the inbox: which source each belongs to, and which days it holds.

Pure file-system and in-memory work, so sensors may call it: it never opens the warehouse.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from .config import BempConfig, SourceConfig
from .connection import scratch
from .parsing import REACH_TIME_FORMAT, FileShapeError, check_header, ident, partition_range, read_csv_sql, utf8_text

CACHED_FILES = 4096  # file_days answers kept (one per file version and source)


@dataclass(frozen=True)
class InboxFile:
    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def version(self) -> str:
        """Changes whenever the file is rewritten; a sensor processes each version once."""
        return f"{self.mtime_ns}:{self.size}"


def list_inbox(inbox: Path) -> list[InboxFile]:
    """CSV files in the inbox, oldest first (then by name): the order in which they are merged."""
    if not inbox.is_dir():
        return []
    files = []
    for path in inbox.iterdir():
        if path.is_file() and path.suffix.lower() == ".csv":
            stat = path.stat()
            files.append(InboxFile(path=path.resolve(), size=stat.st_size, mtime_ns=stat.st_mtime_ns))
    return sorted(files, key=lambda f: (f.mtime_ns, f.name))


def source_for(name: str, config: BempConfig, folder: str | None = None) -> SourceConfig | None:
    """The first source (in config order) reading ``folder`` (None: the inbox; else a source's
    own ``inbox`` folder, such as the API's landing area) whose pattern matches the file name."""
    for source in config.sources:
        if source.inbox == folder and fnmatch.fnmatch(name, source.pattern):
            return source
    return None


def source_dir(source: SourceConfig, inbox: Path) -> Path:
    """Where a source's files are: the inbox, or its own folder under $BEMP_HOME (the inbox's parent)."""
    return inbox.parent / source.inbox if source.inbox else inbox


def files_of(source: SourceConfig, config: BempConfig, inbox: Path) -> list[InboxFile]:
    return [f for f in list_inbox(source_dir(source, inbox)) if source_for(f.name, config, source.inbox) is source]


@dataclass(frozen=True)
class HeldDays:
    """The days the files of every source hold: ``dated`` by source name (each file's padded
    first and last day), and ``undated``, the sources with a file whose days cannot be read
    (its source's run rejects it whole and says why)."""
    dated: dict[str, list[tuple[date, date]]]
    undated: frozenset[str]

    def spans(self) -> list[tuple[date, date]]:
        """The day ranges all files hold, overlapping or adjacent ranges merged (a year without
        data between two exports is not a span)."""
        merged: list[tuple[date, date]] = []
        for first, last in sorted(days for ranges in self.dated.values() for days in ranges):
            if merged and first <= merged[-1][1] + timedelta(days=1):
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        return merged

    def sources_within(self, first: date, last: date) -> list[str]:
        """The sources with a file holding a day of [first, last], or with an undated file."""
        return sorted(self.undated | {name for name, ranges in self.dated.items()
                                      if any(a <= last and first <= b for a, b in ranges)})


def held_days(inbox: Path, config: BempConfig) -> HeldDays:
    """:class:`HeldDays` of every source's files: the inbox's and those in a source's own folder
    (the API's landing area). Uses the file_days cache the raw runs share."""
    cache = days_cache(inbox)
    dated: dict[str, list[tuple[date, date]]] = {}
    undated = set()
    for source in config.sources:
        for f in files_of(source, config, inbox):
            days = file_days(f.path, source, config, cache=cache)
            if days:
                dated.setdefault(source.name, []).append(days)
            else:
                undated.add(source.name)
    return HeldDays(dated, frozenset(undated))


def file_days(path: Path, source: SourceConfig, config: BempConfig,
              now: datetime | None = None, cache: Path | None = None) -> tuple[date, date] | None:
    """First and last site-local day the file may touch, padded by one day on each side.

    Reads only the timestamp column, in an in-memory DuckDB. The padding covers time-zone
    differences between source and site, end-of-interval labels, and the previous day whose
    clean data depends on this day's first counter reading. Only timestamps near the
    partitions count (a row dated 9999 is a reject, not a day to run). None when the file has
    no such timestamp or cannot be read at all (its run will report why); never raises on a
    file's content.

    With ``cache`` (a JSON file, :func:`days_cache`), the answer is kept by the file's path,
    size and modification time, its source and the bounds: every run and sensor tick would
    otherwise scan every inbox file again (~2 s for a 400 MB monthly export).
    """
    bounds = partition_range(config.site, now)
    # local wall-clock bounds, two days wider than the partitions whatever the source's zone
    lo, hi = ((edge + timedelta(days=shift)).replace(tzinfo=None) for edge, shift in ((bounds.start, -2), (bounds.end, 2)))
    if cache is None:
        return _scan_days(path, source, lo, hi)
    try:
        stat = path.stat()
    except OSError:
        return None
    key = "|".join(map(str, (path.resolve(), stat.st_size, stat.st_mtime_ns, source.name, source.format, lo, hi)))
    known = _read_days_cache(cache)
    if key in known:
        return tuple(date.fromisoformat(d) for d in known[key]) if known[key] else None
    days = _scan_days(path, source, lo, hi)
    _remember_days(cache, key, [d.isoformat() for d in days] if days else None)
    return days


def days_cache(inbox: Path) -> Path:
    """Where file_days keeps its answers: ``$BEMP_HOME/cache/file_days.json`` (the inbox's parent
    is BEMP_HOME)."""
    return Path(inbox).parent / "cache" / "file_days.json"


def _read_days_cache(cache: Path) -> dict:
    try:
        entries = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _remember_days(cache: Path, key: str, value: list[str] | None) -> None:
    """Add one answer (the newest CACHED_FILES kept); written whole and swapped in, so a reader
    never sees half a file. Two writers at once may drop each other's entry: a later miss."""
    entries = _read_days_cache(cache)
    entries.pop(key, None)
    entries[key] = value
    entries = dict(list(entries.items())[-CACHED_FILES:])
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}")
        partial.write_text(json.dumps(entries), encoding="utf-8")
        os.replace(partial, cache)
    except OSError:
        pass  # a cache that cannot be written only costs a scan next time


def _scan_days(path: Path, source: SourceConfig, lo: datetime, hi: datetime) -> tuple[date, date] | None:
    """file_days without the cache: the padded first and last day of the file's timestamps."""
    column, fmt = ("Data", REACH_TIME_FORMAT) if source.format == "reach" else (source.timestamp.column, source.timestamp.format)
    try:
        with utf8_text(path, source) as text:
            if text.error:
                return None
            header = check_header(text, source)
            with scratch() as con:
                first, last = con.execute(
                    f"SELECT min(t)::DATE, max(t)::DATE FROM (SELECT try_strptime(trim({ident(column)}), ?) AS t "
                    f"FROM {read_csv_sql(text.path, header, ', ignore_errors = true')}) WHERE t >= ? AND t < ?",
                    [fmt, lo, hi],
                ).fetchone()
    except (FileShapeError, OSError, duckdb.Error):
        return None
    if first is None:
        return None
    return first - timedelta(days=1), last + timedelta(days=1)
