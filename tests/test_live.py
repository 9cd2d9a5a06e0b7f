"""The HTTP sources end to end: real reference servers on localhost, a real Dagster instance
and DuckDB file. Expected counts come from the servers' data files, read here with csv."""
import csv
import gzip
import os
from datetime import datetime, timezone

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, build_sensor_context, instance_for_test
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.cli import run
from bemp_assets.definitions import build_definitions
from bemp_assets.domain.config import load_config
from bemp_assets.refservers import start_server

from .conftest import SAMPLE, make_settings

UTC = timezone.utc
# Rome days 2016-03-01 .. 2016-03-02 as UTC instants
WINDOW = (datetime(2016, 2, 29, 23, tzinfo=UTC), datetime(2016, 3, 2, 23, tzinfo=UTC))
TABLES = ["raw.gateway_measurements", "raw.ipanel_trips", "raw.ipanel_charger_status", "raw.ipanel_charges",
          "raw.measurements", "meta.variables", "raw.rejects", "clean.measurements", "agg.hourly"]


def read_rows(path):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return list(csv.DictReader(lines))


def in_window(rows, field):
    stamp = lambda r: datetime.fromisoformat(r[field].replace("Z", "+00:00"))
    return [r for r in rows if WINDOW[0] <= stamp(r) < WINDOW[1]]


@pytest.fixture
def servers(monkeypatch, tmp_path):
    with start_server("gateway", SAMPLE / "gateway", token="gw-secret") as gateway, \
            start_server("ipanel", SAMPLE / "ipanel", token="ip-secret") as ipanel:
        monkeypatch.setenv("BEMP_GATEWAY_URL", gateway.url)
        monkeypatch.setenv("BEMP_GATEWAY_TOKEN", "gw-secret")
        monkeypatch.setenv("BEMP_IPANEL_URL", ipanel.url)
        monkeypatch.setenv("BEMP_IPANEL_TOKEN", "ip-secret")
        yield gateway, ipanel


BOOKKEEPING = {"fetched_at", "ingested_at", "updated_at", "first_seen", "rejected_at"}


def snapshot(settings):
    """Row count and content hash of each table, bookkeeping timestamps left out."""
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        result = {}
        for table in TABLES:
            columns = [c for (c, *_) in con.execute(f"DESCRIBE {table}").fetchall() if c not in BOOKKEEPING]
            result[table] = con.execute(f"SELECT count(*), sum(hash({', '.join(chr(34) + c + chr(34) for c in columns)})) FROM {table}").fetchone()
        return result


def live(settings, instance):
    return run(settings, "2016-03-01", "2016-03-02", None, instance=instance, job_name="bemp_live")


def test_ingest_repoll_and_faults(servers, tmp_path):
    gateway, ipanel = servers
    settings = make_settings(tmp_path / "home")
    expected_gateway = sum(len(in_window(read_rows(p), "time")) for p in (SAMPLE / "gateway").glob("*.csv.gz"))
    expected = {"raw.ipanel_trips": len(in_window(read_rows(SAMPLE / "ipanel" / "trips.csv.gz"), "date")),
                "raw.ipanel_charges": len(in_window(read_rows(SAMPLE / "ipanel" / "charges.csv.gz"), "date")),
                "raw.ipanel_charger_status": len(in_window(read_rows(SAMPLE / "ipanel" / "charger_status.csv.gz"), "lastUpdate"))}
    with instance_for_test() as instance:
        assert live(settings, instance) == 0
        first = snapshot(settings)
        assert first["raw.gateway_measurements"][0] == expected_gateway > 0
        assert first["raw.measurements"][0] == expected_gateway  # the same readings, as variables
        assert {t: first[t][0] for t in expected} == expected and all(expected.values())
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            hourly = con.execute("SELECT count(*) FROM agg.hourly WHERE variable_id LIKE 'GW-BE-%'").fetchone()[0]
        assert hourly == 48 * 20  # 20 gateway channels x 48 hours, none missing
        # the registry's sensor ids and the ingested variable ids are built the same way
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            ingested = {v for (v,) in con.execute("SELECT variable_id FROM meta.variables WHERE source = 'gateway'").fetchall()}
        registered = {v for v in load_config(settings.config_dir).expected_variables() if not v.startswith("GW-BE-0010")}
        assert ingested == registered and len(ingested) == 20

        # re-polling the same window adds nothing
        assert live(settings, instance) == 0
        assert snapshot(settings) == first

        # 500s, a 429 with Retry-After, duplicated and out-of-order records: nothing lost or duplicated
        for server in servers:
            server.set_faults(fail_next=2, rate_limit_next=1, retry_after_s=1, duplicate_every=3, out_of_order=True)
        assert live(settings, instance) == 0
        assert snapshot(settings) == first
        for server in servers:
            server.reset_faults()


