"""KPIs, reports, lineage and the BI snapshot on one real warehouse: the steel plant's 2018, the
synthetic production series, the REACH dwelling and the iPanel fleet over its reference server,
then the `bemp_kpi` job through a real Dagster instance. Every expected figure is computed here
from the sample files with the csv module and plain Python."""
from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster import instance_for_test

from bemp_assets.cli import main, reference_servers, run
from bemp_assets.cli_report import refresh
from bemp_assets.domain import kpi_jobs
from bemp_assets.domain.config import GatewaySpec, load_config
from bemp_assets.domain.snapshot import snapshot_path
from bemp_assets.domain.warehouse import prepare

from .conftest import CONFIG_DIR, SAMPLE, make_settings

SEOUL, MADRID = ZoneInfo("Asia/Seoul"), ZoneInfo("Europe/Madrid")
STEEL = "daewoo_gwangyang"
KRW_PER_EUR = 1299.07
GRID_METER = "7f6eca13160d9ddd2584"
# KEPCO periods written out here on their own (not read from kpis.yaml)
PEAK = {"summer": {10, 11, 13, 14, 15, 16}, "winter": {10, 11, 17, 18, 19, 22}}
MEDIUM = {"summer": {9, 12, 17, 18, 19, 20, 21, 22}, "winter": {9, 12, 13, 14, 15, 16, 20, 21}}
RATES = {"summer": (56.1, 109.0, 191.1), "spring_autumn": (56.1, 78.6, 109.3), "winter": (63.1, 109.2, 166.7)}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("home"))
    settings.inbox.mkdir(parents=True)
    for name in ("Steel_industry_data.csv", "steel_production_SYNTHETIC_2018.csv",
                 "reach_residential4_2016-10.csv", "reach_residential4_2016-11.csv"):
        shutil.copy2(SAMPLE / name, settings.inbox)
    with instance_for_test() as instance:
        # what the KPIs read: raw, clean and hourly (not agg/daily nor the catch-all REACH source)
        assert run(settings, None, None, "key:raw/steel_plant or key:raw/steel_production or key:raw/reach_residential "
                   "or key:clean/measurements or key:agg/hourly", instance=instance, refresh_status=False) == 0
        with reference_servers(settings) as (first, last):
            assert run(settings, first, last, "key:raw/ipanel_trips or key:raw/ipanel_charges", instance=instance,
                       job_name="bemp_live", refresh_status=False) == 0
        assert refresh(settings, instance) == 0
    return settings


def query(settings, sql, params=None):
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def steel_rows():
    """(line, interval start in Seoul, row) of the export; '0:00' closes the day it is dated."""
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            end = datetime.strptime(row["date"], "%d/%m/%Y %H:%M")
            end += timedelta(days=1) if (end.hour, end.minute) == (0, 0) else timedelta(0)
            yield line, end - timedelta(minutes=15), row


def tons(day: date) -> float:
    with open(SAMPLE / "steel_production_SYNTHETIC_2018.csv", newline="") as handle:
        return next(float(r["tons"]) for r in csv.DictReader(handle) if r["date"] == day.isoformat())


def kepco_price(start: datetime) -> float:
    season = "summer" if start.month in (6, 7, 8) else "winter" if start.month in (11, 12, 1, 2) else "spring_autumn"
    hours = "winter" if season == "winter" else "summer"
    light, medium, peak = RATES[season]
    if start.weekday() == 6:
        return light
    return peak if start.hour in PEAK[hours] else medium if start.hour in MEDIUM[hours] else light


def test_steel_yearly_energy_and_co2_from_its_own_columns(home):
    energy = sum(float(r["Usage_kWh"]) for _, _, r in steel_rows())
    co2 = sum(float(r["CO2(tCO2)"]) for _, _, r in steel_rows())
    assert round(energy, 2) == 959636.71 and round(co2, 2) == 403.81
    (kwh, t, days, carrier), = query(home, "SELECT sum(energy_kwh), sum(co2_t), count(DISTINCT day), any_value(carrier) "
                                           "FROM kpi.energy_daily WHERE site = ? AND year(day) = 2018", [STEEL])
    assert kwh == pytest.approx(energy, abs=1e-6) and t == pytest.approx(co2, abs=1e-9)
    assert (days, carrier) == (365, "electricity_kr")


def test_a_days_cost_under_the_time_of_use_tariff(home):
    day = date(2018, 3, 14)  # a Wednesday, no holiday
    krw = sum(float(r["Usage_kWh"]) * kepco_price(start) for _, start, r in steel_rows() if start.date() == day)
    (cost, currency, eur, coverage, blocked), = query(
        home, "SELECT cost, currency, cost_eur, coverage, blocked FROM kpi.energy_daily WHERE site = ? AND day = ?",
        [STEEL, day])
    assert (currency, coverage, blocked) == ("KRW", 1.0, False)
    assert cost == pytest.approx(krw, rel=1e-12)
    assert eur == pytest.approx(krw / KRW_PER_EUR, rel=1e-6)


