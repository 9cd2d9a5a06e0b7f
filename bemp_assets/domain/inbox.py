"""Files in the inbox: which source each belongs to, and which days it holds.

Pure file-system and in-memory work, so sensors may call it: it never opens the warehouse.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from .config import BempConfig, SourceConfig
from .parsing import REACH_TIME_FORMAT, FileShapeError, check_header


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


def source_for(name: str, config: BempConfig) -> SourceConfig | None:
    """The first source (in config order) whose pattern matches the file name."""
    for source in config.sources:
        if fnmatch.fnmatch(name, source.pattern):
            return source
    return None


def files_of(source: SourceConfig, config: BempConfig, inbox: Path) -> list[InboxFile]:
    return [f for f in list_inbox(inbox) if source_for(f.name, config) is source]


def file_days(path: Path, source: SourceConfig, config: BempConfig) -> tuple[date, date] | None:
    """First and last site-local day the file may touch, padded by one day on each side.

    Reads only the timestamp column, in an in-memory DuckDB. The padding covers time-zone
    differences between source and site, end-of-interval labels, and the previous day whose
    clean data depends on this day's first counter reading. None when the file has no
    readable timestamp (its run will report why).
    """
    try:
        check_header(path, source)
    except FileShapeError:
        return None
    column, fmt = ("Data", REACH_TIME_FORMAT) if source.format == "reach" else (source.timestamp.column, source.timestamp.format)
    quoted = '"' + column.replace('"', '""') + '"'
    with duckdb.connect() as con:
        first, last = con.execute(
            f"SELECT min(t), max(t) FROM (SELECT try_strptime(trim({quoted}), ?) AS t "
            f"FROM read_csv(?, header = true, all_varchar = true, ignore_errors = true))",
            [fmt, str(path)],
        ).fetchone()
    if first is None:
        return None
    return (pd.Timestamp(first).date() - timedelta(days=1), pd.Timestamp(last).date() + timedelta(days=1))
