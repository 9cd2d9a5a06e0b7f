"""Comfort: PMV/PPD against ISO 7730 reference points (and an independent implementation of its
equations written here), the ASHRAE 55 worked example the library documents, applicability
limits flagged, status thresholds, and the daily shares per dwelling, building and district
computed by hand on a small warehouse."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from bemp_assets.domain import comfort
from bemp_assets.domain.comfort_config import ComfortConfig, OccupancyConfig
from bemp_assets.domain.config import GatewaySpec, SensorSpec


def iso7730_pmv(ta, tr, vel, rh, met, clo, wme=0.0):
    """ISO 7730:2005 Annex D, the standard's own algorithm, transcribed independently."""
    pa = rh * 10 * math.exp(16.6536 - 4030.183 / (ta + 235))
    icl, m, w = 0.155 * clo, met * 58.15, wme * 58.15
    mw = m - w
    fcl = 1 + 1.29 * icl if icl <= 0.078 else 1.05 + 0.645 * icl
    hcf, taa, tra = 12.1 * math.sqrt(vel), ta + 273, tr + 273
    tcla = taa + (35.5 - ta) / (3.5 * icl + 0.1)
    p1 = icl * fcl
    p2, p3, p4 = p1 * 3.96, p1 * 100, p1 * taa
    p5 = 308.7 - 0.028 * mw + p2 * (tra / 100) ** 4
    xn, xf = tcla / 100, tcla / 50
    hc = hcf
    while abs(xn - xf) > 0.00015:
        xf = (xf + xn) / 2
        hc = max(hcf, 2.38 * abs(100 * xf - taa) ** 0.25)
        xn = (p5 + p4 * hc - p2 * xf ** 4) / (100 + p3 * hc)
    tcl = 100 * xn - 273
    losses = (3.05e-3 * (5733 - 6.99 * mw - pa) + (0.42 * (mw - 58.15) if mw > 58.15 else 0)
              + 1.7e-5 * m * (5867 - pa) + 0.0014 * m * (34 - ta)
              + 3.96 * fcl * (xn ** 4 - (tra / 100) ** 4) + fcl * hc * (tcl - ta))
    pmv = (0.303 * math.exp(-0.036 * m) + 0.028) * (mw - losses)
    return pmv, 100 - 95 * math.exp(-0.03353 * pmv ** 4 - 0.2179 * pmv ** 2)


# ISO 7730:2005 Table D.1 rows with still air (0.1 m/s): ta, tr, v, rh, met, clo -> PMV, PPD
ISO_TABLE = [
    (22.0, 22.0, 0.1, 60, 1.2, 0.5, -0.75, 17),
    (27.0, 27.0, 0.1, 60, 1.2, 0.5, 0.77, 17),
    (23.5, 25.5, 0.1, 60, 1.2, 0.5, -0.01, 5),
    (19.0, 19.0, 0.1, 40, 1.2, 1.0, -0.60, 13),
    (23.0, 21.0, 0.1, 40, 1.2, 1.0, 0.05, 5),
]


@pytest.mark.parametrize("ta, tr, v, rh, met, clo, pmv, ppd", ISO_TABLE)
def test_independent_iso7730_reproduces_the_standard_table(ta, tr, v, rh, met, clo, pmv, ppd):
    mine_pmv, mine_ppd = iso7730_pmv(ta, tr, v, rh, met, clo)
    assert mine_pmv == pytest.approx(pmv, abs=0.011)
    assert mine_ppd == pytest.approx(ppd, abs=0.6)


def test_library_ashrae_function_matches_iso_equations_in_still_air():
    """In still air (vr <= 0.1 m/s) ASHRAE 55 applies no cooling effect: PMV is Fanger's."""
    from pythermalcomfort.models import pmv_ppd_ashrae

    table = np.array(ISO_TABLE, dtype=float)
    result = pmv_ppd_ashrae(tdb=table[:, 0], tr=table[:, 1], vr=table[:, 2], rh=table[:, 3], met=table[:, 4],
                            clo=table[:, 5], round_output=False)
    expected = np.array([iso7730_pmv(*row[:6]) for row in table])
    assert np.allclose(result.pmv, expected[:, 0], atol=0.01)
    assert np.allclose(result.ppd, expected[:, 1], atol=0.3)


def test_wrapper_reproduces_the_documented_ashrae_example_and_flags_limits():
    # pythermalcomfort's documented ASHRAE 55 example: 25 °C, 50 %, 0.1 m/s, 1.4 met, 0.5 clo
    # -> PMV 0.0, PPD 5.0 (relative air speed 0.1 + 0.3 x 0.4 = 0.22 m/s, dynamic clothing)
    pmv, ppd, vr = comfort.pmv_ppd(np.array([25.0, 5.0, 41.0]), np.array([25.0, 5.0, 41.0]),
                                   np.array([50.0, 50.0, 50.0]), 1.4, 0.5, 0.1)
    assert vr[0] == pytest.approx(0.22)
    assert pmv[0] == pytest.approx(0.0, abs=0.01) and ppd[0] == pytest.approx(5.0, abs=0.05)
    assert np.isnan(pmv[1:]).all()  # 5 °C and 41 °C are outside 10-40 °C: flagged, not computed
    assert list(comfort.status_of(pmv)) == ["green", "outside_limits", "outside_limits"]


