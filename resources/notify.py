"""Alarm notifications over a webhook: HTTP POST of one JSON event, retried with backoff.

The receiver gets the header ``Idempotency-Key: <event id>`` so it can drop a repeat (a run
that died after the POST and before recording it sends again). The URL, which often carries a
secret, and an optional bearer token are read from environment variables when sending: they
are never part of the resource's config, a log line, an error or metadata (only
``scheme://host:port`` is shown).
"""
from __future__ import annotations

import os
import time
from urllib.parse import urlsplit

import requests
from dagster import ConfigurableResource

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


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
        error = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = requests.post(url, data=payload.encode(), headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:  # the message holds the URL: keep only the kind
                error = f"{type(exc).__name__} to {self.target()}"
            else:
                if response.ok:
                    return True, attempt, None
                error = f"HTTP {response.status_code} from {self.target()}"
                if response.status_code not in RETRY_STATUS:
                    return False, attempt, error
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return False, self.max_attempts, error
