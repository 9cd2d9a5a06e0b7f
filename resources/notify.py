"""Alarm notifications: a webhook (HTTP POST of one JSON event, retried with backoff) and,
optionally, apprise URLs (mail, chat, ...).

The receiver gets the header ``Idempotency-Key: <event id>`` so it can drop a repeat (a run
that died after the POST and before recording it sends again). The URL, which often carries a
secret, and an optional bearer token are read from environment variables when sending: they
are never part of the resource's config, a log line, an error or metadata (only
``scheme://host:port`` is shown).
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import requests
from dagster import ConfigurableResource

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
# urllib3 logs each request line, path and query included, at DEBUG: a URL's secret would leak
URL_LOGGERS = ("urllib3.connectionpool",)


@contextmanager
def quiet_url_logging():
    """Raise the URL-logging libraries to INFO while a secret URL is in use."""
    loggers = [logging.getLogger(name) for name in URL_LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


class WebhookNotifier(ConfigurableResource):
    url_env: str = "BEMP_ALARM_WEBHOOK_URL"
    token_env: str | None = None
    timeout_s: float = 5.0
    max_attempts: int = 3
    backoff_s: float = 0.5

    def configured(self) -> bool:
        return bool(os.environ.get(self.url_env))

    def target(self) -> str:
        """Where messages go, without path, query or credentials (safe to log)."""
        url = os.environ.get(self.url_env, "")
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else f"(${self.url_env} not set)"

    def send(self, payload: str, key: str) -> tuple[bool, int, str | None]:
        """POST ``payload``; (delivered, attempts made, error without secrets)."""
        url = os.environ.get(self.url_env)
        if not url:
            return False, 0, f"{self.url_env} is not set"
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        token = os.environ.get(self.token_env) if self.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"

        def once():
            try:
                with quiet_url_logging():
                    response = requests.post(url, data=payload.encode(), headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:  # the message holds the URL: keep only the kind
                return False, f"{type(exc).__name__} to {self.target()}", True
            if response.ok:
                return True, None, False
            return False, f"HTTP {response.status_code} from {self.target()}", response.status_code in RETRY_STATUS

        return _retried(once, self.max_attempts, self.backoff_s)


def _retried(attempt_once, max_attempts: int, backoff_s: float) -> tuple[bool, int, str | None]:
    """Call ``attempt_once() -> (delivered, error, retry)`` until delivered, not retriable or
    out of attempts, sleeping ``backoff_s`` doubling in between."""
    error = None
    for attempt in range(1, max_attempts + 1):
        delivered, error, retry = attempt_once()
        if delivered or not retry:
            return delivered, attempt, error
        if attempt < max_attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    return False, max_attempts, error


class AppriseNotifier(ConfigurableResource):
    """Each message to every apprise URL of ``$urls_env`` (space-separated). apprise has no
    idempotency key: a receiver may see a repeat if a run dies between sending and recording."""

    urls_env: str = "BEMP_ALARM_APPRISE_URLS"
    max_attempts: int = 3
    backoff_s: float = 0.5

    def target(self) -> str:
        count = len(os.environ.get(self.urls_env, "").split())
        return f"{count} apprise URL(s) from ${self.urls_env}"

    def send(self, payload: str, key: str) -> tuple[bool, int, str | None]:
        import json

        import apprise

        urls = os.environ.get(self.urls_env, "").split()
        if not urls:
            return False, 0, f"{self.urls_env} is not set"
        event = json.loads(payload)
        title = f"[{event['severity']}] {event['rule']} {event['event']}: {event['subject']}"
        body = f"{event['message']} (data {event['data_ts']}, value {event['value']}, event {key})"

        def once():
            sender = apprise.Apprise()
            for url in urls:
                sender.add(url)
            with quiet_url_logging():
                delivered = bool(sender.notify(title=title, body=body))
            return delivered, None if delivered else f"apprise: not delivered to every one of {self.target()}", True

        return _retried(once, self.max_attempts, self.backoff_s)
