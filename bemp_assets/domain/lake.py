"""The scale-out warehouse: DuckLake, its catalog in PostgreSQL and its data as Parquet files.

Chosen by ``BEMP_WAREHOUSE=ducklake:postgres:dbname=bemp host=... user=...`` plus
``BEMP_LAKE_DATA_PATH`` (a folder here, an object-store URL in production). A session is an
in-memory DuckDB with the catalog ATTACHed as ``lake`` and selected (``USE lake``), so every
statement written for the embedded file (``raw.measurements``, ``clean.measurements``, temp
tables, registered frames) runs unchanged. Many processes read and write at once with
snapshot isolation; readers never block writers.

The extensions come from the pip packages ``duckdb-extension-ducklake`` and
``duckdb-extension-postgres`` (same version as ``duckdb``) and are LOADed from their files:
nothing is downloaded at run time (autoinstall and autoload are off). The postgres extension
is known to DuckDB as ``postgres_scanner``, so its file is linked under that name first.

Two transactions that change the same rows conflict at COMMIT (DuckLake is optimistic): the
loser gets a TransactionException and the whole transaction is run again (:func:`retrying`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import duckdb

LAKE_PREFIX = "ducklake:"
CATALOG = "lake"
DATA_PATH_ENV = "BEMP_LAKE_DATA_PATH"
# a commit that meets another process's concurrent commit is re-based by DuckLake itself this
# many times; a logical conflict (both changed the same rows) is ours to retry (retrying)
COMMIT_RETRIES = 50
DEFAULT_ATTEMPTS = 6
# the longest wait between two attempts (the backoff doubles from 0.2 s up to this)
MAX_WAIT_S = 10.0
CONFLICT_MARKERS = ("conflict", "could not serialize", "deadlock detected", "duplicate key value violates")
T = TypeVar("T")
log = logging.getLogger("bemp.lake")


class LakeError(RuntimeError):
    """The lake cannot be opened; the message says what is missing and what to do."""


@dataclass(frozen=True)
class LakeTarget:
    """Where a DuckLake warehouse lives: the catalog URL and the Parquet data path."""

    catalog: str      # "ducklake:postgres:dbname=... host=..."
    data_path: str    # folder or object-store URL of the Parquet files

    def __str__(self) -> str:  # the catalog URL: what BEMP_WAREHOUSE holds
        return self.catalog

    def exists(self) -> bool:
        """A lake always 'exists': its catalog is created by the first session that attaches."""
        return True

    def describe(self) -> str:
        """Catalog and data path, without any password (safe to print or log)."""
        shown = " ".join(part for part in self.catalog.split() if not part.lower().startswith("password="))
        return f"{shown} (data {self.data_path})"


def is_lake(value: object) -> bool:
    return isinstance(value, LakeTarget) or str(value).startswith(LAKE_PREFIX)


def target_from_env(value: str, env: Mapping[str, str]) -> LakeTarget:
    """The LakeTarget of ``BEMP_WAREHOUSE=value``; BEMP_LAKE_DATA_PATH must be set with it."""
    data_path = env.get(DATA_PATH_ENV, "")
    if not data_path:
        raise LakeError(f"BEMP_WAREHOUSE={value.split()[0]}... selects DuckLake: set {DATA_PATH_ENV} to the folder "
                        f"or object-store URL of its Parquet files, e.g. /srv/bemp/lake or s3://bucket/bemp")
    if "://" not in data_path:
        data_path = str(Path(data_path).expanduser().resolve())
    return LakeTarget(value, data_path)


def extension_file(package: str) -> Path:
    """The ``.duckdb_extension`` file a pip package ships, or a LakeError naming the package."""
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    found = sorted(p for root in roots for p in Path(root).rglob("*.duckdb_extension"))
    if not found:
        pip_name = package.replace("_", "-")
        raise LakeError(f"DuckLake needs the pip package {pip_name} (same version as duckdb {duckdb.__version__}): "
                        f"pip install {pip_name}=={duckdb.__version__}")
    return found[0]


def _postgres_scanner_file() -> Path:
    """The postgres extension linked as ``postgres_scanner.duckdb_extension``: DuckDB checks
    that a loaded file's name matches the extension's own name."""
    source = extension_file("duckdb_extension_postgres")
    if source.name == "postgres_scanner.duckdb_extension":
        return source
    folder = Path(tempfile.gettempdir()) / f"bemp-duckdb-ext-{duckdb.__version__}-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "postgres_scanner.duckdb_extension"
    if not link.exists() or link.resolve() != source.resolve():
        temporary = folder / f".{os.getpid()}.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(source)
        temporary.replace(link)  # atomic: a parallel worker never sees a half-made link
    return link


def open_lake(target: LakeTarget, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with the lake attached as ``lake`` and selected."""
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False})
    try:
        con.execute(f"LOAD '{extension_file('duckdb_extension_ducklake')}'")
        con.execute(f"LOAD '{_postgres_scanner_file()}'")
        options = [f"DATA_PATH {_quote(target.data_path)}", *(["READ_ONLY"] if read_only else [])]
        # the first attach creates the catalog tables: two processes doing it at once conflict
        retrying(lambda: con.execute(f"ATTACH {_quote(target.catalog)} AS {CATALOG} ({', '.join(options)})"),
                 what="attach the DuckLake catalog", retryable=lambda exc: is_conflict(exc) or is_concurrent_init(exc))
        con.execute(f"USE {CATALOG}")
        con.execute(f"SET ducklake_max_retry_count = {COMMIT_RETRIES}")
        # an in-memory session spills beyond its memory cap into ./.tmp of whatever folder the
        # process runs in (the repository, a pod's working dir); a folder of its own instead
        con.execute("SET temp_directory = ?", [str(spill_directory())])
    except duckdb.Error as exc:
        con.close()
        if isinstance(exc, LakeError):
            raise
        if read_only and "does not exist" in str(exc):
            raise LakeError(f"no DuckLake warehouse at {target.describe()} yet: run the pipeline on it first "
                            f"(`bemp --backend lake run` or `make run-lake`)") from None
        raise LakeError(f"cannot open the DuckLake warehouse {target.describe()}: {str(exc).splitlines()[0]}. "
                        f"Check that PostgreSQL is reachable with these settings and that the data path exists "
                        f"and is writable.") from None
    return con


