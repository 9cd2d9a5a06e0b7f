"""The HTTP API against the running service (uvicorn in a subprocess on a free localhost port)
with a real warehouse file and a real Dagster instance: push, the landing sensor's run,
lineage, rejects, idempotency, tokens and scopes, audit, a push while the warehouse is held."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import requests
from dagster import build_sensor_context, instance_for_test

from bemp_assets.api.audit import load_audit
from bemp_assets.api.store import ApiStore, state_path
from bemp_assets.definitions import build_definitions
from bemp_assets.domain.warehouse import prepare

from .conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
MAX_BODY = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The service in a subprocess, its log file, and helpers to call it."""

    def __init__(self, home: Path):
        self.settings = make_settings(home)
        self.store = ApiStore(state_path(home))
        self.port, self.log = free_port(), home / "api-serve.log"
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.admin = self.token("test-admin", ["admin"])

    def token(self, name: str, scopes: list[str]) -> str:
        return self.store.create_token(name, scopes)[1]

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "BEMP_API_MAX_BODY": str(MAX_BODY)}
        self.handle = open(self.log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "bemp_assets.cli", "api", "serve", "--port", str(self.port)],
                                        env=env, cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"API did not start: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.handle.close()

    def call(self, method: str, path: str, token: str | None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def register(self, device: str, parameter: str, **fields) -> dict:
        answer = self.call("POST", "/variables", self.admin, json={"device": device, "parameter": parameter, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def push(self, variable_id: str, readings: list, token: str | None = None, key: str | None = None) -> requests.Response:
        return self.call("POST", f"/variables/{variable_id}/raw_data", token or self.admin,
                         json={"readings": readings}, headers={"Idempotency-Key": key} if key else {})


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = Api(tmp_path_factory.mktemp("api") / "home")
    service.start()
    yield service
    service.stop()


def landing_files(api: Api) -> list[str]:
    folder = api.settings.home / "api" / "landing"
    return sorted(p.name for p in folder.glob("*.csv")) if folder.exists() else []


def ingest_landing(api: Api, instance) -> list:
    """Evaluate the landing sensor with the instance and execute every run it requests, as the
    daemon would; returns the finished runs."""
    from bemp_assets.cli import settings_env
    from bemp_assets.launch import code_location, create_run, execute

    defs = build_definitions(api.settings)
    tick = defs.resolve_sensor_def("api_landing_sensor").evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs))
    finished = []
    with settings_env(api.settings), code_location(instance) as location:
        for request in tick.run_requests:
            run = create_run(instance, location, request.job_name or "bemp_pipeline", dict(request.tags), {},
                             request.asset_selection)
            finished.append(execute(instance, run, say=lambda _: None))
    return finished


GOOD = [  # 2016-11-02, 10:00 .. 11:45 at +01:00 = 09:00 .. 10:45 UTC, every 15 minutes
    (f"2016-11-02T{10 + i // 4:02d}:{15 * (i % 4):02d}:00+01:00", v)
    for i, v in enumerate([1.5, 2.5, 3.0, 4.0, 10.0, 11.0, 12.5, 14.5])
]
BAD = [("2016-11-02T12:00:00", 5.0), ("2016-11-02T12:15:00+01:00", "abc"), ("2009-01-01T00:00:00Z", 1.0)]


def test_push_while_a_run_holds_the_warehouse_lands_after_it_with_lineage_and_rejects(api):
    api.register("meter7", "active_power", unit="kW", kind="instantaneous", category="electricity")
    warehouse = api.settings.warehouse
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    # another process holds the warehouse for writing, as a long run does
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(warehouse)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        answer = api.push("meter7.active_power", [*GOOD, *BAD])
        assert answer.status_code == 202 and time.monotonic() - started < 5
        with pytest.raises(duckdb.IOException):  # the lock is real: nobody else could open it now
            duckdb.connect(str(warehouse), read_only=True)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    body = answer.json()
    assert (body["rows_received"], body["rows_accepted"], body["rows_rejected"]) == (11, 8, 3)
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [8, 9, 10]
    assert "no UTC offset" in reasons[8] and "'abc' is not a number" in reasons[9] and "outside the partitions" in reasons[10]
    batch_file = f"api_{body['batch_id']}.csv"
    assert body["file"] == batch_file and batch_file in landing_files(api)

    with instance_for_test() as instance:
        runs = ingest_landing(api, instance)
        assert [r.is_success for r in runs] == [True]
        assert ingest_landing(api, instance) == []  # ingested in full: not requested again
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        raw = con.execute("SELECT strftime(ts, '%Y-%m-%dT%H:%M:%S'), value, source_file, source_line FROM raw.measurements "
                          "WHERE variable_id = 'meter7.active_power' ORDER BY ts").fetchall()
        assert raw == [(f"2016-11-02T{9 + i // 4:02d}:{15 * (i % 4):02d}:00", v, batch_file, i + 2)
                       for i, (_, v) in enumerate(GOOD)]
        assert con.execute("SELECT unit, kind, category, source, site FROM meta.variables "
                           "WHERE variable_id = 'meter7.active_power'").fetchone() == (
            "kW", "instantaneous", "electricity", "api", "bemp-demo")
        rejects = con.execute("SELECT line FROM raw.rejects WHERE source_file = ? ORDER BY line", [batch_file]).fetchall()
        assert rejects == [(8 + 2,), (9 + 2,), (10 + 2,)]  # line = index + 2 (header on line 1)
        clean = con.execute("SELECT value FROM clean.measurements WHERE variable_id = 'meter7.active_power' "
                            "ORDER BY ts").fetchall()
        assert [v for (v,) in clean] == [v for _, v in GOOD]
        hourly = con.execute("SELECT hour::VARCHAR, mean FROM agg.hourly WHERE variable_id = 'meter7.active_power' "
                             "ORDER BY hour").fetchall()
        assert hourly == [("2016-11-02 09:00:00+00", (1.5 + 2.5 + 3.0 + 4.0) / 4),
                          ("2016-11-02 10:00:00+00", (10.0 + 11.0 + 12.5 + 14.5) / 4)]
