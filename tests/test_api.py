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
from dagster import AssetKey, RunRequest, build_sensor_context, instance_for_test

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
        # json.dumps writes NaN and Infinity as a JSON parser in most languages would accept them
        headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
        return self.call("POST", f"/variables/{variable_id}/raw_data", token or self.admin,
                         data=json.dumps({"readings": readings}), headers=headers)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    service = Api(tmp_path_factory.mktemp("api") / "home")
    service.start()
    yield service
    service.stop()


def landing_files(api: Api) -> list[str]:
    folder = api.settings.home / "api" / "landing"
    return sorted(p.name for p in folder.glob("*.csv")) if folder.exists() else []


def run_all(instance, location, requests_: list[RunRequest]) -> list[bool]:
    """Create and execute each requested run from the code location, as the daemon would;
    whether each succeeded."""
    from bemp_assets.launch import create_run, execute

    return [execute(instance, create_run(instance, location, r.job_name or "bemp_pipeline", dict(r.tags), {},
                                         r.asset_selection), say=lambda _: None).is_success for r in requests_]


def landing_requests(api: Api, defs, instance) -> list[RunRequest]:
    """What the landing sensor requests now."""
    return defs.resolve_sensor_def("api_landing_sensor").evaluate_tick(
        build_sensor_context(instance=instance, definitions=defs)).run_requests


GOOD = [  # 2016-11-02, 10:00 .. 11:45 at +01:00 = 09:00 .. 10:45 UTC, every 15 minutes
    (f"2016-11-02T{10 + i // 4:02d}:{15 * (i % 4):02d}:00+01:00", v)
    for i, v in enumerate([1.5, 2.5, 3.0, 4.0, 10.0, 11.0, 12.5, 14.5])
]
BAD = [("2016-11-02T12:00:00", 5.0), ("2016-11-02T12:15:00+01:00", "abc"), ("2009-01-01T00:00:00Z", 1.0)]


@pytest.fixture(scope="module")
def ingested(api):
    """One batch (good and bad rows) pushed while another process holds the warehouse for
    writing, as a long run does; then the landing sensor's run, the audit copy and the BI
    snapshot. Returns what happened, for the tests below to judge."""
    from bemp_assets.domain.snapshot import publish_snapshot

    api.register("meter7", "active_power", unit="kW", kind="instantaneous", category="electricity")
    warehouse = api.settings.warehouse
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(warehouse)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        answer = api.push("meter7.active_power", [*GOOD, *BAD])
        elapsed = time.monotonic() - started
        try:  # the lock is real: no other process could open the warehouse at that moment
            duckdb.connect(str(warehouse), read_only=True).close()
            locked = False
        except duckdb.IOException:
            locked = True
        landed_before_run = landing_files(api)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    from bemp_assets.cli import settings_env
    from bemp_assets.launch import code_location

    defs = build_definitions(api.settings)
    with instance_for_test() as instance, settings_env(api.settings), code_location(instance) as location:
        runs = run_all(instance, location, landing_requests(api, defs, instance))
        again = landing_requests(api, defs, instance)
        audit = run_all(instance, location, [RunRequest(job_name="bemp_status",
                                                        asset_selection=[AssetKey(["ops", "api_audit"])])])
    publish_snapshot(warehouse, api.settings.home / "bi")
    return dict(answer=answer, elapsed=elapsed, locked=locked, landed=landed_before_run,
                runs=runs, again=again, audit=audit)


def test_a_push_while_a_run_holds_the_warehouse_is_accepted_and_lands_after_it(api, ingested):
    answer = ingested["answer"]
    assert ingested["locked"] and answer.status_code == 202 and ingested["elapsed"] < 5
    assert answer.json()["file"] in ingested["landed"]
    # one run for the batch, and none once it is ingested in full
    assert ingested["runs"] == [True] and ingested["again"] == []


def test_the_batch_is_in_raw_clean_and_hourly_with_its_id_in_the_lineage_and_its_bad_rows_rejected(api, ingested):
    body = ingested["answer"].json()
    assert (body["rows_received"], body["rows_accepted"], body["rows_rejected"]) == (11, 8, 3)
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert sorted(reasons) == [8, 9, 10]
    assert "no UTC offset" in reasons[8] and "'abc' is not a number" in reasons[9] and "outside the partitions" in reasons[10]
    batch_file = f"api_{body['batch_id']}.csv"
    assert body["file"] == batch_file
    with duckdb.connect(str(api.settings.warehouse), read_only=True) as con:
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
        assert ingested["audit"] == [True]
        assert con.execute("SELECT token_id, status, outcome, rows_accepted, rows_rejected FROM ops.api_audit "
                           "WHERE batch_id = ?", [body["batch_id"]]).fetchall() == [
            (api.admin[5:13], 202, "accepted", 8, 3)]


