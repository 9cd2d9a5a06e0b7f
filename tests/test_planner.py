"""The thermal demand planner: HDD by hand, the regression on crafted series, k chosen on an
obvious feature set, zero-day gaps and row accounting, the heated-area scaling, the forecast
total, and (real Dagster instance) a registry edit making the planner stale, then
`bemp planner export`."""
from __future__ import annotations

import csv
import shutil
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, instance_for_test
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from bemp_assets import cli_planner
from bemp_assets.cli import main
from bemp_assets.definitions import build_definitions
from bemp_assets.domain import planner, planner_cluster, planner_model
from bemp_assets.domain.buildings import COLUMNS, load_registry
from bemp_assets.domain.settings import Settings

from .conftest import CONFIG_DIR, SAMPLE, write_csv

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_hdd_for_a_week_by_hand():
    temperatures = [-2.0, 0.5, 7.25, 15.5, 16.0, 12.0, 21.3]
    # base 15.5: 17.5, 15.0, 8.25, 0 (at the base), 0 (above), 3.5, 0
    assert list(planner.hdd(temperatures, 15.5)) == [17.5, 15.0, 8.25, 0.0, 0.0, 3.5, 0.0]
    assert list(planner.hdd(temperatures, 18.0)) == [20.0, 17.5, 10.75, 2.5, 2.0, 6.0, 0.0]


def test_regression_on_crafted_series():
    x = np.arange(0, 20, 0.5)
    exact = pd.DataFrame({"building_id": "A", "hdd": x, "energy_kwh": 50 + 12 * x})
    rng = np.random.default_rng(1)
    noisy_y = 30 + 4 * x + rng.normal(0, 3, len(x))
    noisy = pd.DataFrame({"building_id": "B", "hdd": x, "energy_kwh": noisy_y})
    lines = planner_model.fit_lines(pd.concat([exact, noisy]))
    assert lines.loc["A", "slope"] == pytest.approx(12) and lines.loc["A", "intercept"] == pytest.approx(50)
    assert lines.loc["A", "r2"] == pytest.approx(1) and lines.loc["A", "cv_rmse"] == pytest.approx(0, abs=1e-6)
    slope, intercept = np.polyfit(x, noisy_y, 1)
    residuals = noisy_y - (intercept + slope * x)
    assert lines.loc["B", "slope"] == pytest.approx(slope) and lines.loc["B", "intercept"] == pytest.approx(intercept)
    assert lines.loc["B", "cv_rmse"] == pytest.approx(np.sqrt((residuals ** 2).sum() / (len(x) - 2)) / noisy_y.mean())
    assert lines.loc["B", "r2"] == pytest.approx(1 - (residuals ** 2).sum() / ((noisy_y - noisy_y.mean()) ** 2).sum())
    assert lines.loc["B", "n_days"] == len(x)


def test_base_temperature_search_finds_the_balance_point():
    """Energy = 5 + 3 x max(0, 14 - T): the search over 10..20 °C finds 14, the fixed 15.5 does not fit exactly."""
    temps = np.linspace(-5, 25, 61)
    days = pd.DataFrame({"building_id": "A", "temp_mean_c": temps, "energy_kwh": 5 + 3 * np.clip(14 - temps, 0, None)})
    searched = planner_model.fit_with_base(days, planner_model.candidate_bases(15.5, [10, 20]))
    assert searched.loc["A", "base_temperature"] == 14.0
    assert searched.loc["A", "slope"] == pytest.approx(3) and searched.loc["A", "intercept"] == pytest.approx(5)
    fixed = planner_model.fit_with_base(days, planner_model.candidate_bases(15.5, None))
    assert fixed.loc["A", "base_temperature"] == 15.5 and fixed.loc["A", "r2"] < 1


def test_k_chosen_by_silhouette_on_four_obvious_groups():
    centres = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=float)
    offsets = np.array([[0.1, 0, 0], [-0.1, 0, 0], [0, 0.1, 0], [0, -0.1, 0]])
    points = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    features = pd.DataFrame(points, index=[f"b{i}" for i in range(16)], columns=["f1", "f2", "f3"])
    labels, distance, scores, k = planner_cluster.cluster(features, 3, 7, seed=0)
    assert k == 4 and sorted(scores) == [3, 4, 5, 6, 7]
    assert scores[4] == max(scores.values())
    groups = [set(labels[i * 4:(i + 1) * 4]) for i in range(4)]
    assert all(len(g) == 1 for g in groups) and len(set().union(*groups)) == 4
    assert distance.max() < 0.1  # each point sits next to its centroid (standardised units)


