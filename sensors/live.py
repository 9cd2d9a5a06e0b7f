"""Poll the HTTP sources: request a run for the days a source holds data newer than what is committed.

Acknowledged: per probed stream (gateway measurements; iPanel trips and charges), the newest
record time the raw asset committed, recorded as ``acknowledged_until`` in its
materialisation. A run that fails records nothing, so the next tick asks for the same days
again; the cursor only moves forward (a nightly re-poll acknowledges older data).

A tick never fetches data and never opens the warehouse. It asks the source for the first
record after what is acknowledged (one record), then for the last record within
``live_sources.max_days_per_run`` days of it (one record), and requests those days: after a
long silence it starts where the source's data starts again, not at the old cursor, and a
long catch-up goes in runs of bounded size, one at a time per source (no request while a run
of the source is queued or in progress); the next tick continues after what that run
committed.

A source that does not answer (down, timing out, refusing the token) gives a skipped tick with
a one-line reason, and the sensor backs off: no probe for 1, 2, 4 .. 30 minutes.

The cursor is a small JSON: {"acknowledged_until": {stream: time}, and while failing,
"failures", "next_try", "error"}. The older cursor, one ISO time, is read as every stream's.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

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
from bemp_assets.partitions import clip_days
from resources import GatewayClient, IPanelClient
from resources.http import PROBE_SETTINGS, HttpSourceResource, SourceAuthError, SourceError, SourceUnavailable

IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
DOWNSTREAM = [AssetKey(["clean", "measurements"]), AssetKey(["agg", "hourly"]), AssetKey(["agg", "daily"])]
BACKOFF_MINUTES = (1, 2, 4, 8, 16, 30)


@dataclass(frozen=True)
class Source:
    name: str
    client: type[HttpSourceResource]
    env: str  # BEMP_<env>_URL / BEMP_<env>_TOKEN
    streams: dict[str, AssetKey]  # probed stream -> the asset acknowledging it
    run_keys: list[AssetKey]  # what a run materialises


SOURCES = [
    Source("gateway", GatewayClient, "GATEWAY", {"measurements": AssetKey(["raw", "gateway_measurements"])},
           [AssetKey(["raw", "gateway_measurements"]), *DOWNSTREAM]),
    Source("ipanel", IPanelClient, "IPANEL",
           {"trips": AssetKey(["raw", "ipanel_trips"]), "charges": AssetKey(["raw", "ipanel_charges"])},
           [AssetKey(["raw", n]) for n in ("ipanel_trips", "ipanel_charger_status", "ipanel_charges")]),
]


def _time(text: str | None) -> datetime | None:
    return pd.Timestamp(text).to_pydatetime() if text else None


@dataclass(frozen=True)
class PollState:
    """What the sensor remembers between ticks (its cursor)."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # stream -> ISO time
    failures: int = 0
    next_try: str | None = None
    error: str | None = None

    @classmethod
    def load(cls, text: str | None, streams) -> "PollState":
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:  # the older cursor: one acknowledged time for the whole source
            return cls({s: text for s in streams})
        return cls(dict(data.get("acknowledged_until") or {}), int(data.get("failures", 0)),
                   data.get("next_try"), data.get("error"))

    def dump(self) -> str:
        failing = {"failures": self.failures, "next_try": self.next_try, "error": self.error} if self.failures else {}
        return json.dumps({"acknowledged_until": self.acknowledged, **failing}, sort_keys=True)

    def waiting(self, now: datetime) -> bool:
        return bool(self.next_try) and now < _time(self.next_try)

    def failed(self, now: datetime, error: str) -> "PollState":
        failures = self.failures + 1
        wait = timedelta(minutes=BACKOFF_MINUTES[min(failures, len(BACKOFF_MINUTES)) - 1])
        return replace(self, failures=failures, next_try=(now + wait).isoformat(timespec="seconds"), error=error)

    def recovered(self) -> "PollState":
        return replace(self, failures=0, next_try=None, error=None)

    def advanced(self, committed: dict[str, datetime | None]) -> "PollState":
        """Each stream's acknowledgement moved forward to what the warehouse committed."""
        acks = dict(self.acknowledged)
        for stream, when in committed.items():
            if when is not None and (stream not in acks or when > _time(acks[stream])):
                acks[stream] = when.isoformat()
        return replace(self, acknowledged=acks)


def acknowledged(instance, key: AssetKey) -> datetime | None:
    """The newest timestamp the last successful materialisation of ``key`` committed (None
    when it committed no record)."""
    event = instance.get_latest_materialization_event(key)
    value = event.asset_materialization.metadata.get("acknowledged_until") if event else None
    return _time(value.value) if value is not None else None