def test_truncated_json_and_bad_token_fail_clearly_and_keep_data(servers, tmp_path, capsys):
    gateway, _ = servers
    settings = make_settings(tmp_path / "home")
    with instance_for_test() as instance:
        assert live(settings, instance) == 0
        before = snapshot(settings)
        gateway.set_faults(truncate_next=1)
        assert live(settings, instance) == 1
        out = capsys.readouterr()
        assert "/api/v1/measurements" in out.out + out.err and "JSON" in out.out + out.err
        assert snapshot(settings) == before
        gateway.reset_faults()
        os.environ["BEMP_GATEWAY_TOKEN"] = "wrong"
        assert live(settings, instance) == 1
        out = capsys.readouterr()
        text = out.out + out.err
        assert "401" in text and "wrong" not in text.replace("wrong bearer token", "")
        assert snapshot(settings) == before


def small_gateway_folder(tmp_path, extra_rows=()):
    """Two days of gateway 1 plus ``extra_rows``: a data folder in the documented shape."""
    rows = [r for r in read_rows(SAMPLE / "gateway" / "GW-BE-0001.csv.gz") if r["time"] < "2016-02-16"]
    folder = tmp_path / "gateway"
    folder.mkdir()
    with gzip.open(folder / "GW-BE-0001.csv.gz", "wt", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, *extra_rows])
    return folder, rows


def test_unregistered_gateway_and_malformed_record(tmp_path, monkeypatch):
    extra = [{"time": "2016-02-14T10:00:00Z", "sn": "GW-XX-9999", "channel": "1", "device": "T?", "medium": "temperature", "unit": "°C", "value": "19.5"},
             {"time": "2016-02-14T10:00:00Z", "sn": "GW-BE-0001", "channel": "1", "device": "T1", "medium": "temperature", "unit": "°C", "value": "n/a"}]
    folder, _ = small_gateway_folder(tmp_path, extra)
    settings = make_settings(tmp_path / "home")
    with start_server("gateway", folder, token="t") as server, instance_for_test() as instance:
        monkeypatch.setenv("BEMP_GATEWAY_URL", server.url)
        monkeypatch.setenv("BEMP_GATEWAY_TOKEN", "t")
        assert run(settings, "2016-02-14", "2016-02-14", "key:raw/gateway_measurements", instance=instance, job_name="bemp_live") == 0
        with duckdb.connect(str(settings.warehouse), read_only=True) as con:
            stored = con.execute("SELECT value, registered FROM raw.gateway_measurements WHERE sn = 'GW-XX-9999'").fetchall()
            reject = con.execute("SELECT source_file, reason, raw_text FROM raw.rejects").fetchall()
        assert stored == [(19.5, False)]
        assert len(reject) == 1 and reject[0][0] == "gateway:/api/v1/measurements"
        assert reject[0][1] == "bad value: expected a finite number" and '"n/a"' in reject[0][2]
        key = AssetCheckKey(AssetKey(["raw", "gateway_measurements"]), "registered_gateways")
        evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].event.dagster_event.event_specific_data
        assert not evaluation.passed and evaluation.metadata["unregistered"].value == ["GW-XX-9999"]


@pytest.fixture
def polled(tmp_path, monkeypatch):
    """A small gateway server with the env pointing at it, fresh definitions and instance:
    (server, definitions, instance, newest record time)."""
    folder, rows = small_gateway_folder(tmp_path)
    newest = max(datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in rows)
    defs = build_definitions(make_settings(tmp_path / "home"))
    with start_server("gateway", folder, token="t") as server, instance_for_test() as instance:
        monkeypatch.setenv("BEMP_GATEWAY_URL", server.url)
        monkeypatch.setenv("BEMP_GATEWAY_TOKEN", "t")
        yield server, defs, instance, newest


def test_sensor_cursor_advances_only_after_commit(polled):
    server, defs, instance, newest = polled
    sensor = defs.resolve_sensor_def("gateway_sensor")
    job = defs.resolve_job_def("bemp_live")

    def tick():
        return sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs))

    def launch(request):
        return job.execute_in_process(instance=instance, asset_selection=request.asset_selection,
                                      tags=request.tags, raise_on_error=False)

    first = tick()
    assert len(first.run_requests) == 1 and first.cursor is None
    request = first.run_requests[0]
    # from the oldest record served (2016-02-13 23:00Z = 14 Feb in Rome) to the newest
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2016-02-14", "2016-02-16")
    server.set_faults(truncate_next=100)
    assert not launch(request).success
    server.reset_faults()
    again = tick()  # nothing was committed: the same days are requested again
    assert [r.tags for r in again.run_requests] == [request.tags] and again.cursor is None
    assert launch(again.run_requests[0]).success
    done = tick()
    assert done.run_requests == [] and done.cursor == newest.isoformat()


def test_cursor_never_moves_back(polled):
    """A later materialisation acknowledging older data (a re-poll) does not pull the cursor back."""
    from dagster import AssetMaterialization

    _, defs, instance, newest = polled
    sensor = defs.resolve_sensor_def("gateway_sensor")
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=AssetKey(["raw", "gateway_measurements"]), metadata={"acknowledged_until": "2016-02-14T12:00:00+00:00"}))
    result = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=newest.isoformat()))
    assert result.run_requests == [] and result.cursor == newest.isoformat()