def _registry(tmp_path, rows: list[dict]):
    lines = [",".join(COLUMNS)] + [",".join(str(r.get(c, "")) for c in COLUMNS) for r in rows]
    return load_registry(write_csv(tmp_path / "buildings.csv", "\n".join(lines) + "\n"))


def test_registry_features_used_when_complete_and_representative_scaled_by_area(tmp_path):
    rows = [{"building_id": f"R{i}", "main_carrier": "gas", "heated_area_m2": area, "floors": floors, "orientation": orient}
            for i, (area, floors, orient) in enumerate([(100, 1, "S"), (110, 1, "S"), (105, 1, "S"), (900, 6, "N"),
                                                        (950, 6, "N"), (920, 6, "N"), (400, 3, "E"), (420, 3, "E")])]
    registry = _registry(tmp_path, rows)
    x = np.arange(60, dtype=float) % 15
    days = pd.DataFrame({"building_id": "R0", "hdd": x, "temp_mean_c": 15.5 - x, "energy_kwh": 20 + 2 * x, "weekend": False})
    result = planner_cluster.build_clustering(registry, days, "auto", 3, 7, 30, 0)
    assert result.mode == "registry"
    assert {"heated_area_m2", "floors", "orientation_S", "orientation_N", "orientation_E"} <= set(result.features)
    table = result.table.set_index("building_id")
    assert table.loc["R0", "cluster"] == table.loc["R1", "cluster"] == table.loc["R2", "cluster"]
    assert table.loc["R1", "representative"] == "R0"  # the only one of its cluster with measured demand
    models = planner_model.assign_models(result.table, planner_model.fit_with_base(days, [15.5]), registry, own_min_days=60)
    by_id = models.set_index("building_id")
    assert by_id.loc["R0", "method"] == "own" and by_id.loc["R0", "slope"] == pytest.approx(2)
    assert by_id.loc["R1", "method"] == "representative_scaled"
    assert by_id.loc["R1", "slope"] == pytest.approx(2 * 110 / 100) and by_id.loc["R1", "intercept"] == pytest.approx(20 * 1.1)
    assert by_id.loc["R3", "method"] is None and "no representative" in by_id.loc["R3", "reason"]


def test_zero_days_gaps_and_accounting(con, tmp_path):
    energy = write_csv(tmp_path / "e.csv", "date_utc,building,gas_kwh,n_hours,n_zero_hours\n"
                       "2019-01-01,A,0.0,24,24\n"        # cold whole zero day: a gap
                       "2019-07-01,A,0.0,24,24\n"        # warm whole zero day: a real 0
                       "2019-01-02,A,120.5,24,2\n"
                       "2019-01-03,A,abc,24,0\n"         # rejected: bad number
                       "2019-13-01,A,5,24,0\n"           # rejected: bad date
                       "2019-01-04,,7,24,0\n"            # rejected: no building
                       "2019-01-05,A,-1,24,0\n")         # rejected: negative
    temps = write_csv(tmp_path / "t.csv", "date,temp_mean_c\n2019-01-01,3.0\n2019-07-01,20.0\n2019-01-02,4.0\n2019-01-03,x\n")
    counts = planner.load_measured(con, energy, temps, 15.5, NOW)
    again = planner.load_measured(con, energy, temps, 15.5, NOW)  # idempotent
    assert counts == again
    assert counts["energy_rows_read"] == 7 == counts["energy_stored"] + counts["energy_rejected"]
    assert (counts["energy_stored"], counts["zero_day_gaps"], counts["temperature_rejected"]) == (3, 1, 1)
    stored = con.execute("SELECT day, valid, reason FROM planner.daily_demand ORDER BY day").fetchall()
    assert stored == [(date(2019, 1, 1), False, "zero_day_gap"), (date(2019, 1, 2), True, None), (date(2019, 7, 1), True, None)]
    reasons = sorted(r[0] for r in con.execute("SELECT reason FROM planner.rejects").fetchall())
    assert len(reasons) == 5 and "empty building" in reasons and "bad date (expected YYYY-MM-DD)" in reasons
    days = planner.training_days(con, 15.5)
    assert list(days["day"].dt.date) == [date(2019, 1, 2), date(2019, 7, 1)] and list(days["hdd"]) == [11.5, 0.0]


