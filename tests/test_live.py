"""The HTTP sources end to end: real reference servers on localhost, a real Dagster instance
and DuckDB file. Expected counts come from the servers' data files, read here with csv."""
import csv
import gzip
import json
import os
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterRunStatus, build_sensor_context, instance_for_test
from dagster._core.test_utils import create_run_for_test
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from bemp_assets.cli import run
from bemp_assets.definitions import build_definitions
from bemp_assets.domain.config import load_config
from bemp_assets.refservers import start_server

from .conftest import CONFIG_DIR, SAMPLE, make_settings

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
    assert len(first.run_requests) == 1 and json.loads(first.cursor) == {"acknowledged_until": {}}
    request = first.run_requests[0]
    # from the oldest record served (2016-02-13 23:00Z = 14 Feb in Rome) to the newest
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == ("2016-02-14", "2016-02-16")
    server.set_faults(truncate_next=100)
    assert not launch(request).success
    server.reset_faults()
    again = tick()  # nothing was committed: the same days are requested again
    assert [r.tags for r in again.run_requests] == [request.tags] and json.loads(again.cursor) == {"acknowledged_until": {}}
    assert launch(again.run_requests[0]).success
    done = tick()
    assert done.run_requests == [] and json.loads(done.cursor) == {"acknowledged_until": {"measurements": newest.isoformat()}}


def test_cursor_never_moves_back(polled):
    """A later materialisation acknowledging older data (a re-poll) does not pull the cursor back."""
    from dagster import AssetMaterialization

    _, defs, instance, newest = polled
    sensor = defs.resolve_sensor_def("gateway_sensor")
    instance.report_runless_asset_event(AssetMaterialization(
        asset_key=AssetKey(["raw", "gateway_measurements"]), metadata={"acknowledged_until": "2016-02-14T12:00:00+00:00"}))
    # the older cursor form, one ISO time, is still read
    result = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=newest.isoformat()))
    assert result.run_requests == [] and json.loads(result.cursor)["acknowledged_until"] == {"measurements": newest.isoformat()}


def tick_of(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("gateway_sensor")
    return sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, cursor=cursor))


def due_now(cursor: str) -> str:
    """The cursor with its back-off over (the wait has passed)."""
    state = json.loads(cursor)
    state["next_try"] = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    return json.dumps(state)


def test_source_down_skips_with_one_line_and_backs_off(tmp_path, monkeypatch):
    folder, rows = small_gateway_folder(tmp_path)
    defs = build_definitions(make_settings(tmp_path / "home"))
    monkeypatch.setenv("BEMP_GATEWAY_TOKEN", "t")
    with instance_for_test() as instance:
        server = start_server("gateway", folder, token="t")
        url, port = server.url, server.httpd.server_address[1]
        monkeypatch.setenv("BEMP_GATEWAY_URL", url)
        server.close()  # the source is down: connection refused

        before = datetime.now(UTC)
        down = tick_of(defs, instance)  # no exception
        state = json.loads(down.cursor)
        assert down.run_requests == [] and "\n" not in down.skip_message
        assert down.skip_message.startswith(f"gateway: source unreachable at {url}: GET /api/v1/measurements: gave up after 2 attempts")
        assert down.skip_message.endswith(f"; next try after {state['next_try']}")
        assert state["failures"] == 1 and state["acknowledged_until"] == {}
        assert timedelta(seconds=59) <= datetime.fromisoformat(state["next_try"]) - before <= timedelta(minutes=1, seconds=5)

        with start_server("gateway", folder, token="t", port=port):
            # still inside the back-off: no probe, so the server being back changes nothing yet
            waiting = tick_of(defs, instance, down.cursor)
            assert waiting.run_requests == [] and waiting.cursor == down.cursor and waiting.skip_message == down.skip_message
        before = datetime.now(UTC)
        second = tick_of(defs, instance, due_now(down.cursor))  # down again once the wait is over: twice as long
        state = json.loads(second.cursor)
        assert state["failures"] == 2
        assert timedelta(minutes=1, seconds=59) <= datetime.fromisoformat(state["next_try"]) - before <= timedelta(minutes=2, seconds=5)

        with start_server("gateway", folder, token="t", port=port):
            back = tick_of(defs, instance, due_now(second.cursor))
        assert len(back.run_requests) == 1 and json.loads(back.cursor) == {"acknowledged_until": {}}
        assert back.skip_message is None


def test_catch_up_starts_after_the_gap_and_is_bounded(tmp_path, monkeypatch):
    """Two days in February, nothing until April, then six weeks: the first poll takes the
    February days, the next starts at the first April record and spans max_days_per_run days."""
    later = [r for r in read_rows(SAMPLE / "gateway" / "GW-BE-0001.csv.gz") if "2016-04-01" <= r["time"] < "2016-05-15"]
    folder, february = small_gateway_folder(tmp_path, later)
    max_days = load_config(CONFIG_DIR).live_sources.max_days_per_run
    rome = ZoneInfo("Europe/Rome")
    local = lambda r: datetime.fromisoformat(r["time"].replace("Z", "+00:00")).astimezone(rome).date()
    first_after_gap = min(local(r) for r in later)
    expected_end = max(d for d in map(local, later) if d < first_after_gap + timedelta(days=max_days))
    assert first_after_gap == date(2016, 4, 1) and expected_end == first_after_gap + timedelta(days=max_days - 1)

    defs = build_definitions(make_settings(tmp_path / "home"))
    job = defs.resolve_job_def("bemp_live")
    with start_server("gateway", folder, token="t") as server, instance_for_test() as instance:
        monkeypatch.setenv("BEMP_GATEWAY_URL", server.url)
        monkeypatch.setenv("BEMP_GATEWAY_TOKEN", "t")

        def span(result):
            [request] = result.run_requests
            return request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]

        def launch(result):
            [request] = result.run_requests
            assert job.execute_in_process(instance=instance, asset_selection=request.asset_selection, tags=request.tags).success

        first = tick_of(defs, instance)
        assert span(first) == (min(map(local, february)).isoformat(), max(map(local, february)).isoformat())
        launch(first)
        second = tick_of(defs, instance, first.cursor)
        assert span(second) == (first_after_gap.isoformat(), expected_end.isoformat())
        # one run at a time: while one of the source's runs is in progress, nothing more is requested
        queued = create_run_for_test(instance, job_name="bemp_live", status=DagsterRunStatus.STARTED, tags={"bemp/poll": "gateway"})
        held = tick_of(defs, instance, second.cursor)
        assert held.run_requests == [] and held.skip_message.startswith(f"gateway: run {queued.run_id} still in flight")
        instance.delete_run(queued.run_id)
        launch(second)
        third = tick_of(defs, instance, held.cursor)  # continues the day after the last run's days
        assert span(third) == ((expected_end + timedelta(days=1)).isoformat(), max(map(local, later)).isoformat())


