"""Opening the warehouse file: wait briefly for a lock, fail at once on a damaged file.

DuckDB lets one process write a file, and a writer excludes other processes' readers (and a
reader excludes a writer). A lock conflict is usually short (another step finishing, a BI
tool's query), so it is retried for ``BEMP_LOCK_WAIT`` seconds (default 30), every quarter
second; then the error names the process that holds the lock. Any other I/O error means the
file is damaged or not a DuckDB file: retrying cannot help, so it fails at once with what to do.
BI tools should read the published snapshot, not the live file (docs/warehouse.md).

The warehouse can also be a DuckLake (``BEMP_WAREHOUSE=ducklake:postgres:...``, see
``lake.py``): there is no file lock to wait for, and ``connect`` returns a session with the lake
attached and selected, so callers run the same SQL on either backend.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb

from .lake import LakeError, LakeTarget, is_lake, open_lake, target_from_env

DEFAULT_LOCK_WAIT_S = 30.0
RETRY_EVERY_S = 0.25
LOCK_MESSAGE = "Could not set lock on file"


class WarehouseError(RuntimeError):
    """The warehouse file cannot be opened; the message says which file, why, and what to do."""


class WarehouseLocked(WarehouseError):
    pass


class WarehouseDamaged(WarehouseError):
    pass


def lock_wait_seconds(env=None) -> float:
    """``BEMP_LOCK_WAIT`` in seconds (a number >= 0)."""
    text = (os.environ if env is None else env).get("BEMP_LOCK_WAIT", "")
    if not text:
        return DEFAULT_LOCK_WAIT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise WarehouseError(f"BEMP_LOCK_WAIT={text!r}: expected a number of seconds >= 0, e.g. 30")
    return value


def lock_holder(message: str) -> str:
    """'PID 123 (python -m bemp ...)' from DuckDB's lock error, with the holder's command line."""
    match = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", message)
    if not match:
        return "another process"
    program, pid = match.groups()
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = program
    return f"PID {pid} ({command[:160]})"


Target = Path | LakeTarget


def warehouse_target(value: str | Path | LakeTarget, env=None) -> Target:
    """``BEMP_WAREHOUSE``'s value as a target: a LakeTarget for ``ducklake:...``, else the
    file's absolute path."""
    if isinstance(value, LakeTarget):
        return value
    if is_lake(value):
        try:
            return target_from_env(str(value), os.environ if env is None else env)
        except LakeError as exc:
            raise WarehouseError(str(exc)) from None
    return Path(value).expanduser().resolve()


def describe(target: Target) -> str:
    """The target for messages: the file path, or the lake's catalog and data path (no password)."""
    return target.describe() if isinstance(target, LakeTarget) else str(target)


def connect(path: Target | str, read_only: bool = False, wait_s: float | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse, or a WarehouseError (for a file: after at most ``wait_s``
    of waiting for another process's lock)."""
    if is_lake(path):
        try:
            return open_lake(warehouse_target(path), read_only=read_only)
        except LakeError as exc:
            raise WarehouseError(str(exc)) from None
    path = Path(path)
    wait_s = lock_wait_seconds() if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            message = str(exc)
            if LOCK_MESSAGE not in message:
                raise damaged(path, message) from None
            if time.monotonic() >= deadline:
                raise WarehouseLocked(
                    f"warehouse {path} is locked by {lock_holder(message)}; waited {wait_s:g} s "
                    f"(BEMP_LOCK_WAIT). A BI tool should read the published snapshot, not the live file; "
                    f"otherwise wait for that process to finish or stop it."
                ) from None
            time.sleep(RETRY_EVERY_S)


def scratch() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for a statement over a file or a frame. Quiet: DuckDB draws a
    progress bar for statements over 2 s (scanning a monthly export for its days is one), and
    on a terminal or in a run's log that is lines of bar characters, not information."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")  # a session option, not accepted by connect()
    return con


def damaged(path: Path, message: str) -> WarehouseDamaged:
    first = message.splitlines()[0] if message else "unknown error"
    return WarehouseDamaged(
        f"warehouse {path} is damaged or not a DuckDB file ({first}). Move it aside "
        f"(mv {path} {path}.damaged) and restore a backup, or rebuild it: `bemp run` over the full "
        f"range re-ingests the inbox files and re-polls the live sources."
    )