def test_a_read_of_a_range_returns_exactly_the_stored_rows(api, ingested):
    reader = api.token("bi-reader", ["read"])
    batch_file = ingested["answer"].json()["file"]
    path = "/variables/meter7.active_power/data"
    # 09:15 .. 10:15 UTC (start included, end excluded), given at +01:00: rows 1..4 of GOOD
    window = {"start": "2016-11-02T10:15:00+01:00", "end": "2016-11-02T11:15:00+01:00"}
    raw = api.call("GET", path, reader, params={**window, "layer": "raw"}).json()
    assert [(r["ts"], r["value"], r["source_file"]) for r in raw["data"]] == [
        (f"2016-11-02T{9 + i // 4:02d}:{15 * (i % 4):02d}:00Z", GOOD[i][1], batch_file) for i in range(1, 5)]
    assert raw["rows"] == 4 and raw["next_offset"] is None
    clean = api.call("GET", path, reader, params={**window, "layer": "clean", "limit": 3}).json()
    assert [r["value"] for r in clean["data"]] == [2.5, 3.0, 4.0] and clean["next_offset"] == 3
    rest = api.call("GET", path, reader, params={**window, "layer": "clean", "limit": 3, "offset": 3}).json()
    assert [r["value"] for r in rest["data"]] == [10.0] and rest["next_offset"] is None
    hourly = api.call("GET", path, reader, params={"layer": "hourly", "format": "csv"})
    rows = list(csv.DictReader(hourly.text.splitlines()))
    assert hourly.headers["content-type"].startswith("text/csv")
    assert [(r["hour"], float(r["mean"])) for r in rows] == [("2016-11-02T09:00:00Z", 2.75), ("2016-11-02T10:00:00Z", 12.0)]
    assert api.call("GET", path, reader, params={"layer": "daily"}).status_code == 422
    assert api.call("GET", path, reader, params={"start": "yesterday"}).status_code == 400
    for endpoint in ("/models", "/forecasts?target=meter7.active_power&day=2016-11-02", "/alarms?active=true"):
        answer = api.call("GET", endpoint, reader)
        assert answer.status_code == 200 and answer.json()["data"] == [], endpoint  # nothing trained or raised here


def test_a_retried_push_with_the_same_idempotency_key_is_stored_once(api):
    api.register("meter8", "reactive_power", unit="kvar")
    readings = [["2016-11-03T00:00:00Z", 1.0], ["2016-11-03T00:15:00Z", 2.0]]
    before = landing_files(api)
    first = api.push("meter8.reactive_power", readings, key="retry-1")
    again = api.push("meter8.reactive_power", readings, key="retry-1")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert sorted(set(landing_files(api)) - set(before)) == [first.json()["file"]]  # one batch file
    # the key with another body is a conflict, and lands nothing
    other = api.push("meter8.reactive_power", readings[:1], key="retry-1")
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    # without a key, a repeat is a new batch (the raw layer's merge then keeps one reading per instant)
    assert api.push("meter8.reactive_power", readings).json()["batch_id"] != first.json()["batch_id"]
    assert len(set(landing_files(api)) - set(before)) == 2


