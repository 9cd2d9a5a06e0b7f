"""alarms layer (thin): evaluate the rules of data/config/alarms.yaml, publish the board, send
notifications. The engine is bemp_assets/domain/alarms.py (docs/alarms.md).

Both assets are unpartitioned snapshots over the whole history (the evaluation itself is
incremental). They follow clean and hourly through the automation condition, and the
``bemp_alarms`` schedule runs them every few minutes so that a no-data alarm raises within one
interval after its threshold passes, whether or not new data arrived.
"""

import base64
from datetime import datetime, timezone

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from bemp_assets.automation import follows_upstream
from bemp_assets.domain import alarms
from bemp_assets.domain.config import BempConfig
from bemp_assets.domain.settings import Settings
from resources import WarehouseResource
from resources.notify import AppriseNotifier, WebhookNotifier

from .common import WAREHOUSE_POOL, retry_on_conflict

EVENTS_KEY = AssetKey(["alarms", "events"])
NOTIFICATIONS_KEY = AssetKey(["alarms", "notifications"])
WEBHOOK, APPRISE = "webhook", "apprise"


def channels(config: BempConfig) -> list[str]:
    """The configured notification channels (none: events are stored, nothing is queued)."""
    return [name for name, settings in ((WEBHOOK, config.alarms.webhook), (APPRISE, config.alarms.apprise)) if settings]


def build_alarm_assets(upstream: list[AssetKey], config: BempConfig, settings: Settings) -> list[AssetsDefinition]:
    common = dict(group_name="alarms", pool=WAREHOUSE_POOL, kinds={"duckdb"}, automation_condition=follows_upstream())

    @asset(key=EVENTS_KEY, deps=upstream, **common,
           check_specs=[AssetCheckSpec("rules_select_variables", asset=EVENTS_KEY,
                                       description="every alarm rule selects at least one variable")],
           description="ops.alarm_events and the board ops.alarms_active: every rule of alarms.yaml evaluated "
                       "incrementally over clean (a changed rule replayed over all history).")
    @retry_on_conflict  # DuckLake: a write-write conflict runs the step again
    def alarm_events(context: AssetExecutionContext, warehouse: WarehouseResource):
        now = datetime.now(timezone.utc)
        with warehouse.session() as con:
            results = alarms.evaluate_all(con, config, now)
            unmatched = alarms.rules_without_variables(con, config)
            queued = {channel: alarms.enqueue_notifications(con, channel, now, config.alarms.notify_max_age)
                      for channel in channels(config)}
            board = alarms.board_frame(con, now)
            recent = alarms.recent_events(con)
        for r in results:
            context.log.info(f"rule {r.rule} v{r.version}: {'replayed over all history' if r.replayed else f'from {r.window_start:%Y-%m-%d %H:%M}'}"
                             f", {r.events_in_window} events in the window" + (f", {r.superseded} old events superseded" if r.superseded else ""))
        picture = alarms.render_events(recent, settings.artifacts / "alarm_events.png", _title(recent))
        encoded = base64.b64encode(picture.read_bytes()).decode()
        yield MaterializeResult(metadata={
            "active": len(board),
            **{f"active_{s}": int((board["severity"] == s).sum()) for s in alarms.SEVERITIES},
            "rules": MetadataValue.json({r.rule: r.version for r in results}),
            "replayed": [r.rule for r in results if r.replayed],
            "queued_notifications": MetadataValue.json(queued),
            "board": MetadataValue.md(alarms.format_board(board, markdown=True)),
            "events_png": MetadataValue.md(f"![alarm events](data:image/png;base64,{encoded})"),
            "path": MetadataValue.path(str(picture)),
        })
        yield AssetCheckResult(check_name="rules_select_variables", passed=not unmatched, severity=AssetCheckSeverity.WARN,
                               metadata={"rules_without_variables": unmatched})

    @asset(key=NOTIFICATIONS_KEY, deps=[EVENTS_KEY], **common,
           check_specs=[AssetCheckSpec("outbox_drained", asset=NOTIFICATIONS_KEY,
                                       description="no notification is left pending after delivery")],
           description="Delivers ops.notifications (the outbox) to the webhook; a receiver that is down keeps "
                       "its messages pending for the next run.")
    def alarm_notifications(context: AssetExecutionContext, warehouse: WarehouseResource, notifier: WebhookNotifier,
                            apprise_notifier: AppriseNotifier):
        now = datetime.now(timezone.utc)
        senders = {WEBHOOK: notifier, APPRISE: apprise_notifier}
        with warehouse.session() as con:
            counts = {channel: alarms.deliver_notifications(con, channel, senders[channel].send, now)
                      for channel in channels(config)}
            pending = con.execute("SELECT count(*), max(last_error) FROM ops.notifications WHERE status = 'pending'").fetchone()
        for channel, count in counts.items():
            context.log.info(f"notifications to {senders[channel].target()}: {count['sent']} sent, {count['failed']} not delivered")
        context.log.info(f"{pending[0]} notification(s) pending" + ("" if counts else " (no channel configured)"))
        yield MaterializeResult(metadata={"sent": MetadataValue.json({c: n["sent"] for c, n in counts.items()}),
                                          "pending": int(pending[0]), "channels": channels(config),
                                          "targets": [senders[c].target() for c in counts]})
        yield AssetCheckResult(check_name="outbox_drained", passed=pending[0] == 0, severity=AssetCheckSeverity.WARN,
                               metadata={"pending": int(pending[0]), "last_error": pending[1] or ""})

    return [alarm_events, alarm_notifications]


def _title(recent) -> str:
    if recent.empty:
        return "alarm events: none yet"
    return "alarm events per rule: the 30 days up to each rule's newest event (red raised, green cleared)"


def build_notifiers(config: BempConfig) -> dict:
    """The two channel resources, configured from alarms.yaml (defaults when a channel is off)."""
    webhook, apprise = config.alarms.webhook, config.alarms.apprise
    return {"notifier": WebhookNotifier(**webhook.model_dump()) if webhook else WebhookNotifier(),
            "apprise_notifier": AppriseNotifier(**apprise.model_dump()) if apprise else AppriseNotifier()}
