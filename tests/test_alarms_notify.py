"""Notifications through the outbox to a real HTTP receiver on localhost: down, then up; retries
with backoff; the idempotency key; no secret in logs or metadata (real Dagster instance)."""
from __future__ import annotations

import json
import logging
import shutil
import socket
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import duckdb
import pandas as pd
import pytest
from dagster import AssetKey, instance_for_test, materialize

from bemp_assets.definitions import build_definitions
from bemp_assets.domain.alarms import deliver_notifications, enqueue_notifications, evaluate_all
from bemp_assets.domain.config import AlarmsConfig, ThresholdRule
from bemp_assets.domain.warehouse import prepare
from resources.notify import WebhookNotifier

from .conftest import CONFIG_DIR, make_settings
from .test_alarms_engine import add_readings

SECRET = "tok-9f8e7d6c5b4a"


class Receiver:
    """A webhook receiver on a fixed port: records each POST; answers ``fail_first`` 503s first."""

    def __init__(self, port: int, fail_first: int = 0):
        self.received: list[dict] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.received.append({"key": self.headers["Idempotency-Key"], "auth": self.headers.get("Authorization"),
                                           "path": self.path, "body": json.loads(body)})
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOW = datetime(2024, 1, 2, tzinfo=timezone.utc)
HOT = ThresholdRule(name="hot", severity="critical", select=[{"pattern": "room.*"}], type="threshold", upper=10)


def warehouse_with_events(con, config, now):
    """Two events: raised at now-60 min (11), cleared at now-50 min (9)."""
    start = pd.Timestamp(now) - pd.Timedelta(minutes=60)
    add_readings(con, "room.temp", pd.DataFrame({"ts": [start, start + pd.Timedelta(minutes=10)], "value": [11.0, 9.0]}), now)
    evaluate_all(con, config.model_copy(update={"alarms": AlarmsConfig(rules=[HOT])}), now)
    return con.execute("SELECT event_id, event FROM ops.alarm_events ORDER BY data_ts").fetchall()


