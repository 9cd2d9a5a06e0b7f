"""Local reference servers for the live sources: `bemp serve gateway|ipanel`.

The real gateway platform and DATIK iPanel are not reachable from a development machine, so
these stdlib HTTP servers serve a folder of files over the contract in resources/wire.py, with
a bearer-token check, paging, time windows, switchable faults and an optional replay. Tests
start them in-process with :func:`start_server`; docs/sources.md documents shapes and switches.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .faults import FaultSettings, add_fault_arguments, faults_from_args

if TYPE_CHECKING:  # pandas, numpy and dagster load only when a server is built, not for `bemp --help`
    from .server import App, RunningServer

KINDS = ("gateway", "ipanel")
DEFAULT_PORTS = {"gateway": 8701, "ipanel": 8702}
TOKEN_ENV = {"gateway": "BEMP_GATEWAY_TOKEN", "ipanel": "BEMP_IPANEL_TOKEN"}


@dataclass(frozen=True)
class Replay:
    """Serve the data as if it were arriving now: at least ``history_s`` of it is visible at
    start, the rest appears as wall-clock time passes, ``speed`` times faster than real time.
    Served times are the data times shifted by whole days (at speed 1), so a bus still leaves
    the depot at 06:00 and a day of charges still starts at midnight."""

    history_s: float = 86400.0
    speed: float = 1.0


def _module(kind: str):
    if kind == "gateway":
        from . import gateway as module
    elif kind == "ipanel":
        from . import ipanel as module
    else:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {KINDS}")
    return module


def build_app(kind: str, data_dir: Path | str, token: str, replay: Replay | None = None,
              faults: FaultSettings | dict | None = None, verbose: bool = False) -> "App":
    """Load ``data_dir`` and assemble the server (no socket yet)."""
    from .data import DataFolderError, Timeline
    from .faults import Faults
    from .server import App

    if not token:
        raise ValueError(f"{kind} server: a non-empty token is required (--token or {TOKEN_ENV[kind]})")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataFolderError(f"{data_dir}: data folder not found")
    module = _module(kind)
    tables = module.load(data_dir)
    timeline = Timeline()
    if replay is not None:
        # whole days between the data and now, so records keep their time of day (at speed 1)
        now, first = time.time(), min(t.first_time for t in tables.values())
        days = (now - first - replay.history_s) // 86400
        timeline = Timeline(True, now - days * 86400, replay.speed, now)
    settings = faults if isinstance(faults, FaultSettings) else FaultSettings(**(faults or {}))
    return App(kind, module.routes(tables, timeline), token, Faults(settings), timeline, verbose)


def start_server(kind: str, data_dir: Path | str, token: str = "test-token", port: int = 0,
                 replay: Replay | None = None, faults: FaultSettings | dict | None = None) -> "RunningServer":
    """Start a server on localhost in a background thread (port 0: any free port).

    Reuse in a pytest fixture::

        @pytest.fixture(scope="module")
        def gateway_server():
            with start_server("gateway", SAMPLE / "gateway", token="t") as server:
                yield server          # server.url, server.token, server.set_faults(...)
    """
    from .server import run_in_thread

    return run_in_thread(build_app(kind, data_dir, token, replay, faults), port=port)


def add_serve_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORTS[kind], help=f"default {DEFAULT_PORTS[kind]}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", help=f"data folder (default $BEMP_SAMPLE/{kind}, i.e. data/sample/{kind})")
    parser.add_argument("--token", help=f"bearer token clients must send (default ${TOKEN_ENV[kind]})")
    parser.add_argument("--replay", action="store_true", help="serve the data progressively, shifted to now")
    parser.add_argument("--replay-history-h", type=float, default=24.0, help="hours of data visible at start (default 24)")
    parser.add_argument("--replay-speed", type=float, default=1.0, help="data seconds per wall-clock second (default 1)")
    parser.add_argument("--verbose", action="store_true", help="log each request line (never headers)")
    add_fault_arguments(parser)


def add_serve_both_arguments(parser: argparse.ArgumentParser) -> None:
    """`bemp serve both`: both servers on their default ports, tokens from the environment."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--replay", action="store_true", help="serve the data progressively, shifted to now")
    parser.add_argument("--replay-history-h", type=float, default=24.0, help="hours of data visible at start (default 24)")
    parser.add_argument("--replay-speed", type=float, default=1.0, help="data seconds per wall-clock second (default 1)")
    parser.add_argument("--verbose", action="store_true", help="log each request line (never headers)")


def serve(kind: str, args: argparse.Namespace, sample_dir: Path) -> int:
    """`bemp serve gateway|ipanel|both`: serve until Ctrl-C or SIGTERM, then exit 0."""
    from .server import run_in_thread

    kinds = KINDS if kind == "both" else (kind,)
    replay = Replay(args.replay_history_h * 3600, args.replay_speed) if args.replay else None
    servers = []
    try:
        for name in kinds:
            token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV[name], "")
            data = getattr(args, "data", None) or sample_dir / name
            faults = faults_from_args(args) if kind != "both" else None
            app = build_app(name, data, token, replay, faults, args.verbose)
            servers.append(run_in_thread(app, args.host, getattr(args, "port", None) or DEFAULT_PORTS[name]))
            print(f"{name} reference server on {servers[-1].url} (data {data}{', replay' if replay else ''})")
    except (ValueError, OSError) as exc:
        for server in servers:
            server.close()
        print(f"bemp serve {kind}: {exc}")
        return 2
    print("Ctrl-C stops")
    return _serve_until_stopped(servers)


def _serve_until_stopped(servers: list["RunningServer"]) -> int:
    """Block until a server thread ends or Ctrl-C / SIGTERM arrives; close every server."""
    import signal

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        while all(server.thread.is_alive() for server in servers):
            servers[0].thread.join(1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for server in servers:
            server.close()
    return 0


__all__ = ["KINDS", "Replay", "RunningServer", "build_app", "start_server", "add_serve_arguments",
           "add_serve_both_arguments", "serve"]