SPILL_ROOT = Path(tempfile.gettempdir()) / "bemp-duckdb-spill"


def spill_directory() -> Path:
    """A new folder under SPILL_ROOT for one session's spill beyond DuckDB's memory cap. Each
    session needs its own: DuckDB names its spill files alike in every session
    (duckdb_temp_storage_DEFAULT-0.tmp) and deletes the folder it created when the session
    closes, so two sessions sharing one would clobber or delete each other's files."""
    SPILL_ROOT.mkdir(exist_ok=True)
    return SPILL_ROOT / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a write-write conflict between concurrent transactions (retryable)."""
    if not isinstance(exc, duckdb.Error):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in CONFLICT_MARKERS)


def is_concurrent_init(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckLake failing to create a fresh catalog's tables because another
    process created them first (PostgreSQL: 'relation ... already exists'); attaching again
    then finds the catalog in place."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and "Failed to initialize DuckLake" in text and "already exists" in text


def conflict_summary(exc: BaseException) -> str:
    """The line of a conflict error that says what collided (DuckDB puts it after a generic one)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return next((line for line in lines if "conflict" in line.lower()), lines[0] if lines else repr(exc))[:200]


def retrying(action: Callable[[], T], attempts: int = DEFAULT_ATTEMPTS, what: str = "transaction",
             sleep: Callable[[float], None] = time.sleep,
             retryable: Callable[[BaseException], bool] = is_conflict) -> T:
    """``action()``, run again after a conflict with another transaction (``retryable``), at
    most ``attempts`` times in all, with a jittered backoff (0.2 s doubling, at most
    MAX_WAIT_S); each retry is logged. ``action`` must be a whole transaction (it is run from
    its start again)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except duckdb.Error as exc:
            if not retryable(exc) or attempt == attempts:
                raise
            wait = min(MAX_WAIT_S, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning("%s: conflict with a concurrent transaction (%s); retry %d/%d in %.1f s",
                        what, conflict_summary(exc), attempt, attempts - 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
