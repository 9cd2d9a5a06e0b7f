"""The ``comfort`` section (data/config/comfort.yaml): the assumptions behind PMV/PPD.

Kept apart from config.py so the comfort model owns its settings; config.py registers it.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClothingConfig(_Strict):
    """Clothing insulation by season: ``winter_clo`` in the winter months, ``summer_clo`` otherwise
    (ASHRAE 55 typical ensembles: about 1.0 clo winter indoor wear, 0.5 clo summer)."""

    winter_clo: float = Field(1.0, gt=0, le=2)
    summer_clo: float = Field(0.5, gt=0, le=2)
    winter_months: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 10, 11, 12])

    @model_validator(mode="after")
    def _months(self) -> "ClothingConfig":
        bad = [m for m in self.winter_months if not 1 <= m <= 12]
        if bad:
            raise ValueError(f"winter_months must be month numbers 1..12, got {bad}")
        return self


class OccupancyConfig(_Strict):
    """Occupied local hours (0..23) on weekdays and at weekends; only these hours count."""

    weekday_hours: list[int] = Field(default_factory=lambda: list(range(24)))
    weekend_hours: list[int] = Field(default_factory=lambda: list(range(24)))

    @model_validator(mode="after")
    def _hours(self) -> "OccupancyConfig":
        bad = [h for h in self.weekday_hours + self.weekend_hours if not 0 <= h <= 23]
        if bad:
            raise ValueError(f"hours must be 0..23, got {bad}")
        return self


class ComfortConfig(_Strict):
    metabolic_rate: float = Field(1.2, gt=0, description="met; 1.2 = sedentary home activity")
    air_speed: float = Field(0.1, ge=0, description="m/s, average air speed (no sensor: still air)")
    clothing: ClothingConfig = ClothingConfig()
    # dwelling -> variable id of a globe/radiant sensor; any other dwelling uses tr = air temperature
    radiant_sensors: dict[str, str] = Field(default_factory=dict)
    green_max_abs_pmv: float = Field(0.5, gt=0)
    yellow_max_abs_pmv: float = Field(1.0, gt=0)
    exclude_dwellings: list[str] = Field(default_factory=list, description="e.g. an outdoor sensor")
    occupancy: OccupancyConfig | None = None

    @model_validator(mode="after")
    def _thresholds(self) -> "ComfortConfig":
        if self.yellow_max_abs_pmv < self.green_max_abs_pmv:
            raise ValueError("yellow_max_abs_pmv must be at least green_max_abs_pmv")
        return self


class ComfortSection(_Strict):
    comfort: ComfortConfig