def test_energy_per_ton_on_a_day_and_in_its_month(home):
    day = date(2018, 3, 14)
    energy = sum(float(r["Usage_kWh"]) for _, start, r in steel_rows() if start.date() == day)
    (value, denominator, coverage), = query(
        home, "SELECT value, denominator, denominator_coverage FROM kpi.intensity WHERE resource_id = ? AND "
              "kpi = 'energy_per_ton' AND period = 'day' AND period_start = ?", [STEEL, day])
    assert denominator == tons(day) and coverage == 1.0
    assert value == pytest.approx(energy / tons(day), rel=1e-12)
    march = [date(2018, 3, d) for d in range(1, 32)]
    energy_march = sum(float(r["Usage_kWh"]) for _, start, r in steel_rows() if start.date() in march)
    (monthly,), = query(home, "SELECT value FROM kpi.intensity WHERE resource_id = ? AND kpi = 'energy_per_ton' "
                              "AND period = 'month' AND period_start = DATE '2018-03-01'", [STEEL])
    assert monthly == pytest.approx(energy_march / sum(tons(d) for d in march), rel=1e-12)


def test_per_m2_from_the_registry(home, tmp_path):
    """The grid meter placed in building 59_473_7 (a test-only mapping): energy / its heated m2."""
    with open(CONFIG_DIR / "buildings.csv", newline="", encoding="utf-8") as handle:
        area = next(float(r["heated_area_m2"]) for r in csv.DictReader(handle) if r["building_id"] == "59_473_7")
    config = load_config(CONFIG_DIR)
    config = config.model_copy(update={"gateways": [GatewaySpec(
        sn=GRID_METER, dwelling="D99", building="59_473_7", installed=date(2016, 1, 1),
        sensors=[{"channel": 1, "medium": "power"}])]})
    path = tmp_path / "warehouse.duckdb"
    shutil.copy2(home.warehouse, path)
    with prepare(duckdb.connect(str(path))) as con:
        kpi_jobs.refresh_intensity(con, config, CONFIG_DIR)
        (value, denominator), = con.execute(
            "SELECT value, denominator FROM kpi.intensity WHERE resource_id = '59_473_7' AND kpi = 'energy_per_m2' "
            "AND period = 'day' AND period_start = DATE '2016-10-30'").fetchall()
    assert denominator == area == 220.0
    assert value == pytest.approx(dst_day_grid_import() / area, rel=1e-9)


def reach_counter(local: str) -> float:
    """The grid meter's first reading at ``local`` (HH:MM:SS DD/MM/YYYY) in the REACH exports."""
    with open(SAMPLE / "reach_residential4_2016-10.csv", newline="", encoding="utf-8") as handle:
        return next(float(r["Valore"].replace(",", ".")) for r in csv.DictReader(handle)
                    if r["Dispositivo"] == GRID_METER and r["Parametro"] == "Energia attiva" and r["Data"] == local)


def dst_day_grid_import() -> float:
    return reach_counter("00:00:00 31/10/2016") - reach_counter("00:00:00 30/10/2016")


def test_day_by_month_totals_daily_cells_and_the_dst_day(home):
    rows = query(home, "SELECT row_label, * EXCLUDE (variable_id, year, row_order, row_label, unit, blocked_days) "
                       "FROM report.day_by_month WHERE variable_id = ? AND year = 2018 ORDER BY row_order",
                 [f"{STEEL}.active_energy"])
    assert [r[0] for r in rows] == [str(d) for d in range(1, 32)] + ["total"]
    cells, totals = [r[1:] for r in rows[:31]], rows[31][1:]
    for month in range(12):
        assert totals[month] == pytest.approx(sum(c[month] for c in cells if c[month] is not None), rel=1e-12)
    daily = defaultdict(float)
    for _, start, r in steel_rows():
        daily[start.date()] += float(r["Usage_kWh"])
    assert cells[13][2] == pytest.approx(daily[date(2018, 3, 14)], abs=1e-9)
    assert cells[29][1] is None  # 30 February
    clean = query(home, "SELECT sum(value) FROM clean.measurements WHERE variable_id = ? AND ts >= ? AND ts < ?",
                  [f"{STEEL}.active_energy", datetime(2018, 3, 1, tzinfo=SEOUL), datetime(2018, 4, 1, tzinfo=SEOUL)])
    assert totals[2] == pytest.approx(clean[0][0], rel=1e-12)
    # the REACH grid meter's autumn DST day: one cell, its 25 hours, the counter difference
    (cell,), = query(home, "SELECT oct FROM report.day_by_month WHERE variable_id = ? AND year = 2016 AND row_label = '30'",
                     [f"{GRID_METER}.active_energy"])
    assert cell == pytest.approx(dst_day_grid_import(), abs=1e-9)
    (hours,), = query(home, "SELECT hours FROM kpi.energy_daily_inputs WHERE variable_id = ? AND day = DATE '2016-10-30'",
                      [f"{GRID_METER}.active_energy"])
    assert hours == 25
    assert {p.name for p in (home.home / "reports").iterdir()} >= {
        f"day_by_month_{STEEL}.active_energy_2018.{ext}" for ext in ("csv", "xlsx", "png")}


