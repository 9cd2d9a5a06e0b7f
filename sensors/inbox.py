"""Watch the inbox and request one run per new or changed CSV content, over the days it holds.

A file is requested unless the warehouse already holds its content: the raw assets record each
file they ingested in full, by name and SHA-256, in the instance's key-value store
(bemp_assets/inbox_ledger.py), however the run was started (`bemp run`, the UI, this sensor).
So the first `make dev` after `make run` requests nothing, a rewritten file is requested once,
and a file only touched (new mtime, same bytes) is not.

The cursor maps file name -> {version (mtime and size), sha256}: a file whose version did not
change is not read again, so a tick hashes only new or rewritten files. A version already
requested is not requested again (its run key repeats the version, so a lost cursor update
cannot start a second run either). The sensor reads files and the instance; it never opens
the warehouse.
"""

import json
from pathlib import Path

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.inbox import InboxFile, list_inbox, source_for
from bemp_assets.inbox_ledger import file_span, ingested, sha256_of
from bemp_assets.partitions import clip_days

__all__ = ["build_inbox_sensor", "clip_days"]


def read_cursor(text: str | None) -> dict[str, dict]:
    """name -> {"version", "sha256"}; the older form name -> version is read without hashes."""
    seen = json.loads(text) if text else {}
    return {name: entry if isinstance(entry, dict) else {"version": entry} for name, entry in seen.items()}


def content_hash(f: InboxFile, before: dict | None) -> str:
    """The file's SHA-256, read again only when its version (mtime, size) changed."""
    if before and before.get("version") == f.version and before.get("sha256"):
        return before["sha256"]
    return sha256_of(f.path)


def build_inbox_sensor(job, inbox: Path, config: BempConfig, partitions: TimeWindowPartitionsDefinition,
                       downstream: list[AssetKey], name: str = "inbox_sensor", folder: str | None = None,
                       days_cache_file: Path | None = None):
    """``downstream``: the assets every run rebuilds after the file's raw asset (clean, agg).
    ``folder``: watch a source's own folder (its ``inbox`` key, e.g. the API's landing area)
    instead of the inbox; ``inbox`` is then that folder. ``days_cache_file``: where each file's
    days are kept (:func:`inbox.days_cache`, the same file the raw runs read)."""
    @sensor(name=name, job=job, minimum_interval_seconds=30,
            default_status=DefaultSensorStatus.RUNNING,
            description=f"Requests a run for each CSV in {inbox} whose content the warehouse does not hold yet, "
                        "over the days it holds.")
    def inbox_sensor(context: SensorEvaluationContext):
        seen, files = read_cursor(context.cursor), list_inbox(inbox)
        current = {f.name: {"version": f.version, "sha256": content_hash(f, seen.get(f.name))} for f in files}
        done = ingested(context.instance, [f.name for f in files])
        requests, skipped, held = [], [], []
        for f in files:
            if seen.get(f.name, {}).get("version") == f.version:
                continue  # this version was handled on an earlier tick
            if done.get(f.name) == current[f.name]["sha256"]:
                held.append(f.name)
                continue
            request = request_for(f, config, partitions, downstream, folder, cache=days_cache_file)
            if isinstance(request, str):
                skipped.append(request)
            else:
                context.log.info(f"{f.name}: requesting {request.tags[ASSET_PARTITION_RANGE_START_TAG]} .. "
                                 f"{request.tags[ASSET_PARTITION_RANGE_END_TAG]}")
                requests.append(request)
        for reason in skipped:
            context.log.warning(reason)
        held_note = [f"{len(held)} new or changed file(s) already in the warehouse: {', '.join(sorted(held))}"] if held else []
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps(current, sort_keys=True),
            skip_reason=None if requests else SkipReason("; ".join(skipped + held_note) or "no new or changed files"),
        )

    return inbox_sensor


def request_for(f: InboxFile, config: BempConfig, partitions: TimeWindowPartitionsDefinition,
                downstream: list[AssetKey], folder: str | None = None, cache: Path | None = None) -> RunRequest | str:
    """The run for one file (its source's raw asset and the layers after it, over the file's
    days), or the reason there is none."""
    source = source_for(f.name, config, folder)
    if source is None:
        return f"{f.name}: no source pattern matches"
    span = file_span(f.path, source, config, partitions, cache)
    if span is None:
        return f"{f.name}: no readable timestamps inside the partitions; runs will report it"
    return RunRequest(
        run_key=f"{f.name}:{f.version}",
        # the selection is named, so the automation sees that clean and agg were in the run
        asset_selection=[AssetKey(["raw", source.name]), *downstream],
        tags={ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[1], "bemp/file": f.name},
    )
