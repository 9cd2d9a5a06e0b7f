"""Poll the HTTP sources: request a run when a source has data newer than what is committed.

The cursor is the newest timestamp *acknowledged*: the ``acknowledged_until`` that the raw
asset records in its materialisation after committing to the warehouse. A run that fails
records nothing, so the next tick asks for the same days again; while a run for the source is
queued or in progress no second one is requested. The tick itself makes one small request per
source (the newest timestamp), never the bulk fetch, and never opens the warehouse.
"""
import os
from datetime import datetime

import pandas as pd
from dagster import (
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.domain.config import BempConfig
from resources import GatewayClient, IPanelClient

from bemp_assets.partitions import clip_days

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
DOWNSTREAM = [AssetKey(["clean", "measurements"]), AssetKey(["agg", "hourly"]), AssetKey(["agg", "daily"])]


def acknowledged(instance, key: AssetKey) -> datetime | None:
    """The newest timestamp the last successful materialisation of ``key`` committed."""
    event = instance.get_latest_materialization_event(key)
    value = event.asset_materialization.metadata.get("acknowledged_until") if event else None
    return pd.Timestamp(value.value).to_pydatetime() if value is not None and value.value else None


def poll_request(context: SensorEvaluationContext, source: str, keys: list[AssetKey], client,
                 newest: datetime | None, partitions: TimeWindowPartitionsDefinition, tz: str) -> SensorResult | SkipReason:
    """The sensor body shared by both sources, once the newest source timestamp is known.

    The cursor only moves forward: it is the larger of the saved cursor and what the latest
    materialisations acknowledge (a nightly re-poll of older days, or a run that found no rows,
    acknowledges less and must not pull the cursor back). Without any cursor, the first request
    starts at the source's oldest record."""
    acks = [acknowledged(context.instance, k) for k in keys]
    latest_ack = min(acks) if acks and all(acks) else None
    saved = pd.Timestamp(context.cursor).to_pydatetime() if context.cursor else None
    cursor = max((c for c in (saved, latest_ack) if c), default=None)
    if newest is None:
        return SkipReason(f"{source}: the source holds no records")
    if cursor is not None and newest <= cursor:
        return SensorResult(skip_reason=SkipReason(f"{source}: nothing newer than {cursor.isoformat()}"),
                            cursor=cursor.isoformat())
    busy = context.instance.get_run_records(RunsFilter(statuses=IN_FLIGHT, tags={"bemp/poll": source}), limit=1)
    if busy:
        return SkipReason(f"{source}: run {busy[0].dagster_run.run_id} still in flight")
    start_from = cursor or client.earliest_time() or newest
    span = clip_days(partitions, pd.Timestamp(start_from).tz_convert(tz).date(), pd.Timestamp(newest).tz_convert(tz).date())
    if span is None:
        return SkipReason(f"{source}: new data up to {newest.isoformat()} lies outside the partitions")
    context.log.info(f"{source}: new data up to {newest.isoformat()} (acknowledged {cursor}); requesting {span[0]} .. {span[1]}")
    return SensorResult(
        run_requests=[RunRequest(asset_selection=[*keys, *(DOWNSTREAM if source == "gateway" else [])],
                                 tags={ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[1],
                                       "bemp/poll": source})],
        cursor=cursor.isoformat() if cursor else None,
    )


def _client(cls, prefix: str):
    url, token = os.environ.get(f"BEMP_{prefix}_URL"), os.environ.get(f"BEMP_{prefix}_TOKEN")
    if not url or not token:
        return None
    return cls(base_url=url, token=token)


def _newest_trip_or_charge(client: IPanelClient):
    return max((t for t in (client.latest_trip_time(), client.latest_charge_time()) if t), default=None)


# name, client class, env prefix, asset keys, probe of the newest timestamp
SOURCES = [
    ("gateway", GatewayClient, "GATEWAY", [AssetKey(["raw", "gateway_measurements"])], GatewayClient.latest_time),
    ("ipanel", IPanelClient, "IPANEL", [AssetKey(["raw", n]) for n in ("ipanel_trips", "ipanel_charger_status", "ipanel_charges")],
     _newest_trip_or_charge),
]


def build_live_sensors(job, partitions: TimeWindowPartitionsDefinition, config: BempConfig):
    interval, tz = config.live_sources.poll_seconds, config.site.timezone

    def build(source: str, cls, prefix: str, keys: list[AssetKey], newest):
        @sensor(name=f"{source}_sensor", job=job, minimum_interval_seconds=interval,
                default_status=DefaultSensorStatus.RUNNING,
                description=f"Polls the {source} source's newest timestamp; requests the days not yet acknowledged.")
        def poll(context: SensorEvaluationContext):
            client = _client(cls, prefix)
            if client is None:
                return SkipReason(f"BEMP_{prefix}_URL / BEMP_{prefix}_TOKEN are not set (see docs/sources.md)")
            return poll_request(context, source, keys, client, newest(client), partitions, tz)

        return poll

    return [build(*spec) for spec in SOURCES]