def test_day_by_month_command_writes_xlsx(home, tmp_path, monkeypatch, capsys):
    import openpyxl

    for key, value in home.to_env().items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "march.xlsx"
    assert main(["report", "day-by-month", "--variable", f"{STEEL}.active_energy", "--year", "2018", "--out", str(out)]) == 0
    sheet = openpyxl.load_workbook(out)["2018"]
    assert [c.value for c in sheet[1]] == ["row_label", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                                           "oct", "nov", "dec"]
    assert sheet.cell(row=33, column=1).value == "total" and out.with_suffix(".png").exists()
    assert main(["report", "day-by-month", "--variable", "nope", "--year", "2018"]) == 2
    assert "unknown variable 'nope'" in capsys.readouterr().err


def trips_by(period):
    per = defaultdict(lambda: defaultdict(float))
    with gzip.open(SAMPLE / "ipanel" / "trips.csv.gz", "rt", encoding="utf-8") as handle:
        for r in csv.DictReader(line for line in handle if not line.startswith("#")):
            local = datetime.strptime(r["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).astimezone(MADRID)
            start = date(local.year, local.month if period == "month" else 1, 1)
            for key in (r["vehicleCode"], "fleet"):
                for column in ("odometryDistance", "consumption", "regeneration", "tractionConsumption"):
                    per[(key, start)][column] += float(r[column])
    return per


def test_ebus_months_and_year_against_the_reference_files(home):
    for period in ("month", "year"):
        expected = trips_by(period)
        rows = query(home, "SELECT vehicle, period_start, km, total_kwh, kwh_per_km, regeneration_share, co2_avoided_kg "
                           "FROM kpi.ebus_monthly WHERE period = ?", [period])
        assert {(r[0], r[1]) for r in rows} == set(expected)
        for vehicle, start, km, total, per_km, regen, avoided in rows:
            e = expected[(vehicle, start)]
            assert km == pytest.approx(e["odometryDistance"]) and total == pytest.approx(e["consumption"])
            assert per_km == pytest.approx(e["consumption"] / e["odometryDistance"])
            assert regen == pytest.approx(e["regeneration"] / e["tractionConsumption"])
            assert avoided == pytest.approx(e["odometryDistance"] * 0.45 * 2.68 - e["consumption"] * 0.296)
    charges = defaultdict(float)
    with gzip.open(SAMPLE / "ipanel" / "charges.csv.gz", "rt", encoding="utf-8") as handle:
        for r in csv.DictReader(line for line in handle if not line.startswith("#")):
            local = datetime.strptime(r["date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).astimezone(MADRID)
            charges[date(local.year, local.month, 1)] += float(r["chargeNumber"])
    rows = query(home, "SELECT period_start, charges FROM kpi.ebus_monthly WHERE period = 'month' AND vehicle = 'fleet'")
    assert dict(rows) == pytest.approx(dict(charges))


def test_generic_kpi_store_names_every_resource(home):
    kpis = {r[0] for r in query(home, "SELECT kpi_id FROM kpi.definitions")}
    measured = dict(query(home, "SELECT kpi_id, count(*) FROM kpi.measures GROUP BY 1"))
    assert set(measured) == kpis - {"energy_per_m2", "cost_per_m2"}  # no gateway data here: no building
    resources = {r[0] for r in query(home, "SELECT DISTINCT resource_id FROM kpi.measures")}
    assert {f"{STEEL}/electricity", STEEL, "fleet", "4711-HBD"} <= resources
    (orphans,), = query(home, "SELECT count(*) FROM kpi.measures ANTI JOIN kpi.measure_inputs "
                              "USING (kpi_id, resource_id, period, period_start)")
    assert orphans == 0


def test_lineage_of_a_cost_ends_at_the_file_and_its_lines(home, monkeypatch, capsys):
    day = date(2018, 3, 14)
    lines = [line for line, start, _ in steel_rows() if start.date() == day]
    digest = hashlib.sha256((SAMPLE / "Steel_industry_data.csv").read_bytes()).hexdigest()
    for key, value in home.to_env().items():
        monkeypatch.setenv(key, value)
    assert main(["lineage", "kpi", "cost_eur", "--day", "2018-03-14", "--resource", f"{STEEL}/electricity"]) == 0
    out = capsys.readouterr().out
    assert f"variable {STEEL}.active_energy 2018-03-13 15:00 .. 2018-03-14 15:00 UTC: 96 clean rows" in out
    assert f"raw 96 rows from Steel_industry_data.csv lines {min(lines)}..{max(lines)} (sha256 {digest})" in out
    assert len(lines) == 96 and max(lines) - min(lines) == 95
    assert main(["lineage", "kpi", "nope", "--day", "2018-03-14"]) == 2


def test_flagged_or_excluded_days_that_failed_a_blocking_rule(home, tmp_path):
    config = load_config(CONFIG_DIR)
    path = tmp_path / "warehouse.duckdb"
    shutil.copy2(home.warehouse, path)
    with prepare(duckdb.connect(str(path))) as con:
        # the completeness rule failed the site-local (Europe/Rome) day 2018-03-14 of the steel energy
        con.execute("INSERT INTO ops.commissioning_results VALUES (now(), 'test', 'agg/daily', '2018-03-14', ?, "
                    "DATE '2018-03-14', 'completeness', false, 0.5, 0.9, 'fail')", [f"{STEEL}.active_energy"])
        kpi_jobs.refresh_energy_daily(con, config)
        flagged = con.execute("SELECT day, blocked, coverage FROM kpi.energy_daily WHERE site = ? AND day "
                              "BETWEEN DATE '2018-03-13' AND DATE '2018-03-16' ORDER BY day", [STEEL]).fetchall()
        excluded = config.model_copy(update={"kpis": config.kpis.model_copy(update={"commissioning": "exclude"})})
        kpi_jobs.refresh_energy_daily(con, excluded)
        left = con.execute("SELECT day, excluded_hours, round(coverage, 6) FROM kpi.energy_daily WHERE site = ? AND day "
                           "BETWEEN DATE '2018-03-13' AND DATE '2018-03-16' ORDER BY day", [STEEL]).fetchall()
    # Rome 2018-03-14 = 23:00 UTC 13th .. 23:00 UTC 14th = Seoul 14th 08:00 .. 15th 08:00
    assert [(d.day, b) for d, b, _ in flagged] == [(13, False), (14, True), (15, True), (16, False)]
    assert [(d.day, h, c) for d, h, c in left] == [(13, 0, 1.0), (14, 16, round(8 / 24, 6)), (15, 8, round(16 / 24, 6)),
                                                   (16, 0, 1.0)]


def test_a_bi_reader_holding_the_snapshot_during_a_run(home):
    path = snapshot_path(home.home / "bi")
    reader = duckdb.connect(str(path), read_only=True)
    before = reader.execute("SELECT max(published_at) FROM bi.snapshot_info").fetchall()[0][0]
    (kwh,), = reader.execute("SELECT sum(energy_kwh) FROM bi.energy_daily WHERE site = ?", [STEEL]).fetchall()
    assert kwh == pytest.approx(959636.71, abs=1e-6)
    with instance_for_test() as instance:
        assert refresh(home, instance) == 0
    assert reader.execute("SELECT max(published_at) FROM bi.snapshot_info").fetchall()[0][0] == before
    reader.close()
    with duckdb.connect(str(path), read_only=True) as fresh:
        assert fresh.execute("SELECT max(published_at) FROM bi.snapshot_info").fetchall()[0][0] > before


def test_the_documented_lineage_sql_over_the_snapshot(home):
    from .conftest import ROOT

    text = (ROOT / "docs" / "bi.md").read_text(encoding="utf-8")
    sql = text.split("## Lineage in SQL", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    lines = [line for line, start, _ in steel_rows() if start.date() == date(2018, 3, 14)]
    with duckdb.connect(str(snapshot_path(home.home / "bi")), read_only=True) as con:
        rows = con.execute(sql).fetchall()
    steel = [r for r in rows if r[1] == f"{STEEL}/electricity"]
    assert [(r[5], r[7], r[9], r[10], r[11]) for r in steel] == [
        (f"{STEEL}.active_energy", "Steel_industry_data.csv", 96, min(lines), max(lines))]


def test_power_is_not_counted_where_the_device_has_an_energy_counter(home):
    methods = dict(query(home, "SELECT variable_id, any_value(method) FROM kpi.energy_daily_inputs GROUP BY 1"))
    assert f"{GRID_METER}.active_power" in {r[0] for r in query(home, "SELECT variable_id FROM meta.variables")}
    assert f"{GRID_METER}.active_power" not in methods and methods[f"{GRID_METER}.active_energy"] == "interval"
