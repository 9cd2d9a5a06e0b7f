"""Shared HTTP behaviour of the source clients: auth, timeouts, retries, paging, clear errors.

One place for it so the gateway and iPanel clients differ only in their endpoints. Design rules:
- the token travels in a header only (never in a URL) and never appears in a log line, an
  exception message or the resource's repr;
- GETs are idempotent, so connection errors, timeouts, 5xx and 429 are retried with exponential
  backoff (429 waits what Retry-After says), up to ``max_attempts`` requests in all;
- 401/403, other 4xx and malformed JSON are not retried: they are contract or configuration
  errors, raised at once with the endpoint named and what was expected.
"""
from __future__ import annotations

import email.utils
import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar, Iterator

import requests
from dagster import ConfigurableResource, get_dagster_logger
from pydantic import Field, PrivateAttr

from . import wire


class SourceError(RuntimeError):
    """A source request failed; the message names the endpoint (never the token)."""


class SourceAuthError(SourceError):
    """401/403: the token is missing, wrong or lacks rights. Not retried."""


class SourceResponseError(SourceError):
    """The response is not what the contract says (malformed or truncated JSON, other 4xx)."""


class SourceUnavailable(SourceError):
    """Connection errors, timeouts, 5xx or 429 persisted through every attempt."""


