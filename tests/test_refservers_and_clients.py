"""Reference servers and HTTP clients, over real HTTP on localhost (no mocks of requests).

Expected counts are computed from the data files with the csv module, independently of the
server's pandas loading.
"""
from __future__ import annotations

import csv
import gzip
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from bemp_assets.refservers import Replay, start_server
from bemp_assets.refservers.data import DataFolderError
from resources import wire
from resources.gateway import GatewayClient
from resources.http import SourceAuthError, SourceResponseError, SourceUnavailable
from resources.ipanel import IPanelClient

from .conftest import SAMPLE

TOKEN = "s3cret-token-for-tests"
DAY = (datetime(2016, 3, 1, tzinfo=timezone.utc), datetime(2016, 3, 2, tzinfo=timezone.utc))


def rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def count_in(paths, field: str, since: datetime, until: datetime) -> int:
    lo, hi = wire.format_time(since), wire.format_time(until)
    return sum(lo <= r[field] < hi for p in paths for r in rows(p))


@pytest.fixture(scope="module")
def gateway_server():
    with start_server("gateway", SAMPLE / "gateway", token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def ipanel_server():
    with start_server("ipanel", SAMPLE / "ipanel", token=TOKEN) as server:
        yield server


@pytest.fixture(autouse=True)
def no_faults(request):
    yield
    for name in ("gateway_server", "ipanel_server"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset_faults()


@pytest.fixture
def waits() -> list[float]:
    return []


def client(cls, server, waits, **overrides):
    settings = {"base_url": server.url, "token": server.token, "backoff_s": 0.25, "page_size": 500, **overrides}
    return cls(**settings).with_sleep(waits.append)


# --- normal fetches -------------------------------------------------------------------------
def test_gateway_measurements_all_pages_match_files(gateway_server, waits):
    records = client(GatewayClient, gateway_server, waits).measurements(*DAY)
    expected = count_in(sorted((SAMPLE / "gateway").glob("*.csv.gz")), "time", *DAY)
    assert expected == 144 * 20  # 9 dwellings x (T, RH) + 2 power channels, 10-minute data
    assert len(records) == expected
    assert len({(r["sn"], r["channel"], r["time"]) for r in records}) == expected
    assert {"time", "sn", "channel", "device", "medium", "unit", "value"} <= set(records[0])
    assert waits == []


def test_gateway_list_and_latest_probe(gateway_server, waits):
    gw = client(GatewayClient, gateway_server, waits)
    gateways = gw.gateways()
    assert [g["sn"] for g in gateways] == [f"GW-BE-{k:04d}" for k in range(1, 10)]
    assert sum(len(g["channels"]) for g in gateways) == 20
    assert {c["medium"] for c in gateways[0]["channels"]} == {"temperature", "humidity", "power"}
    newest = max(r["time"] for p in (SAMPLE / "gateway").glob("*.csv.gz") for r in rows(p))
    assert wire.format_time(gw.latest_time()) == newest


def test_ipanel_trips_charges_status(ipanel_server, waits):
    ip = client(IPanelClient, ipanel_server, waits, page_size=100)
    window = (datetime(2016, 3, 1, tzinfo=timezone.utc), datetime(2016, 3, 15, tzinfo=timezone.utc))
    folder = SAMPLE / "ipanel"
    trips = ip.trips(*window)
    assert len(trips) == count_in([folder / "trips.csv.gz"], "date", *window) > 100
    assert len(ip.charges(*window)) == count_in([folder / "charges.csv.gz"], "date", *window)
    assert len(ip.charger_status_history(*DAY)) == count_in([folder / "charger_status.csv.gz"], "lastUpdate", *DAY) == 4 * 96
    status = ip.charger_status()
    last = max(r["lastUpdate"] for r in rows(folder / "charger_status.csv.gz"))
    assert sorted(s["chargerId"] for s in status) == [1, 2, 3, 4]
    assert {s["lastUpdate"] for s in status} == {last}
    assert wire.format_time(ip.latest_trip_time()) == max(r["date"] for r in rows(folder / "trips.csv.gz"))
    assert ip.latest_charge_time() is not None
    for trip in trips:  # the synthetic fleet keeps to the documented ranges
        assert 1.0 <= trip["tractionConsumption"] / trip["odometryDistance"] <= 1.6 + 1e-2
        assert 0.15 - 1e-2 <= trip["regeneration"] / trip["tractionConsumption"] <= 0.30 + 1e-2


# --- auth ---------------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["wrong-token", ""])
def test_refused_token_is_a_clear_error_without_the_token(gateway_server, waits, token):
    gw = GatewayClient(base_url=gateway_server.url, token=token).with_sleep(waits.append)
    with pytest.raises(SourceAuthError) as info:
        gw.measurements(*DAY)
    message = str(info.value)
    assert wire.GATEWAY_MEASUREMENTS in message and "401" in message
    assert (token or TOKEN) not in message and TOKEN not in repr(gw)
    assert waits == []  # not retried


# --- retries ------------------------------------------------------------------------------
def test_500s_then_success_backs_off_exponentially(gateway_server, waits):
    gateway_server.set_faults(fail_next=2)
    records = client(GatewayClient, gateway_server, waits, max_attempts=3).measurements(*DAY)
    assert len(records) == 2880
    assert waits == [0.25, 0.5]


def test_500s_beyond_attempts_give_up_naming_endpoint(ipanel_server, waits):
    ipanel_server.set_faults(fail_next=3)
    with pytest.raises(SourceUnavailable, match=f"{wire.IPANEL_CHARGER_STATUS}.*3 attempts.*HTTP 500"):
        client(IPanelClient, ipanel_server, waits, max_attempts=3).charger_status()
    assert len(waits) == 2


def test_429_honours_retry_after(ipanel_server, waits):
    ipanel_server.set_faults(rate_limit_next=2, retry_after_s=7)
    assert len(client(IPanelClient, ipanel_server, waits).charger_status()) == 4
    assert waits == [7.0, 7.0]


def test_faults_switched_over_the_admin_endpoint(gateway_server, waits):
    url, auth = gateway_server.url + "/_faults", {wire.AUTH_HEADER: wire.auth_value(TOKEN)}
    assert requests.post(url, json={"fail_next": 1}).status_code == 401
    bad = requests.post(url, json={"fail_nxt": 1}, headers=auth)
    assert bad.status_code == 400 and "fail_nxt" in bad.json()[wire.ERROR]
    assert requests.post(url, json={"fail_next": 1}, headers=auth).json()["fail_next"] == 1
    assert requests.get(gateway_server.url + wire.GATEWAY_GATEWAYS, headers=auth).status_code == 500
    assert requests.get(gateway_server.url + wire.GATEWAY_GATEWAYS, headers=auth).status_code == 200
    assert requests.delete(url, headers=auth).json()["fail_next"] == 0


# --- malformed responses and odd records ------------------------------------------------------
def test_truncated_json_names_endpoint_and_expectation(gateway_server, waits):
    gateway_server.set_faults(truncate_next=1)
    with pytest.raises(SourceResponseError) as info:
        client(GatewayClient, gateway_server, waits).measurements(*DAY)
    assert wire.GATEWAY_MEASUREMENTS in str(info.value)
    assert "truncated JSON" in str(info.value) and f"'{wire.DATA}' list" in str(info.value)


def test_duplicated_and_out_of_order_records_returned_as_served(gateway_server, waits):
    clean = client(GatewayClient, gateway_server, waits).measurements(*DAY)
    gateway_server.set_faults(duplicate_every=10, out_of_order=True)
    odd = client(GatewayClient, gateway_server, waits).measurements(*DAY)
    assert len(odd) == len(clean) + len(clean) // 10
    key = lambda r: (r["time"], r["sn"], r["channel"])  # noqa: E731
    assert {key(r) for r in odd} == {key(r) for r in clean}
    assert [r["time"] for r in odd] != sorted(r["time"] for r in odd)


# --- timeouts -----------------------------------------------------------------------------
def test_latency_within_read_timeout(ipanel_server, waits):
    ipanel_server.set_faults(latency_s=0.2)
    assert len(client(IPanelClient, ipanel_server, waits, read_timeout_s=3).charger_status()) == 4
    assert waits == []


def test_latency_beyond_read_timeout_fails_clearly(ipanel_server, waits):
    ipanel_server.set_faults(latency_s=1.0)
    with pytest.raises(SourceUnavailable, match=f"{wire.IPANEL_CHARGER_STATUS}.*timed out"):
        client(IPanelClient, ipanel_server, waits, read_timeout_s=0.2, max_attempts=2).charger_status()
    assert waits == [0.25]


def test_connection_refused_is_retried_then_reported(waits):
    gw = GatewayClient(base_url="http://127.0.0.1:9", token=TOKEN, max_attempts=2).with_sleep(waits.append)
    with pytest.raises(SourceUnavailable, match="connection failed"):
        gw.gateways()
    assert waits == [0.5]


# --- data folders and replay ----------------------------------------------------------------
def write_gateway_folder(folder: Path, times: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["time,sn,channel,device,medium,value", *(f"{t},GW-X,1,T1,temperature,20.5" for t in times)]
    (folder / "gw.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_bad_time_in_data_folder_names_file_and_line(tmp_path):
    folder = write_gateway_folder(tmp_path / "gw", ["2016-03-01T00:00:00Z", "yesterday"])
    with pytest.raises(DataFolderError, match=r"gw\.csv: line 3: column 'time'.*'yesterday'"):
        start_server("gateway", folder)


def test_replay_serves_only_the_past_shifted_by_whole_days(tmp_path, waits):
    times = ["2016-03-01T06:00:00Z", "2016-03-01T18:00:00Z", "2016-03-02T06:00:00Z", "2016-03-03T06:00:00Z"]
    folder = write_gateway_folder(tmp_path / "gw", times)
    with start_server("gateway", folder, token=TOKEN, replay=Replay(history_s=86400)) as server:
        records = client(GatewayClient, server, waits).measurements()
    served = [wire.parse_time(r["time"]) for r in records]
    assert 2 <= len(served) <= 3 and all(t.timestamp() <= time.time() for t in served)
    assert all(t.strftime("%H:%M") in ("06:00", "18:00") for t in served)
    assert {r["unit"] for r in records} == {"°C"}  # no unit column: the unit comes from the medium
