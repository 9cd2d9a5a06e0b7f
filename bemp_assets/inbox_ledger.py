"""Which inbox files the warehouse holds in full: written by the raw CSV assets, read by the
inbox sensor, so a file is never requested again however it got in (`bemp run`, the UI, a
sensor run, a backfill).

Where: the Dagster instance's key-value store (``run_storage.get_cursor_values`` /
``set_cursor_values``, the table the daemons keep their cursors in), one key per file name
holding the SHA-256 of the content last ingested in full. Why there and not in the
materialisation metadata the raw assets already write: the sensor must not open the DuckDB
file, and reading metadata would mean scanning every materialisation of every raw asset
(a run over a partial window, or a re-run of another day, would otherwise hide what an
earlier run did); the key-value store answers "these names" in one indexed query per tick,
whatever the length of the history. It lives with the instance, like the runs it records.

"In full" means the run's partition window covered every day the file can touch
(:func:`bemp_assets.domain.inbox.file_days`, clipped to the partitions, the same span the
sensor requests): a run over part of the file leaves it unrecorded.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from dagster import DagsterInstance, TimeWindowPartitionsDefinition

from bemp_assets.domain.config import BempConfig, SourceConfig
from bemp_assets.domain.inbox import file_days
from bemp_assets.partitions import clip_days

KEY_PREFIX = "bemp/inbox_ingested/"
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_span(path: Path, source: SourceConfig, config: BempConfig,
              partitions: TimeWindowPartitionsDefinition, cache: Path | None = None) -> tuple[str, str] | None:
    """First and last partition key the file may touch (None: no readable timestamp inside
    the partitions). The sensor requests this span; a run covering it ingested the file.
    ``cache``: see :func:`inbox.file_days` (the run then finds the file's days there)."""
    days = file_days(path, source, config, cache=cache)
    return clip_days(partitions, *days) if days else None


def ingested(instance: DagsterInstance, names: list[str]) -> dict[str, str]:
    """File name -> SHA-256 of the content last ingested in full, for the names recorded."""
    values = instance.run_storage.get_cursor_values({KEY_PREFIX + name for name in names})
    return {key[len(KEY_PREFIX):]: json.loads(value)["sha256"] for key, value in values.items()}


def record_ingested(instance: DagsterInstance, files: dict[str, str], run_id: str) -> None:
    """Record ``files`` (name -> SHA-256) as ingested in full by run ``run_id``."""
    if not files:
        return
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    instance.run_storage.set_cursor_values({
        KEY_PREFIX + name: json.dumps({"sha256": sha, "run_id": run_id, "at": at}) for name, sha in files.items()})
