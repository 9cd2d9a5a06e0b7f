"""The ``kpis`` section of data/config/kpis.yaml: carriers, tariffs, sites, KPI definitions, reports.

Validated like every section (config.py registers it); a mistake names file, key and what
was expected. See docs/kpis.md.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLUG = r"^[a-z][a-z0-9_]*$"
MONTHS = set(range(1, 13))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Carrier(_Strict):
    primary_energy_factor: float = Field(ge=0, description="kWh primary per kWh delivered")
    co2_kg_per_kwh: float = Field(ge=0)


class TouCalendar(_Strict):
    """Time-of-use periods by season, local hour (start of the hour) and day type."""

    seasons: dict[str, list[int]]
    hours: dict[str, dict[str, list[int]]] = Field(description="season -> period -> local hours (0-23)")
    default_period: str = Field(description="the period of every hour not listed, and of off days")
    off_weekdays: list[int] = Field(default_factory=list, description="0=Monday .. 6=Sunday: default period all day")
    holidays_country: str | None = Field(None, description="public holidays (python-holidays code) are off days")

    @model_validator(mode="after")
    def _complete(self) -> "TouCalendar":
        months = [m for ms in self.seasons.values() for m in ms]
        if sorted(months) != sorted(MONTHS):
            raise ValueError(f"seasons must cover each month 1..12 exactly once, got {sorted(months)}")
        unknown = set(self.hours) - set(self.seasons)
        if unknown:
            raise ValueError(f"hours name seasons not in seasons: {sorted(unknown)}")
        for season, periods in self.hours.items():
            hours = [h for hs in periods.values() for h in hs]
            if len(hours) != len(set(hours)) or not set(hours) <= set(range(24)):
                raise ValueError(f"hours.{season}: each hour 0..23 at most once, got {sorted(hours)}")
        return self

    def periods(self) -> list[str]:
        names = {p for periods in self.hours.values() for p in periods} | {self.default_period}
        return sorted(names)


class Tariff(_Strict):
    name: str = Field(pattern=SLUG)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    rate: float | None = Field(None, ge=0, description="flat price per kWh")
    calendar: TouCalendar | None = None
    rates: dict[str, dict[str, float]] | None = Field(None, description="season -> period -> price per kWh")

    @model_validator(mode="after")
    def _one_kind(self) -> "Tariff":
        if (self.rate is None) == (self.calendar is None):
            raise ValueError("a tariff has either a flat `rate` or a time-of-use `calendar` with `rates`")
        if self.calendar is not None:
            missing = [f"{s}.{p}" for s in self.calendar.seasons for p in self.calendar.periods()
                       if p not in (self.rates or {}).get(s, {})]
            if missing:
                raise ValueError(f"rates missing for season.period {missing}")
        return self


class SiteKpis(_Strict):
    tariff: str | None = None
    co2_variable: str | None = Field(None, description="a measured CO2 series (t per interval) used instead of the factor")
    production_variable: str | None = Field(None, description="production in tons per day (denominator)")
    carrier: str = "electricity"


class EnergyVariable(_Strict):
    """Which variables are energy: an interval/cumulative energy parameter, or a power one to integrate."""

    parameters: list[str]
    method: Literal["interval", "power"]
    unit_to_kwh: dict[str, float] = Field(default_factory=lambda: {"kWh": 1.0, "kW": 1.0, "Wh": 0.001, "W": 0.001})


class KpiDefinition(_Strict):
    name: str = Field(pattern=SLUG)
    type: Literal["energy", "intensity", "ebus"]
    unit: str
    formula: str
    description: str = ""


class DayByMonth(_Strict):
    variable: str
    years: list[int]


class DieselBus(_Strict):
    litres_per_km: float = Field(gt=0)
    co2_kg_per_litre: float = Field(gt=0)


class KpisConfig(_Strict):
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    rates_to_eur: dict[str, float] = Field(default_factory=lambda: {"EUR": 1.0})
    commissioning: Literal["flag", "exclude"] = "flag"
    carriers: dict[str, Carrier] = Field(default_factory=dict)
    tariffs: list[Tariff] = Field(default_factory=list)
    sites: dict[str, SiteKpis] = Field(default_factory=dict)
    energy_variables: list[EnergyVariable] = Field(default_factory=list)
    variable_categories: dict[str, str] = Field(default_factory=dict, description="variable_id -> KPI category")
    excluded_variables: list[str] = Field(default_factory=list)
    site_total_excludes: list[str] = Field(default_factory=list, description="categories left out of a site's total "
                                                                              "(sub-meters, export, generation)")
    diesel_bus: DieselBus | None = None
    ebus_carrier: str = "electricity"
    definitions: list[KpiDefinition] = Field(default_factory=list)
    day_by_month: list[DayByMonth] = Field(default_factory=list)
    category_summary_periods: list[Literal["day", "month", "year"]] = Field(default_factory=lambda: ["month", "year"])

    @model_validator(mode="after")
    def _references(self) -> "KpisConfig":
        tariffs = {t.name for t in self.tariffs}
        for site, spec in self.sites.items():
            if spec.tariff and spec.tariff not in tariffs:
                raise ValueError(f"sites.{site}.tariff {spec.tariff!r} is not a configured tariff {sorted(tariffs)}")
            if spec.carrier not in self.carriers:
                raise ValueError(f"sites.{site}.carrier {spec.carrier!r} is not a configured carrier {sorted(self.carriers)}")
        missing = sorted({t.currency for t in self.tariffs} - set(self.rates_to_eur))
        if missing:
            raise ValueError(f"rates_to_eur has no rate for the tariff currencies {missing}")
        return self

    def tariff(self, name: str) -> Tariff:
        return next(t for t in self.tariffs if t.name == name)


class KpisSection(_Strict):
    kpis: KpisConfig