def test_outbox_delivers_after_a_receiver_that_was_down(con, config, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # even at DEBUG, no library logs the URL's token
    port = free_port()
    monkeypatch.setenv("BEMP_ALARM_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook?token={SECRET}")
    events = warehouse_with_events(con, config, NOW)
    assert [e for _, e in events] == ["raised", "cleared"]
    assert enqueue_notifications(con, "webhook", NOW, 86400) == {"pending": 2, "skipped": 0}
    assert enqueue_notifications(con, "webhook", NOW, 86400) == {"pending": 0, "skipped": 0}  # anti-join
    notifier = WebhookNotifier(max_attempts=3, backoff_s=0.01, timeout_s=2)
    assert deliver_notifications(con, "webhook", notifier.send, NOW) == {"sent": 0, "failed": 2}
    rows = con.execute("SELECT status, attempts, last_error FROM ops.notifications ORDER BY created_at").fetchall()
    assert rows == [("pending", 3, f"ConnectionError to http://127.0.0.1:{port}")] * 2
    receiver = Receiver(port, fail_first=1)  # up now, but its first answer is a 503: retried
    try:
        assert deliver_notifications(con, "webhook", notifier.send, NOW + timedelta(minutes=5)) == {"sent": 2, "failed": 0}
        assert deliver_notifications(con, "webhook", notifier.send, NOW + timedelta(minutes=10)) == {"sent": 0, "failed": 0}
    finally:
        receiver.close()
    assert [r["key"] for r in receiver.received] == [event_id for event_id, _ in events]
    first = receiver.received[0]["body"]
    assert (first["event"], first["rule"], first["severity"], first["subject"], first["value"], first["data_ts"]) == (
        "raised", "hot", "critical", "room.temp", 11.0, "2024-01-01T23:00:00Z")
    assert receiver.received[0]["path"] == f"/hook?token={SECRET}"
    final = con.execute("SELECT status, attempts, last_error, sent_at FROM ops.notifications ORDER BY created_at").fetchall()
    assert final == [("sent", 5, None, NOW + timedelta(minutes=5)), ("sent", 4, None, NOW + timedelta(minutes=5))]
    assert SECRET not in caplog.text


def test_old_events_are_recorded_but_not_sent(con, config):
    warehouse_with_events(con, config, NOW)
    # detected 60 min (raise) and 50 min (clear) after their data instants; max age 55 min
    assert enqueue_notifications(con, "webhook", NOW, 55 * 60) == {"pending": 1, "skipped": 1}
    statuses = con.execute("SELECT status, count(*) FROM ops.notifications GROUP BY ALL ORDER BY 1").fetchall()
    assert statuses == [("pending", 1), ("skipped", 1)]


def test_no_secret_in_dagster_logs_or_metadata(tmp_path, monkeypatch, capsys):
    """The assets through a real instance, with the webhook down: the URL's token and the
    bearer token appear in no event log line, no metadata value and nothing printed."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    (folder / "alarms.yaml").write_text(
        "alarms:\n  webhook: {url_env: TEST_HOOK_URL, token_env: TEST_HOOK_TOKEN, max_attempts: 2, backoff_s: 0.01}\n"
        "  rules:\n    - {name: hot, severity: critical, type: threshold, upper: 10, select: {pattern: 'room.*'}}\n"
        "    - {name: typo, severity: info, type: no_data, select: {pattern: 'rooom.*'}}\n")
    settings = make_settings(tmp_path / "home")
    settings = type(settings)(**{**settings.__dict__, "config_dir": folder})
    monkeypatch.setenv("TEST_HOOK_URL", f"http://user:{SECRET}@127.0.0.1:{free_port()}/hook?token={SECRET}")
    monkeypatch.setenv("TEST_HOOK_TOKEN", SECRET + "-bearer")
    settings.warehouse.parent.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    with duckdb.connect(str(settings.warehouse)) as con:
        prepare(con)
        start = pd.Timestamp(now).floor("10min") - pd.Timedelta(hours=1)
        add_readings(con, "room.temp", pd.DataFrame({"ts": [start], "value": [12.0]}), now)
    defs = build_definitions(settings)
    keys = [AssetKey(["alarms", "events"]), AssetKey(["alarms", "notifications"])]
    assets = [a for a in defs.assets if set(a.keys) & set(keys)]
    with instance_for_test() as instance:
        result = materialize(assets, resources=defs.resources, instance=instance)
        assert result.success
        board = result.asset_materializations_for_node("alarms__events")[0].metadata
        assert board["active"].value == 1 and board["active_critical"].value == 1
        assert "hot" in board["board"].value and "room.temp" in board["board"].value
        assert (settings.artifacts / "alarm_events.png").read_bytes()[:4] == b"\x89PNG"
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert not checks["rules_select_variables"].passed and checks["rules_select_variables"].severity.value == "WARN"
        assert checks["rules_select_variables"].metadata["rules_without_variables"].value == ["typo"]
        assert not checks["outbox_drained"].passed
        texts = [record.user_message or "" for record in instance.all_logs(result.run_id)]
        texts += [str(record.dagster_event.event_specific_data) for record in instance.all_logs(result.run_id)
                  if record.dagster_event is not None]
    printed = capsys.readouterr()
    blob = "\n".join(texts) + printed.out + printed.err
    assert "notifications to http://127.0.0.1:" in blob and "0 sent, 1 not delivered" in blob and "1 notification(s) pending" in blob
    assert SECRET not in blob
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        stored = con.execute("SELECT status, attempts, last_error FROM ops.notifications").fetchall()
    assert len(stored) == 1 and stored[0][:2] == ("pending", 2) and SECRET not in stored[0][2]


def test_apprise_channel_delivers_after_its_receiver_was_down(con, config, monkeypatch):
    """An apprise json:// URL to a real localhost receiver: down (every attempt fails, the
    message stays pending), then up (delivered once, title and body from the event)."""
    from resources.notify import AppriseNotifier

    port = free_port()
    monkeypatch.setenv("TEST_APPRISE_URLS", f"json://127.0.0.1:{port}/notify")
    warehouse_with_events(con, config, NOW)
    assert enqueue_notifications(con, "apprise", NOW, 86400) == {"pending": 2, "skipped": 0}
    sender = AppriseNotifier(urls_env="TEST_APPRISE_URLS", max_attempts=2, backoff_s=0.01)
    assert deliver_notifications(con, "apprise", sender.send, NOW) == {"sent": 0, "failed": 2}
    assert con.execute("SELECT DISTINCT status, attempts, last_error FROM ops.notifications").fetchall() == [
        ("pending", 2, "apprise: not delivered to every one of 1 apprise URL(s) from $TEST_APPRISE_URLS")]
    receiver = Receiver(port)
    try:
        assert deliver_notifications(con, "apprise", sender.send, NOW) == {"sent": 2, "failed": 0}
    finally:
        receiver.close()
    titles = [r["body"]["title"] for r in receiver.received]
    assert titles == ["[critical] hot raised: room.temp", "[critical] hot cleared: room.temp"]
    assert receiver.received[0]["body"]["message"].startswith("value 11 beyond upper 10 (data 2024-01-01T23:00:00Z")
