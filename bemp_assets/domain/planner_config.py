"""The ``planner`` section (data/config/planner.yaml): the thermal demand planner's settings.

Kept apart from config.py so the planner owns its settings; config.py registers it.
"""
from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasuredDemand(_Strict):
    """Daily heating energy per building and the daily mean outdoor temperature, as CSV files
    (relative paths: under the sample folder, BEMP_SAMPLE)."""

    daily_energy_csv: str = "heating/cambridge_daily_gas.csv"
    daily_temperature_csv: str = "heating/bedford_daily_temperature.csv"


class ForecastSource(_Strict):
    """The outdoor-temperature forecast: a CSV (``date,temp_mean_c``) at a path or an HTTP URL."""

    csv: str | None = "heating/forecast_temperature.csv"
    url: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "ForecastSource":
        if (self.csv is None) == (self.url is None):
            raise ValueError("give exactly one of csv or url")
        return self


class PlannerConfig(_Strict):
    base_temperature: float = Field(15.5, ge=0, le=30, description="°C, heating degree-day base")
    # [min, max] °C: search the base per building by least squares, every 0.5 °C (as CalTRACK
    # searches its balance point); unset: the fixed base_temperature
    base_temperature_search: list[float] | None = Field(None, min_length=2, max_length=2)
    horizon_days: int = Field(7, ge=1, le=7)
    k_min: int = Field(3, ge=2)
    k_max: int = Field(7, le=12)
    features: Literal["auto", "registry", "measured"] = "auto"
    train_start: date | None = None
    train_end: date | None = None
    own_model_min_days: int = Field(60, ge=10, description="members with this many measured days get their own fit")
    min_days: int = Field(30, ge=10, description="fewer measured days: no model, no measured features")
    seed: int = 0
    measured: MeasuredDemand = MeasuredDemand()
    forecast: ForecastSource = ForecastSource()

    @model_validator(mode="after")
    def _ranges(self) -> "PlannerConfig":
        if self.k_min > self.k_max:
            raise ValueError("k_min is above k_max")
        search = self.base_temperature_search
        if search and not 0 <= search[0] < search[1] <= 30:
            raise ValueError("base_temperature_search must be [min, max] with 0 <= min < max <= 30")
        if self.train_start and self.train_end and self.train_start > self.train_end:
            raise ValueError("train_start is after train_end")
        return self


class PlannerSection(_Strict):
    planner: PlannerConfig
