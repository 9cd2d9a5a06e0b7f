"""Every wire detail of the gateway and iPanel HTTP APIs, in one place.

The real iPanel documentation could not be reached, so paths, auth header, paging, date
parameters and the response envelope are an *assumed* contract (docs/sources.md). To match the
real API, change this module only: the clients (resources/gateway.py, resources/ipanel.py) and
the reference servers (bemp_assets/refservers/) both read it.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

# --- auth ---------------------------------------------------------------------------------
AUTH_HEADER = "Authorization"


def auth_value(token: str) -> str:
    return f"Bearer {token}"


def token_of(header_value: str | None) -> str | None:
    """The token a request carries, or None (server side of :func:`auth_value`)."""
    prefix = "Bearer "
    return header_value[len(prefix):] if header_value and header_value.startswith(prefix) else None


# --- endpoints ----------------------------------------------------------------------------
GATEWAY_MEASUREMENTS = "/api/v1/measurements"  # paged, windowed on `time`
GATEWAY_GATEWAYS = "/api/v1/gateways"  # paged list of gateways and their channels
IPANEL_TRIPS = "/api/v1/vehicles/trips"  # paged, windowed on `date` (trip start)
IPANEL_CHARGER_STATUS = "/api/v1/chargers/status"  # current snapshot, one per charger
IPANEL_CHARGER_STATUS_HISTORY = "/api/v1/chargers/status/history"  # paged, windowed on `lastUpdate`
IPANEL_CHARGES = "/api/v1/chargers/charges"  # paged, windowed on `date` (depot day)

# --- query parameters ---------------------------------------------------------------------
SINCE = "since"  # inclusive, ISO 8601 UTC
UNTIL = "until"  # exclusive, ISO 8601 UTC
PAGE = "page"  # 1-based
PAGE_SIZE = "page_size"
ORDER = "order"  # "asc" (default) or "desc" by the record time
MAX_PAGE_SIZE = 5000

# --- response envelope --------------------------------------------------------------------
DATA = "data"  # list of records
NEXT_PAGE = "next_page"  # int or null when this is the last page
TOTAL = "total"  # records in the window (before any duplication)
ERROR = "error"  # message of a 4xx/5xx JSON body


def format_time(value: datetime) -> str:
    """ISO 8601 UTC with a Z, seconds precision: the form every time field and parameter uses."""
    if value.tzinfo is None:
        raise ValueError(f"expected a time-zone aware datetime, got naive {value!r}")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; accepts any ISO 8601 with an offset or Z."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"expected an ISO 8601 time with Z or an offset, got {text!r}")
    return value.astimezone(timezone.utc)


def page_params(page: int, page_size: int, order: str = "asc") -> dict[str, Any]:
    return {PAGE: page, PAGE_SIZE: page_size, ORDER: order}


def window_params(since: datetime | None, until: datetime | None) -> dict[str, str]:
    params = {}
    if since is not None:
        params[SINCE] = format_time(since)
    if until is not None:
        params[UNTIL] = format_time(until)
    return params


def envelope(records: list, next_page: int | None, total: int) -> dict[str, Any]:
    """The body of a page (server side)."""
    return {DATA: records, NEXT_PAGE: next_page, TOTAL: total}


def unwrap(body: Any) -> tuple[list, int | None]:
    """(records, next page) of a page body; ValueError says what was expected."""
    if not isinstance(body, dict) or not isinstance(body.get(DATA), list):
        raise ValueError(f"expected a JSON object with a '{DATA}' list, got {type(body).__name__}")
    nxt = body.get(NEXT_PAGE)
    if nxt is not None and (not isinstance(nxt, int) or isinstance(nxt, bool)):
        raise ValueError(f"expected '{NEXT_PAGE}' to be an integer or null, got {nxt!r}")
    return body[DATA], nxt