RETRY_STATUS = {429, 500, 502, 503, 504}
# A sensor tick has 60 s and makes a few probes: short timeouts and one retry at most, so a
# source that is down costs a tick about ten seconds, not minutes of retries.
PROBE_SETTINGS = {"connect_timeout_s": 2.0, "read_timeout_s": 5.0, "max_attempts": 2, "backoff_s": 0.5}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class HttpSourceResource(ConfigurableResource):
    """Base of the source clients. ``base_url`` and ``token`` come from EnvVar in definitions."""

    base_url: str = Field(description="e.g. http://localhost:8701 (env BEMP_GATEWAY_URL / BEMP_IPANEL_URL)")
    token: str = Field(repr=False, description="bearer token (env BEMP_GATEWAY_TOKEN / BEMP_IPANEL_TOKEN)")
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = Field(5, ge=1, description="requests in all, the first included")
    backoff_s: float = Field(0.5, ge=0, description="first wait; doubles per retry")
    max_backoff_s: float = Field(30.0, ge=0, description="cap on one backoff wait")
    max_retry_after_s: float = Field(120.0, ge=0, description="cap on a server's Retry-After")
    page_size: int = Field(1000, ge=1, le=wire.MAX_PAGE_SIZE)

    # streams a polling sensor probes: name -> (windowed endpoint, its time field)
    PROBED: ClassVar[dict[str, tuple[str, str]]] = {}

    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)

    def with_sleep(self, sleep: Callable[[float], None]) -> "HttpSourceResource":
        """Replace the wait between retries (tests record the waits instead of sleeping)."""
        self._sleep = sleep
        return self

    # --- one request ----------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None, session: requests.Session | None = None) -> Any:
        """GET ``path`` with retries; the parsed JSON body."""
        endpoint = self._endpoint(path)
        own = session is None
        session = session or requests.Session()
        try:
            response = self._with_retries(endpoint, lambda: session.get(
                self.base_url.rstrip("/") + path, params=params,
                headers={wire.AUTH_HEADER: wire.auth_value(self.token), "Accept": "application/json"},
                timeout=(self.connect_timeout_s, self.read_timeout_s),
            ))
        finally:
            if own:
                session.close()
        try:
            return response.json()
        except (json.JSONDecodeError, requests.JSONDecodeError) as exc:
            raise SourceResponseError(
                f"{endpoint}: malformed or truncated JSON ({len(response.content)} bytes, {exc}); "
                f"expected a JSON object with a '{wire.DATA}' list"
            ) from None

    def _with_retries(self, endpoint: str, send: Callable[[], requests.Response]) -> requests.Response:
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            wait = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            try:
                response = send()
            except requests.Timeout:
                problem = f"timed out (connect {self.connect_timeout_s}s, read {self.read_timeout_s}s)"
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                if response.status_code < 400:
                    return response
                self._raise_unless_retryable(endpoint, response)
                problem = f"HTTP {response.status_code}"
                if response.status_code == 429:
                    after = retry_after_seconds(response.headers.get("Retry-After"))
                    wait = min(self.max_retry_after_s, after) if after is not None else wait
            if attempt < self.max_attempts:
                get_dagster_logger().warning(f"{endpoint}: {problem}; retry {attempt}/{self.max_attempts - 1} in {wait:g}s")
                self._sleep(wait)
        raise SourceUnavailable(f"{endpoint}: gave up after {self.max_attempts} attempts, last: {problem}")

    @staticmethod
    def _raise_unless_retryable(endpoint: str, response: requests.Response) -> None:
        status = response.status_code
        if status in RETRY_STATUS or status >= 500:
            return
        if status in (401, 403):
            raise SourceAuthError(f"{endpoint}: HTTP {status}, the token was refused; check the *_TOKEN env var")
        raise SourceResponseError(f"{endpoint}: HTTP {status}: {response.text[:300]}")

    # --- paging ---------------------------------------------------------------------------
    def pages(self, path: str, params: dict[str, Any] | None = None, order: str = "asc",
              page_size: int | None = None) -> Iterator[list[dict]]:
        """Every page of a paged endpoint, following ``next_page`` until it is null."""
        page = 1
        with requests.Session() as session:
            while True:
                records, nxt = self.page(path, {**(params or {}), **wire.page_params(page, page_size or self.page_size, order)}, session)
                yield records
                if nxt is None:
                    return
                if nxt <= page:
                    raise SourceResponseError(f"{self._endpoint(path)} page {page}: expected next_page > {page}, got {nxt}")
                page = nxt

    def page(self, path: str, query: dict[str, Any], session: requests.Session | None = None) -> tuple[list, int | None]:
        """One page: (records, next page or None)."""
        try:
            return wire.unwrap(self.get_json(path, query, session))
        except ValueError as exc:
            raise SourceResponseError(f"{self._endpoint(path)} page {query.get(wire.PAGE, 1)}: {exc}") from None

    def _endpoint(self, path: str) -> str:
        return f"GET {self.base_url.rstrip('/')}{path}"

    def fetch_all(self, path: str, since: datetime | None = None, until: datetime | None = None) -> list[dict]:
        """All records of a windowed endpoint in [since, until), as served (no dedup, no sorting)."""
        return [r for page in self.pages(path, wire.window_params(since, until)) for r in page]

    def newest_time(self, path: str, field: str, since: datetime | None = None, until: datetime | None = None) -> datetime | None:
        """Time of the newest record in [since, until) (one request of one record): a cheap probe."""
        return self.edge_time(path, field, "desc", since, until)

    def oldest_time(self, path: str, field: str, since: datetime | None = None, until: datetime | None = None) -> datetime | None:
        """Time of the oldest record in [since, until) (one request of one record): a cheap probe."""
        return self.edge_time(path, field, "asc", since, until)

    def first_time_after(self, stream: str, after: datetime | None) -> datetime | None:
        """Time of the first record of ``stream`` strictly after ``after`` (all records when None):
        where a poll resumes, past any stretch the source has no data for."""
        path, field = self.PROBED[stream]
        # the wire has whole seconds and `since` is inclusive
        return self.oldest_time(path, field, since=None if after is None else after + timedelta(seconds=1))

    def last_time_in(self, stream: str, since: datetime | None = None, until: datetime | None = None) -> datetime | None:
        """Time of the last record of ``stream`` in [since, until): where a bounded poll ends."""
        path, field = self.PROBED[stream]
        return self.newest_time(path, field, since, until)

    def edge_time(self, path: str, field: str, order: str, since: datetime | None = None,
                  until: datetime | None = None) -> datetime | None:
        records, _ = self.page(path, {**wire.window_params(since, until), **wire.page_params(1, 1, order)})
        if not records:
            return None
        try:
            return wire.parse_time(records[0][field])
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceResponseError(
                f"{self._endpoint(path)}: expected '{field}' as ISO 8601 UTC in {records[0]!r} ({exc})"
            ) from None