def test_status_thresholds_default_and_configured():
    pmv = np.array([0.0, 0.5, -0.5001, 1.0, -1.0001, 2.5, np.nan])
    assert list(comfort.status_of(pmv)) == ["green", "green", "yellow", "yellow", "red", "red", "outside_limits"]
    assert list(comfort.status_of(pmv, green=0.2, yellow=0.7)) == ["green", "yellow", "yellow", "red", "red", "red", "outside_limits"]


def _gateway(sn, dwelling, building):
    return GatewaySpec(sn=sn, dwelling=dwelling, building=building, installed="2016-01-01",
                       sensors=[SensorSpec(channel=1, medium="temperature"), SensorSpec(channel=2, medium="humidity")])


def test_daily_shares_per_dwelling_building_and_district(con):
    """Two dwellings in building B, one in C, an outdoor sensor excluded; one hour without
    humidity. Shares and means checked against values worked out here."""
    gateways = [_gateway("G1", "D1", "B"), _gateway("G2", "D2", "B"), _gateway("G3", "D3", "C"), _gateway("G4", "OUT", "B")]
    hours = pd.date_range("2016-03-01 08:00", periods=3, freq="h", tz="UTC")
    temps = {"G1": [22.0, 27.0, 19.0], "G2": [23.5, 23.5, 5.0], "G3": [22.0, 22.0, 22.0], "G4": [3.0, 3.0, 3.0]}
    rows = [(f"{sn}.ch1_temperature", h, t) for sn, values in temps.items() for h, t in zip(hours, values)]
    rows += [(f"{sn}.ch2_humidity", h, 50.0) for sn in temps for h in hours if not (sn == "G3" and h == hours[2])]
    frame = pd.DataFrame(rows, columns=["variable_id", "hour", "mean"])
    con.execute("INSERT INTO agg.hourly SELECT variable_id, hour, mean, mean, mean, NULL, 1, 1.0 FROM frame")
    settings = ComfortConfig(exclude_dwellings=["OUT"], metabolic_rate=1.0, air_speed=0.1)
    channels = comfort.dwelling_channels(gateways, settings)
    inputs, without_humidity = comfort.read_inputs(con, channels, "Europe/Brussels")
    assert (len(inputs), without_humidity) == (8, 1)
    hourly = comfort.evaluate(inputs, settings)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    comfort.replace_hourly(con, hourly, now)
    comfort.replace_hourly(con, hourly, now)  # idempotent
    comfort.rebuild_summary(con, "day", now)
    # March is a winter month: 1.0 clo; met 1.0 keeps vr = 0.1 and clo as given, so PMV is Fanger's
    expected = {(sn, t): iso7730_pmv(t, t, 0.1, 50, 1.0, 1.0)[0] for sn, values in temps.items() for t in values}
    got = con.execute("SELECT dwelling, tdb, pmv, status FROM comfort.hourly ORDER BY dwelling, hour").fetchall()
    assert len(got) == 8
    for dwelling, tdb, pmv, status in got:
        sn = {"D1": "G1", "D2": "G2", "D3": "G3"}[dwelling]
        if tdb < 10:
            assert pmv is None and status == "outside_limits"
        else:
            assert pmv == pytest.approx(expected[(sn, tdb)], abs=0.01)
            assert status == comfort.status_of(np.array([expected[(sn, tdb)]]))[0]
    by_key = {(level, subject): (hours_, green, red, outside, mean_pmv) for level, subject, hours_, green, red, outside, mean_pmv in con.execute(
        "SELECT level, subject, hours, green_share, red_share, outside_limits_share, mean_pmv FROM comfort.daily").fetchall()}
    statuses = {(r[0]): [] for r in got}
    for dwelling, _, pmv, status in got:
        statuses[dwelling].append((status, pmv))
    b_rows = statuses["D1"] + statuses["D2"]
    assert by_key[("building", "B")][0] == 6
    assert by_key[("building", "B")][1] == pytest.approx(sum(s == "green" for s, _ in b_rows) / 6)
    assert by_key[("building", "B")][3] == pytest.approx(1 / 6)
    assert by_key[("building", "B")][4] == pytest.approx(np.mean([p for _, p in b_rows if p is not None]))
    assert by_key[("district", "district")][0] == 8
    assert by_key[("dwelling", "C/D3")][0] == 2
    assert ("dwelling", "B/OUT") not in by_key


def test_occupancy_keeps_only_configured_local_hours():
    local = pd.Series(pd.to_datetime(["2016-03-07 03:00", "2016-03-07 12:00", "2016-03-12 12:00"]))  # Mon, Mon, Sat
    settings = ComfortConfig(occupancy=OccupancyConfig(weekday_hours=[0, 1, 2, 3], weekend_hours=list(range(24))))
    assert list(comfort.occupied(local, settings)) == [True, False, True]
