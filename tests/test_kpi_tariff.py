"""The time-of-use calendar of kpis.yaml: the same periods as the forecasting feature, and how
often it agrees with the steel export's own Load_Type column (read here with the csv module)."""
from __future__ import annotations

import csv
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from bemp_assets.domain.config import ConfigError, load_config
from bemp_assets.domain.forecasting import tou_period
from bemp_assets.domain.kpi_tariff import periods, prices

from .conftest import CONFIG_DIR, SAMPLE

CODES = {"light": 0, "medium": 1, "maximum": 2}
LOAD_TYPE = {"Light_Load": 0, "Medium_Load": 1, "Maximum_Load": 2}


@pytest.fixture(scope="module")
def kepco():
    return load_config(CONFIG_DIR).kpis.tariff("kepco_industrial_b_hv_a_2")


def test_calendar_equals_the_forecasting_feature_every_hour_of_2018(kepco):
    local = pd.date_range("2018-01-01", "2019-01-01", freq="h", inclusive="left", tz="Asia/Seoul")
    ours = np.array([CODES[p] for p in periods(local, kepco.calendar)])
    import holidays

    off = (local.weekday == 6) | pd.Index(local.date).isin(list(holidays.country_holidays("KR", years=[2018])))
    assert (ours == tou_period(np.asarray(local.hour), np.asarray(local.month), np.asarray(off))).all()


def test_agreement_with_the_exports_load_type(kepco):
    """Documented in docs/kpis.md: 93.1 % of the 35,040 intervals."""
    starts, expected = [], []
    with open(SAMPLE / "Steel_industry_data.csv", encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            end = datetime.strptime(row["date"], "%d/%m/%Y %H:%M")
            end += timedelta(days=1) if (end.hour, end.minute) == (0, 0) else timedelta(0)
            starts.append(end - timedelta(minutes=15))
            expected.append(LOAD_TYPE[row["Load_Type"]])
    ours = [CODES[p] for p in periods(pd.DatetimeIndex(starts).tz_localize("Asia/Seoul"), kepco.calendar)]
    agree = sum(a == b for a, b in zip(ours, expected)) / len(expected)
    assert len(expected) == 35040 and round(agree, 3) == 0.931


def test_prices_by_season_and_period(kepco):
    local = pd.DatetimeIndex(["2018-07-04 10:00", "2018-07-04 03:00", "2018-07-08 10:00", "2018-04-04 18:00",
                              "2018-12-05 22:00", "2018-05-07 10:00"]).tz_localize("Asia/Seoul")
    price, period = prices(local, kepco)
    # Wednesday summer peak, summer night, Sunday, spring evening, winter 22h peak, Children's Day (substitute)
    assert list(period) == ["maximum", "light", "light", "medium", "maximum", "light"]
    assert list(price) == [191.1, 56.1, 56.1, 78.6, 166.7, 56.1]


def test_a_tariff_with_a_missing_rate_names_the_key(tmp_path):
    for path in CONFIG_DIR.glob("*.yaml"):
        text = path.read_text()
        if path.name == "kpis.yaml":
            text = text.replace("winter:        {light: 63.1, medium: 109.2, maximum: 166.7}", "winter: {light: 63.1}")
        (tmp_path / path.name).write_text(text)
    with pytest.raises(ConfigError, match=r"kpis.yaml: key 'kpis.tariffs\[0\]'.*rates missing for season.period "
                                          r"\['winter.maximum', 'winter.medium'\]"):
        load_config(tmp_path)
