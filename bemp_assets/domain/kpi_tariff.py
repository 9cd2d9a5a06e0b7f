"""Time-of-use periods and prices of a tariff, from its calendar in kpis.yaml (vectorised).

A period depends on the local hour, the season (by month) and the day type: off weekdays and
public holidays take the default period all day. The KEPCO calendar in kpis.yaml gives the
same periods as ``forecasting.tou_period`` (tests/test_kpi_tariff.py holds them equal).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .kpi_config import Tariff, TouCalendar


def off_days(local: pd.DatetimeIndex, calendar: TouCalendar) -> np.ndarray:
    """True where the local day is an off weekday or a public holiday."""
    off = np.isin(local.weekday, calendar.off_weekdays)
    if calendar.holidays_country:
        import holidays

        known = holidays.country_holidays(calendar.holidays_country, years=sorted(set(local.year)))
        off |= pd.Index(local.date).isin(list(known.keys()))
    return np.asarray(off)


def seasons(month: np.ndarray, calendar: TouCalendar) -> np.ndarray:
    season = np.empty(len(month), dtype=object)
    for name, months in calendar.seasons.items():
        season[np.isin(month, months)] = name
    return season


def periods(local: pd.DatetimeIndex, calendar: TouCalendar) -> np.ndarray:
    """The period name of each local instant (the hour it starts in)."""
    hour, season = np.asarray(local.hour), seasons(np.asarray(local.month), calendar)
    period = np.full(len(local), calendar.default_period, dtype=object)
    for name, by_period in calendar.hours.items():
        for period_name, hours in by_period.items():
            period[(season == name) & np.isin(hour, hours)] = period_name
    period[off_days(local, calendar)] = calendar.default_period
    return period


def prices(local: pd.DatetimeIndex, tariff: Tariff) -> tuple[np.ndarray, np.ndarray]:
    """(price per kWh in the tariff's currency, period name) of each local instant."""
    if tariff.calendar is None:
        return np.full(len(local), float(tariff.rate)), np.full(len(local), "flat", dtype=object)
    period = periods(local, tariff.calendar)
    season = seasons(np.asarray(local.month), tariff.calendar)
    lookup = pd.Series({(s, p): r for s, rates in tariff.rates.items() for p, r in rates.items()})
    price = lookup.reindex(pd.MultiIndex.from_arrays([season, period])).to_numpy(dtype=float)
    return price, period