def test_bad_rows_come_back_with_their_index_and_reason(api):
    api.register("meter9", "voltage", unit="V")
    readings = [["2016-11-04T00:00:00+00:00", 230.0],          # 0 good
                ["2016-11-04T00:00:00.250Z", 231.0],           # 1 fraction of a second
                ["2016-11-04T00:15:00Z", float("nan")],        # 2 not finite (NaN in the JSON)
                ["2016-11-04T00:30:00Z", float("inf")],        # 3 not finite
                ["2016-11-04T00:45:00Z", 5e12],                # 4 beyond max_abs_value
                ["2099-01-01T00:00:00Z", 1.0],                 # 5 in the future: outside the partitions
                [1, 2, 3],                                     # 6 not a pair
                ["2016-11-04T00:00:00Z", 232.0],               # 7 same instant as row 0: it wins
                ["2016-11-04T01:00:00+05:30", None]]           # 8 missing value
    body = api.push("meter9.voltage", readings).json()
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert (body["rows_received"], body["rows_accepted"], body["rows_rejected"]) == (9, 1, 8)
    assert sorted(reasons) == [0, 1, 2, 3, 4, 5, 6, 8]
    assert reasons[0] == "duplicate timestamp 2016-11-04T00:00:00+00:00: superseded by row 7"
    assert "fractions of a second" in reasons[1]
    assert reasons[2] == "value nan is not finite" and reasons[3] == "value inf is not finite"
    assert "beyond ±1e+12" in reasons[4] and "outside the partitions" in reasons[5]
    assert reasons[6].startswith("expected {") and reasons[8] == "missing value"
    # the landing file keeps every row, one line each (index + 2), so the run rejects the same rows
    with open(api.settings.home / "api" / "landing" / body["file"], newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["Dispositivo", "Parametro", "Data", "Valore"] and len(lines) == 1 + len(readings)
    assert lines[8] == ["meter9", "voltage", "00:00:00 04/11/2016", "232.0"]


def test_unknown_variables_wrong_bodies_and_the_size_limit(api):
    assert api.push("nobody.power", [["2016-11-04T00:00:00Z", 1.0]]).status_code == 404
    api.register("meter10", "current", unit="A")
    path = "/variables/meter10.current/raw_data"
    assert api.call("POST", path, api.admin, data=b"not json").status_code == 422
    assert api.call("POST", path, api.admin, json={"readings": []}).status_code == 422
    for text in ("", "a,b\n1,2\n", 'Dispositivo,Parametro,Data,Valore\nmeter10,current,"x,1,2\n'):
        bad_csv = api.call("POST", path, api.admin, data=text.encode(), headers={"Content-Type": "text/csv"})
        assert bad_csv.status_code == 422 and bad_csv.json()["detail"].startswith("CSV"), text
    big = {"readings": [["2016-11-04T00:00:00Z", 1.0]] * 2000}
    assert len(json.dumps(big)) > MAX_BODY
    assert api.call("POST", path, api.admin, json=big).status_code == 413
    # a chunked body (no Content-Length) is cut off at the limit too
    chunks = (b"x" * 1000 for _ in range(MAX_BODY // 1000 + 5))
    assert api.call("POST", path, api.admin, data=chunks).status_code == 413


def test_reach_csv_push_rejects_lines_of_other_variables(api):
    api.register("meter11", "active_energy", unit="kWh", kind="cumulative")
    text = ("Dispositivo,Parametro,Data,Valore\n"
            "meter11,active_energy,2016-11-05T00:00:00+01:00,100.5\n"
            "meter12,active_energy,2016-11-05T00:15:00+01:00,101.0\n"
            "meter11,active_energy,05/11/2016 00:30:00,101.5\n"
            "meter11,active_energy,2016-11-05T00:45:00+01:00,102,0\n")
    answer = api.call("POST", "/variables/meter11.active_energy/raw_data", api.admin, data=text.encode(),
                      headers={"Content-Type": "text/csv"})
    body = answer.json()
    assert answer.status_code == 202 and body["rows_accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2, 3]
    assert "not of this variable (meter11.active_energy)" in body["rejected"][0]["reason"]
    assert "no UTC offset" in body["rejected"][1]["reason"]
    assert body["rejected"][2]["reason"] == "expected 4 fields (Dispositivo,Parametro,Data,Valore), got 5"


def test_variables_are_validated_like_the_config_files(api):
    bad = api.call("POST", "/variables", api.admin, json={"device": "m", "parameter": "Active Power", "kind": "gauge",
                                                          "colour": "red"})
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert [line.split(":")[0] for line in detail] == ["key 'parameter'", "key 'kind'", "key 'colour'"]
    api.register("meter13", "temperature", unit="°C")
    assert api.call("POST", "/variables", api.admin, json={"device": "meter13", "parameter": "temperature",
                                                           "unit": "°C"}).status_code == 409
    clash = api.call("POST", "/variables", api.admin, json={"device": "meter14", "parameter": "temperature", "unit": "K"})
    assert clash.status_code == 409 and "key 'parameter'" in clash.json()["detail"]
    listed = api.call("GET", "/variables", api.admin).json()["variables"]
    assert {"variable_id": "meter13.temperature", "unit": "°C", "kind": "instantaneous"}.items() <= next(
        v for v in listed if v["variable_id"] == "meter13.temperature").items()
    assert api.call("GET", "/variables/meter13.temperature", api.admin).json()["unit"] == "°C"
    assert api.call("GET", "/variables/meter99.temperature", api.admin).status_code == 404


def bemp(api: Api, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bemp_assets.cli", "api", *args], capture_output=True, text=True,
                          env={**os.environ, **api.settings.to_env()}, cwd=ROOT, timeout=60)


def test_tokens_scopes_revocation_and_no_secret_in_logs_or_audit(api, tmp_path):
    created = bemp(api, "token", "create", "--name", "mes", "--scope", "push")
    token_id = created.stdout.split()[2]
    pusher = created.stdout.strip().splitlines()[-1].split(": ")[1]
    reader = api.token("dashboard", ["read"])
    api.register("meter15", "apparent_power", unit="kVA")
    one = [["2016-11-06T00:00:00Z", 1.0]]
    assert api.push("meter15.apparent_power", one, token=pusher).status_code == 202
    refused = [api.call("POST", "/variables/meter15.apparent_power/raw_data", token, json={"readings": one})
               for token in (None, "bemp_nobody.secret", pusher[:-1] + ("A" if pusher[-1] != "A" else "B"), "garbage")]
    assert {r.status_code for r in refused} == {401} and len({r.text for r in refused}) == 1
    assert refused[0].json() == {"detail": "unauthorized"}
    assert api.push("meter15.apparent_power", one, token=reader).status_code == 403        # read cannot push
    assert api.call("POST", "/variables", pusher, json={"device": "x", "parameter": "y"}).status_code == 403
    assert api.call("GET", "/variables", pusher).status_code == 403                       # push cannot read
    assert api.call("GET", "/variables", reader).status_code == 200

    assert bemp(api, "token", "revoke", token_id).returncode == 0
    after = api.push("meter15.apparent_power", one, token=pusher)
    assert after.status_code == 401 and after.text == refused[0].text
    listing = bemp(api, "token", "list").stdout
    assert f"{token_id}  mes" in listing and "revoked" in listing and pusher not in listing

    # the audit: every request of the push token by its id; no token or secret anywhere
    con = prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb")))
    assert load_audit(con, api.settings.home) > 0 and load_audit(con, api.settings.home) == 0  # idempotent copy
    mine = con.execute("SELECT method, path, status, outcome, rows_accepted FROM ops.api_audit WHERE token_id = ? "
                       "ORDER BY audit_id", [token_id]).fetchall()
    push_path = "/api/v1/variables/meter15.apparent_power/raw_data"
    assert mine == [("POST", push_path, 202, "accepted", 1), ("POST", "/api/v1/variables", 403, "forbidden", None),
                    ("GET", "/api/v1/variables", 403, "forbidden", None)]
    # the revoked token's request is audited as unauthorized, without a token id
    assert con.execute("SELECT count(*) FROM ops.api_audit WHERE token_id IS NULL AND status = 401").fetchone()[0] >= 5
    table = "\n".join(str(row) for row in con.execute("SELECT * FROM ops.api_audit").fetchall())
    con.close()
    log = api.log.read_text()
    state = state_path(api.settings.home).read_bytes()
    for token in (pusher, reader, api.admin):
        secret = token.split(".", 1)[1]
        assert secret not in table and secret not in log and secret.encode() not in state
        assert secret not in created.stderr
    assert token_id in log  # the log names callers by token id


def test_openapi_documents_every_endpoint_and_the_push_body(api):
    spec = requests.get(f"{api.url}/openapi.json", timeout=10).json()
    assert {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops} == {
        ("GET", "/api/v1/health"), ("GET", "/api/v1/variables"), ("POST", "/api/v1/variables"),
        ("GET", "/api/v1/variables/{variable_id}"), ("POST", "/api/v1/variables/{variable_id}/raw_data"),
        ("GET", "/api/v1/variables/{variable_id}/data"), ("GET", "/api/v1/models"), ("GET", "/api/v1/forecasts"),
        ("GET", "/api/v1/alarms")}
    push = spec["paths"]["/api/v1/variables/{variable_id}/raw_data"]["post"]
    assert set(push["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "Idempotency-Key" in {p["name"].title() for p in push["parameters"]}