def test_forecast_per_building_and_total():
    models = pd.DataFrame({"building_id": ["A", "B", "C"], "method": ["own", "own", None], "base_temperature": [15.5, 15.5, 15.5],
                           "intercept": [10.0, -50.0, np.nan], "slope": [2.0, 1.0, np.nan]})
    temps = pd.DataFrame({"day": [date(2019, 2, d) for d in range(1, 10)], "temp_mean_c": [5.5, 15.5, 0.5, 10, 10, 10, 10, 10, 10]})
    plan = planner_model.forecast(models, temps, date(2019, 1, 31), 3)
    a = plan[plan["building_id"] == "A"]
    assert list(a["horizon"]) == [1, 2, 3] and list(a["demand_kwh"]) == [30.0, 10.0, 40.0]
    b = plan[plan["building_id"] == "B"]
    assert list(b["demand_kwh"]) == [0.0, 0.0, 0.0]  # -50 + HDD stays below 0: cut at 0
    total = plan[plan["building_id"] == planner.TOTAL]
    assert list(total["demand_kwh"]) == [30.0, 10.0, 40.0] and "C" not in set(plan["building_id"])


def _status(settings, instance, key):
    graph = build_definitions(settings).resolve_asset_graph()
    return CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance)).get_status(key)


def test_registry_edit_makes_planner_stale_and_export_writes_the_plan(tmp_path, monkeypatch):
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    settings = Settings.from_env({"BEMP_HOME": str(tmp_path / "home"), "BEMP_CONFIG": str(config), "BEMP_SAMPLE": str(SAMPLE)})
    forecast_key = AssetKey(["planner", "forecast"])
    with instance_for_test() as instance:
        assert cli_planner.run(settings, instance=instance) == 0
        assert _status(settings, instance, forecast_key) == StaleStatus.FRESH
        registry = config / "buildings.csv"
        text = registry.read_text()
        registry.write_text("\n".join(line for line in text.splitlines() if not line.startswith("UCam_Building_b64,")) + "\n")
        for key in ("clusters", "models", "forecast"):
            assert _status(settings, instance, AssetKey(["planner", key])) == StaleStatus.STALE
        assert _status(settings, instance, AssetKey(["planner", "measured_demand"])) == StaleStatus.FRESH
        assert cli_planner.run(settings, instance=instance) == 0
        assert _status(settings, instance, forecast_key) == StaleStatus.FRESH

    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "plan.csv"
    assert main(["planner", "export", "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    buildings = {r["building_id"] for r in rows} - {"TOTAL"}
    assert len(buildings) == 14 and "UCam_Building_b64" not in buildings  # 15 measured, one removed
    days = sorted({r["day"] for r in rows})
    assert days == [f"2019-02-0{d}" for d in range(1, 8)]
    for day in days:
        total = next(float(r["demand_kwh"]) for r in rows if r["building_id"] == "TOTAL" and r["day"] == day)
        assert total == pytest.approx(sum(float(r["demand_kwh"]) for r in rows if r["day"] == day and r["building_id"] != "TOTAL"), abs=0.01)


def test_forecast_temperatures_over_http_and_a_bad_line_named(tmp_path):
    """The forecast source as a real HTTP server on localhost; a bad CSV line is named."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bemp_assets.assets.planner import _forecast_temperatures
    from bemp_assets.domain.planner_config import ForecastSource, PlannerConfig

    body = b"date,temp_mean_c\n2019-02-02,1.5\n2019-02-01,-0.5\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/forecast.csv"
        cfg = PlannerConfig(forecast=ForecastSource(csv=None, url=url))
        temps = _forecast_temperatures(cfg, Settings.from_env({"BEMP_HOME": str(tmp_path)}))
    finally:
        server.shutdown()
    assert list(temps["day"]) == [date(2019, 2, 1), date(2019, 2, 2)] and list(temps["temp_mean_c"]) == [-0.5, 1.5]
    bad = write_csv(tmp_path / "f.csv", "date,temp_mean_c\n2019-02-01,1\n2019-02-02,warm\n")
    with pytest.raises(ValueError, match=r"f\.csv: line 3: expected date YYYY-MM-DD and a temperature"):
        planner_model.read_forecast(str(bad))
