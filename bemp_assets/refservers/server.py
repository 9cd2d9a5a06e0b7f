"""The HTTP side shared by both reference servers: auth, paging, windows, faults, admin.

A source module (gateway.py, ipanel.py) only says which paths serve which records (an ``App``);
everything on the wire follows resources/wire.py, the contract the clients use.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from resources import wire

from .data import Selection, Timeline
from .faults import Faults


class BadRequest(ValueError):
    """A query parameter is invalid; answered with 400 and the message."""


@dataclass
class Query:
    since: float | None  # data time (already mapped back from served time)
    until: float | None
    descending: bool
    now: float  # data time up to which records are visible


Route = Callable[[Query], Selection]


@dataclass
class App:
    """What a server serves: routes by path, the token, the fault switches and the timeline."""

    name: str
    routes: dict[str, Route]
    token: str
    faults: Faults = field(default_factory=Faults)
    timeline: Timeline = field(default_factory=Timeline)
    verbose: bool = False


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def parse_query(raw: str, timeline: Timeline) -> tuple[Query, int, int]:
    params = parse_qs(raw)
    times = {}
    for name in (wire.SINCE, wire.UNTIL):
        text = _one(params, name)
        try:
            times[name] = None if text is None else timeline.data(wire.parse_time(text).timestamp())
        except ValueError:
            raise BadRequest(f"parameter '{name}': expected ISO 8601 UTC such as 2016-03-01T00:00:00Z, got {text!r}") from None
    try:
        page = int(_one(params, wire.PAGE) or 1)
        size = int(_one(params, wire.PAGE_SIZE) or 1000)
    except ValueError:
        raise BadRequest(f"parameters '{wire.PAGE}' and '{wire.PAGE_SIZE}': expected integers") from None
    if page < 1 or not 1 <= size <= wire.MAX_PAGE_SIZE:
        raise BadRequest(f"expected {wire.PAGE} >= 1 and 1 <= {wire.PAGE_SIZE} <= {wire.MAX_PAGE_SIZE}")
    order = _one(params, wire.ORDER) or "asc"
    if order not in ("asc", "desc"):
        raise BadRequest(f"parameter '{wire.ORDER}': expected 'asc' or 'desc', got {order!r}")
    query = Query(times[wire.SINCE], times[wire.UNTIL], order == "desc", timeline.data_now())
    return query, page, size


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "RefHTTPServer"

    # --- plumbing ---
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.app.verbose:  # request line only: the Authorization header is never logged
            sys.stderr.write(f"{self.server.app.name} {self.address_string()} {format % args}\n")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None, truncate: bool = False) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        if truncate:
            payload = payload[: len(payload) // 2]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (read timeout)
            pass

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {wire.ERROR: message}, headers)

    def _authorised(self) -> bool:
        if wire.token_of(self.headers.get(wire.AUTH_HEADER)) == self.server.app.token:
            return True
        self._error(401, "missing or wrong bearer token")
        return False

    # --- verbs ---
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        url = urlsplit(self.path)
        if url.path == "/health":
            return self._send(200, {"status": "ok", "server": self.server.app.name})
        if not self._authorised():
            return None
        if url.path == "/_faults":
            return self._send(200, self.server.app.faults.settings.model_dump())
        route = self.server.app.routes.get(url.path)
        if route is None:
            return self._error(404, f"no endpoint {url.path}; known: {sorted(self.server.app.routes)}")
        return self._serve_data(route, url.query)

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/_faults":
            return self._error(404, "only /_faults accepts POST")
        if not self._authorised():
            return None
        length = int(self.headers.get("Content-Length") or 0)
        try:
            changes = json.loads(self.rfile.read(length) or b"{}")
            return self._send(200, self.server.app.faults.update(changes).model_dump())
        except ValueError as exc:
            return self._error(400, f"/_faults: {exc}")

    def do_DELETE(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/_faults":
            return self._error(404, "only /_faults accepts DELETE")
        if self._authorised():
            self._send(200, self.server.app.faults.reset().model_dump())

    def _serve_data(self, route: Route, raw_query: str) -> None:
        faults = self.server.app.faults
        if faults.settings.latency_s:
            time.sleep(faults.settings.latency_s)
        if faults.take("rate_limit_next"):
            return self._error(429, "rate limited (injected)", {"Retry-After": str(faults.settings.retry_after_s)})
        if faults.should_fail():
            return self._error(500, "internal error (injected)")
        try:
            query, page, size = parse_query(raw_query, self.server.app.timeline)
        except BadRequest as exc:
            return self._error(400, str(exc))
        selection = route(query)
        start = (page - 1) * size
        records = faults.shape(selection.take(start, start + size))
        nxt = page + 1 if start + size < selection.total else None
        self._send(200, wire.envelope(records, nxt, selection.total), truncate=faults.take("truncate_next"))


class RefHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App):
        self.app = app
        super().__init__(address, Handler)


@dataclass
class RunningServer:
    """A server running in a background thread (tests, demos). Use as a context manager."""

    httpd: RefHTTPServer
    thread: threading.Thread

    @property
    def app(self) -> App:
        return self.httpd.app

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def token(self) -> str:
        return self.app.token

    def set_faults(self, **changes: Any) -> None:
        """Same effect as POST /_faults, in process."""
        self.app.faults.update(changes)

    def reset_faults(self) -> None:
        self.app.faults.reset()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_thread(app: App, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Bind (port 0: a free port) and serve from a daemon thread; returns once listening."""
    httpd = RefHTTPServer((host, port), app)
    thread = threading.Thread(target=httpd.serve_forever, name=f"refserver-{app.name}", daemon=True)
    thread.start()
    return RunningServer(httpd, thread)


def window_route(table, timeline: Timeline) -> Route:
    """A paged endpoint over a table, filtered by since/until on its time field."""
    return lambda q: table.selection(table.select(q.since, q.until, q.now, q.descending), timeline)