def day_start(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(timezone.utc)


def local_day(when: datetime, tz: str) -> date:
    return when.astimezone(ZoneInfo(tz)).date()


def probe(client: HttpSourceResource, state: PollState, floor: datetime, max_days: int, tz: str) -> tuple[datetime, datetime] | None:
    """(first, last) record time the source holds after what is acknowledged, ``last`` within
    ``max_days`` site days of ``first``; None when there is nothing newer. Raises SourceError."""
    firsts = [t for stream in client.PROBED
              if (t := client.first_time_after(stream, max(_time(state.acknowledged.get(stream)) or floor, floor)))]
    if not firsts:
        return None
    first = min(firsts)
    since = day_start(local_day(first, tz), tz)
    until = day_start(local_day(first, tz) + timedelta(days=max_days), tz)
    return first, max(t for stream in client.PROBED if (t := client.last_time_in(stream, since, until)))


def failure_reason(source: str, url: str, exc: SourceError) -> str:
    what = ("source unreachable" if isinstance(exc, SourceUnavailable)
            else "token refused" if isinstance(exc, SourceAuthError) else "answer not understood")
    detail = " ".join(str(exc).replace(url.rstrip("/"), "").split())  # the url is said once
    return f"{source}: {what} at {url}: {detail}"


def poll(context: SensorEvaluationContext, source: Source, client: HttpSourceResource,
         partitions: TimeWindowPartitionsDefinition, config: BempConfig) -> SensorResult:
    """One tick for one source (both sensors share it)."""
    tz, now = config.site.timezone, datetime.now(timezone.utc)
    state = PollState.load(context.cursor, source.streams)
    if state.waiting(now):
        return skip(state, f"{state.error}; next try after {state.next_try}")
    state = state.advanced({s: acknowledged(context.instance, k) for s, k in source.streams.items()})
    busy = context.instance.get_run_records(RunsFilter(statuses=IN_FLIGHT, tags={"bemp/poll": source.name}), limit=1)
    if busy:
        return skip(state, f"{source.name}: run {busy[0].dagster_run.run_id} still in flight; the next tick continues")
    floor = partitions.start - timedelta(seconds=1)
    try:
        found = probe(client, state, floor, config.live_sources.max_days_per_run, tz)
    except SourceError as exc:
        state = state.failed(now, failure_reason(source.name, client.base_url, exc))
        return skip(state, f"{state.error}; next try after {state.next_try}")
    state = state.recovered()
    if found is None:
        return skip(state, f"{source.name}: nothing newer than {min(state.acknowledged.values(), default='the partitions start')}")
    first, last = found
    span = clip_days(partitions, local_day(first, tz), local_day(last, tz))
    if span is None:
        return skip(state, f"{source.name}: new data {first.isoformat()} .. {last.isoformat()} lies outside the partitions")
    context.log.info(f"{source.name}: records {first.isoformat()} .. {last.isoformat()} not acknowledged; requesting {span[0]} .. {span[1]}")
    return SensorResult(
        run_requests=[RunRequest(asset_selection=source.run_keys,
                                 tags={ASSET_PARTITION_RANGE_START_TAG: span[0], ASSET_PARTITION_RANGE_END_TAG: span[1],
                                       "bemp/poll": source.name})],
        cursor=state.dump(),
    )


def skip(state: PollState, reason: str) -> SensorResult:
    return SensorResult(skip_reason=SkipReason(reason), cursor=state.dump())


def _client(source: Source) -> HttpSourceResource | None:
    url, token = os.environ.get(f"BEMP_{source.env}_URL"), os.environ.get(f"BEMP_{source.env}_TOKEN")
    if not url or not token:
        return None
    return source.client(base_url=url, token=token, **PROBE_SETTINGS)


def build_live_sensors(job, partitions: TimeWindowPartitionsDefinition, config: BempConfig):
    interval = config.live_sources.poll_seconds

    def build(source: Source):
        @sensor(name=f"{source.name}_sensor", job=job, minimum_interval_seconds=interval,
                default_status=DefaultSensorStatus.RUNNING,
                description=f"Asks the {source.name} source for records newer than those committed; requests their days, "
                            f"at most {config.live_sources.max_days_per_run} per run.")
        def poll_source(context: SensorEvaluationContext):
            client = _client(source)
            if client is None:
                return SkipReason(f"BEMP_{source.env}_URL / BEMP_{source.env}_TOKEN are not set (see docs/sources.md)")
            return poll(context, source, client, partitions, config)

        return poll_source

    return [build(source) for source in SOURCES]
