"""Files in the inbox: which source each belongs to, and which days it holds.

Pure file-system and in-memory work, so sensors may call it: it never opens the warehouse.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
from .config import BempConfig, SourceConfig
from .parsing import REACH_TIME_FORMAT, FileShapeError, check_header, ident, partition_range, read_csv_sql, utf8_text


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


def file_days(path: Path, source: SourceConfig, config: BempConfig,
              now: datetime | None = None) -> tuple[date, date] | None:
    """First and last site-local day the file may touch, padded by one day on each side.

    Reads only the timestamp column, in an in-memory DuckDB. The padding covers time-zone
    differences between source and site, end-of-interval labels, and the previous day whose
    clean data depends on this day's first counter reading. Only timestamps near the
    partitions count (a row dated 9999 is a reject, not a day to run). None when the file has
    no such timestamp or cannot be read at all (its run will report why); never raises on a
    file's content.
    """
    column, fmt = ("Data", REACH_TIME_FORMAT) if source.format == "reach" else (source.timestamp.column, source.timestamp.format)
    bounds = partition_range(config.site, now)
    # local wall-clock bounds, two days wider than the partitions whatever the source's zone
    lo, hi = ((edge + timedelta(days=shift)).replace(tzinfo=None) for edge, shift in ((bounds.start, -2), (bounds.end, 2)))
    try:
        with utf8_text(path, source) as text:
            if text.error:
                return None
            header = check_header(text, source)
            with duckdb.connect() as con:
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