def test_ipanel_first_poll_spans_its_trips_and_charges_bounded(servers, tmp_path):
    """iPanel is probed on trips and charges: the first request starts at the older of the two
    and ends at the last record of either within max_days_per_run site days."""
    max_days = load_config(CONFIG_DIR).live_sources.max_days_per_run
    rome = ZoneInfo("Europe/Rome")
    days = sorted(datetime.fromisoformat(r["date"].replace("Z", "+00:00")).astimezone(rome).date()
                  for name in ("trips", "charges") for r in read_rows(SAMPLE / "ipanel" / f"{name}.csv.gz"))
    expected = (days[0], max(d for d in days if d < days[0] + timedelta(days=max_days)))
    defs = build_definitions(make_settings(tmp_path / "home"))
    with instance_for_test() as instance:
        result = defs.resolve_sensor_def("ipanel_sensor").evaluate_tick(build_sensor_context(instance=instance, definitions=defs))
    [request] = result.run_requests
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == tuple(d.isoformat() for d in expected)
    assert {tuple(k.path) for k in request.asset_selection} == {("raw", "ipanel_trips"), ("raw", "ipanel_charger_status"), ("raw", "ipanel_charges")}


def test_max_days_per_run_is_validated(tmp_path):
    import shutil

    from bemp_assets.domain.config import ConfigError

    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    live_yaml = folder / "live.yaml"
    live_yaml.write_text(live_yaml.read_text().replace("max_days_per_run: 31", "max_days_per_run: 0"))
    with pytest.raises(ConfigError) as err:
        load_config(folder)
    assert "live.yaml: key 'live_sources.max_days_per_run'" in str(err.value) and "greater than or equal to 1" in str(err.value)


def test_held_days_span_every_live_table_in_the_site_time_zone(con):
    from bemp_assets.domain.live import held_days

    assert held_days(con, "Europe/Rome") is None
    con.execute("INSERT INTO raw.gateway_measurements (sn, channel, device, medium, ts, value, registered, fetched_at) "
                "VALUES ('GW', 1, 'd', 'temperature', '2016-03-01 23:30:00+00', 20, true, now())")
    con.execute("INSERT INTO raw.ipanel_charges (chargerId, date, fetched_at) VALUES (1, '2016-02-28 22:59:00+00', now())")
    # 23:30 UTC on 1 March is 2 March in Rome; 22:59 UTC on 28 February is still 28 February
    assert held_days(con, "Europe/Rome") == (date(2016, 2, 28), date(2016, 3, 2))


def test_a_gateway_fetch_becomes_typed_readings_and_a_repeated_key_is_refused():
    """gateway_readings: one reading per variable <sn>.ch<channel>_<medium> and time, the
    variables described once; a ReadingBatch holding a key twice is refused, naming it."""
    import pandas as pd

    from bemp_assets.domain.live import ReadingBatch, gateway_batch, gateway_readings

    records = [{"time": "2016-03-01T10:00:00Z", "sn": "G1", "channel": 1, "device": "room", "medium": "temperature",
                "unit": None, "value": 20.5},
               {"time": "2016-03-01T10:00:00Z", "sn": "G1", "channel": 1, "device": "room", "medium": "temperature",
                "unit": None, "value": 21.0},  # repeated in the response: the last one is kept
               {"time": "2016-03-01T10:15:00Z", "sn": "G1", "channel": 2, "device": "plug", "medium": "power",
                "unit": "kW", "value": 7.0}]
    readings = gateway_readings(gateway_batch(records, {}), "/measurements")
    assert readings.label == "/measurements" and readings.source == "gateway"
    assert readings.readings.to_dict("list") == {
        "variable_id": ["G1.ch1_temperature", "G1.ch2_power"],
        "ts": [pd.Timestamp("2016-03-01 10:00", tz="UTC"), pd.Timestamp("2016-03-01 10:15", tz="UTC")],
        "value": [21.0, 7.0]}
    assert readings.variables[["variable_id", "device", "original_name", "parameter", "unit"]].values.tolist() == [
        ["G1.ch1_temperature", "G1", "room", "temperature", "°C"], ["G1.ch2_power", "G1", "plug", "power", "kW"]]
    twice = pd.concat([readings.readings, readings.readings.iloc[[1]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"/measurements: 1 reading\(s\) repeat a key, first G1.ch2_power at 2016-03-01"):
        ReadingBatch("/measurements", "gateway", twice, readings.variables, readings.rejects)
