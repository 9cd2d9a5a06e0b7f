"""Site configuration: YAML files under the config folder, validated on load.

Every file holds one or more top-level sections (``site``, ``sources``, ...). Each section has a
strict pydantic model: an unknown key, a wrong type or a missing field raises one
:class:`ConfigError` that names the file, the key path and what was expected, instead of a
traceback deep inside an asset run.
"""
from __future__ import annotations

import codecs
import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from .chains import FilterChain, Selector, check_static_conflicts
from .comfort_config import ComfortConfig, ComfortSection
from .planner_config import PlannerConfig, PlannerSection
from .filters import DEFAULT_RESET_FRACTION
from .kpi_config import KpisConfig, KpisSection

Kind = Literal["instantaneous", "cumulative", "interval", "state"]
SLUG = r"^[a-z][a-z0-9_]*$"


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message names file and key."""


def parse_duration(value: Any) -> int:
    """'15min', '1h', '30s', '1d' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15min', '1h' or a number of seconds")
    if isinstance(value, (int, float)) and value > 0:
        return int(value)
    match = re.fullmatch(r"\s*(\d+)\s*(s|sec|min|m|h|d)\s*", str(value))
    if not match:
        raise ValueError(f"expected a duration such as '15min', '1h', '30s' or '1d', got {value!r}")
    factor = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    seconds = int(match.group(1)) * factor
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return seconds


def _check_timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"expected an IANA time zone such as 'Europe/Rome', got {value!r}") from exc
    return str(value)


def _check_encoding(value: Any) -> str:
    """A text codec Python knows (``utf-8``, ``latin-1``, ``cp1252``, ``utf-16``, ...), by its canonical name."""
    try:
        codec = codecs.lookup(str(value))
    except LookupError:
        codec = None
    if codec is None or not getattr(codec, "_is_text_encoding", True):
        raise ValueError(f"expected a text encoding such as 'utf-8', 'latin-1', 'cp1252' or 'utf-16', got {value!r}")
    return codec.name


def _check_magnitude(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive finite number such as 1e12, got {value!r}")
    return float(value)


Duration = Annotated[int, BeforeValidator(parse_duration)]
TimeZone = Annotated[str, BeforeValidator(_check_timezone)]
Encoding = Annotated[str, BeforeValidator(_check_encoding)]
Magnitude = Annotated[float, BeforeValidator(_check_magnitude)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteConfig(Strict):
    name: str
    timezone: TimeZone = "Europe/Rome"
    start_date: date = Field(description="first daily partition (site time zone)")


class ParameterSpec(Strict):
    """How a REACH parameter name (Italian) maps onto a variable."""

    parameter: str = Field(pattern=SLUG)
    unit: str | None = None
    kind: Kind = "instantaneous"
    category: str | None = None


class TimestampSpec(Strict):
    column: str
    format: str
    label: Literal["start", "end"] = "start"
    midnight_is_end_of_day: bool = Field(
        False, description="'0:00' written with the date of the day it closes (steel-plant export)"
    )


class WideColumn(Strict):
    column: str
    parameter: str = Field(pattern=SLUG)
    unit: str | None = None
    kind: Kind = "instantaneous"
    category: str | None = None
    codes: dict[str, float] | None = Field(
        None, description="a text column stored as numbers: label -> code (any other label is rejected)")
    planned: bool = Field(False, description="the column is a plan published ahead of its day (a production "
                                             "schedule), so models may read it as a planned exogenous input")


DEFAULT_REACH_PARAMETERS = {
    "Potenza attiva": ParameterSpec(parameter="active_power", unit="kW", kind="instantaneous", category="electricity"),
    "Energia attiva": ParameterSpec(parameter="active_energy", unit="kWh", kind="cumulative", category="electricity"),
    "Corrente": ParameterSpec(parameter="current", unit="A", kind="instantaneous", category="electricity"),
    "Tensione": ParameterSpec(parameter="voltage", unit="V", kind="instantaneous", category="electricity"),
}


class SourceConfig(Strict):
    name: str = Field(pattern=SLUG)
    format: Literal["reach", "wide"]
    pattern: str = Field(description="glob matched against file names in the inbox")
    site: str | None = None
    device: str | None = None
    timezone: TimeZone | None = None
    expected_interval: Duration = 60
    category: str | None = None
    decimal: Literal[".", ","] | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=lambda: dict(DEFAULT_REACH_PARAMETERS))
    timestamp: TimestampSpec | None = None
    columns: list[WideColumn] = Field(default_factory=list)
    ignore_columns: list[str] = Field(default_factory=list)
    encoding: Encoding = Field("utf-8", description="text encoding of the files; utf-8 also accepts a byte-order mark")
    max_abs_value: Magnitude = Field(1e12, description="a reading with a larger magnitude is rejected, not stored")
    inbox: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$",
                              description="folder under $BEMP_HOME holding this source's files instead of the inbox "
                                          "(the API's landing area: api/landing)")

    @model_validator(mode="after")
    def _shape_fields(self) -> "SourceConfig":
        if self.format == "wide":
            missing = [f for f in ("timestamp", "device") if getattr(self, f) is None]
            if not self.columns:
                missing.append("columns")
            if missing:
                raise ValueError(f"a wide source needs {', '.join(missing)}")
        elif self.columns or self.timestamp:
            raise ValueError("'columns' and 'timestamp' belong to wide sources; REACH files have a fixed header")
        return self

    @property
    def decimal_separator(self) -> str:
        return self.decimal or ("," if self.format == "reach" else ".")


class SiteSection(Strict):
    site: SiteConfig


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (a section's names must be unique)."""
    return sorted({n for n in names if names.count(n) > 1})


class SourcesSection(Strict):
    sources: list[SourceConfig]

    @model_validator(mode="after")
    def _unique(self) -> "SourcesSection":
        dupes = repeated([s.name for s in self.sources])
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return self


class FilterChainsSection(Strict):
    filter_chains: list[FilterChain]

    @model_validator(mode="after")
    def _no_conflicts(self) -> "FilterChainsSection":
        names = [c.name for c in self.filter_chains]
        if len(set(names)) != len(names):
            raise ValueError(f"chain names must be unique, got {names}")
        check_static_conflicts(self.filter_chains)
        return self


class RuleSettings(Strict):
    """Commissioning thresholds; every field optional so overrides can set just one."""

    min: float | None = Field(None, description="physical range: lowest plausible value")
    max: float | None = Field(None, description="physical range: highest plausible value")
    completeness_min: float | None = Field(None, ge=0, le=1, description="share of expected samples per day")
    frequency_tolerance: float | None = Field(None, gt=0, description="allowed relative deviation of the median interval")
    freshness: Duration | None = Field(None, description="newest sample no older than this")


class CommissioningConfig(Strict):
    """Rules per variable: variables[id] > sources[name] > parameters[parameter] > defaults."""

    defaults: RuleSettings = RuleSettings(completeness_min=0.9, frequency_tolerance=0.5, freshness=2 * 86400)
    parameters: dict[str, RuleSettings] = Field(default_factory=dict)
    sources: dict[str, RuleSettings] = Field(default_factory=dict)
    variables: dict[str, RuleSettings] = Field(default_factory=dict)
    reset_fraction: float = Field(DEFAULT_RESET_FRACTION, ge=0, lt=1,
                                  description="a counter drop to below this share of the previous reading is a reset")
    expected_variables: list[str] = Field(default_factory=list, description="sensors that must report (black when never seen)")
    as_of: datetime | None = Field(None, description="evaluate freshness and status at this instant instead of now")

    @model_validator(mode="after")
    def _complete_defaults(self) -> "CommissioningConfig":
        missing = [k for k in ("completeness_min", "frequency_tolerance", "freshness") if getattr(self.defaults, k) is None]
        if missing:
            raise ValueError(f"defaults must set {missing}")
        return self

    def rules_for(self, variable_id: str, source: str, parameter: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for layer in (self.defaults, self.parameters.get(parameter), self.sources.get(source), self.variables.get(variable_id)):
            if layer is not None:
                merged.update({k: v for k, v in layer.model_dump().items() if v is not None})
        return merged


MEDIA = {"temperature": ("temperature", "°C"), "humidity": ("humidity", "%"),
         "co2": ("co2_concentration", "ppm"), "power": ("power", "W")}


class SensorSpec(Strict):
    channel: int = Field(ge=0)
    medium: Literal["temperature", "humidity", "co2", "power"]
    device: str | None = None

    def variable_id(self, sn: str) -> str:
        return gateway_variable_id(sn, self.channel, self.medium)


def gateway_variable_id(sn: str, channel: int, medium: str) -> str:
    """``GW-BE-0001.ch1_temperature``: one variable per gateway channel."""
    return f"{sn}.ch{channel}_{medium}"


class GatewaySpec(Strict):
    """One row of the installation registry: a gateway in a dwelling."""

    sn: str
    dwelling: str
    building: str
    address: str | None = None
    installed: date
    sensors: list[SensorSpec] = Field(min_length=1)


class LiveSourceSettings(Strict):
    site: str | None = None
    timezone: TimeZone = "UTC"
    expected_interval: Duration = 600


class LiveSourcesConfig(Strict):
    """HTTP sources: polling and re-polling, and the gateway platform's sampling."""

    poll_seconds: int = Field(60, ge=10, le=3600)
    repoll_days: int = Field(3, ge=1, le=60)
    # a catch-up after a long silence is split into runs of at most this many days
    max_days_per_run: int = Field(31, ge=1, le=366)
    gateway: LiveSourceSettings = LiveSourceSettings()
    ipanel: LiveSourceSettings = LiveSourceSettings()


class LiveSection(Strict):
    live_sources: LiveSourcesConfig


class GatewaysSection(Strict):
    gateways: list[GatewaySpec]

    @model_validator(mode="after")
    def _unique(self) -> "GatewaysSection":
        dupes = repeated([g.sn for g in self.gateways])
        if dupes:
            raise ValueError(f"gateway serial numbers must be unique, repeated: {dupes}")
        return self


class CommissioningSection(Strict):
    commissioning: CommissioningConfig


# --- alarms (docs/alarms.md): rule types, notification channel -----------------------------


def _duration_or_zero(value: Any) -> int:
    """Like :func:`parse_duration`, but 0 (no delay) is allowed."""
    return 0 if value in (0, "0", "0s", "0min") else parse_duration(value)


DelayDuration = Annotated[int, BeforeValidator(_duration_or_zero)]


class AlarmRuleBase(Strict):
    name: str = Field(pattern=SLUG)
    description: str | None = None
    severity: Literal["info", "warning", "error", "critical"]
    select: list[Selector] = Field(min_length=1, description="the filter-chain selector syntax (docs/filters.md)")

    @model_validator(mode="before")
    @classmethod
    def _one_selector_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("select"), dict):
            return {**data, "select": [data["select"]]}
        return data


class ConstantRule(AlarmRuleBase):
    """A stuck sensor: unchanged within ``tolerance`` for at least ``duration``."""
    type: Literal["constant"]
    duration: Duration
    tolerance: float = Field(0.0, ge=0)
    ignore_value: float | None = Field(None, description="a stretch at this value is legitimate (a counter at zero)")


class NoDataRule(AlarmRuleBase):
    """No sample for at least ``threshold``; with ``per_gateway`` also each registered gateway."""
    type: Literal["no_data"]
    threshold: Duration = 14 * 86400
    per_gateway: bool = False


class ThresholdRule(AlarmRuleBase):
    """Upper and/or lower limit with hysteresis and on/off delays."""
    type: Literal["threshold"]
    upper: float | None = None
    lower: float | None = None
    hysteresis: float = Field(0.0, ge=0)
    on_delay: DelayDuration = 0
    off_delay: DelayDuration = 0

    @model_validator(mode="after")
    def _a_limit(self) -> "ThresholdRule":
        if self.upper is None and self.lower is None:
            raise ValueError("a threshold rule needs 'upper', 'lower' or both")
        if self.upper is not None and self.lower is not None and self.lower + self.hysteresis >= self.upper - self.hysteresis:
            raise ValueError("'lower' + hysteresis must stay below 'upper' - hysteresis")
        return self


class TunnelRule(AlarmRuleBase):
    """Actual hourly mean against the champion model's forecast (contract: docs/alarms.md):
    outside when |actual - forecast| > max(margin, k x backtest MAE), for ``hours`` in a row."""
    type: Literal["tunnel"]
    margin: float = Field(0.0, ge=0, description="absolute half-width of the tunnel")
    k: float = Field(3.0, gt=0, description="half-width in multiples of the model's backtest MAE")
    hours: int = Field(3, ge=1, le=24 * 7, description="consecutive hours outside before it raises")


AlarmRule = Annotated[ConstantRule | NoDataRule | ThresholdRule | TunnelRule, Field(discriminator="type")]


class WebhookSettings(Strict):
    """The URL (which may hold a secret) is read from an environment variable, never from YAML."""
    url_env: str = Field("BEMP_ALARM_WEBHOOK_URL", pattern=r"^[A-Z][A-Z0-9_]*$")
    token_env: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]*$", description="bearer token variable")
    timeout_s: float = Field(5.0, gt=0, le=60)
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0, le=30)


class AppriseSettings(Strict):
    """Other channels (mail, chat, ...) as apprise URLs, space-separated in an environment variable."""
    urls_env: str = Field("BEMP_ALARM_APPRISE_URLS", pattern=r"^[A-Z][A-Z0-9_]*$")
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_s: float = Field(0.5, ge=0, le=30)


class AlarmsConfig(Strict):
    rules: list[AlarmRule] = Field(default_factory=list)
    webhook: WebhookSettings | None = None
    apprise: AppriseSettings | None = None
    notify_max_age: Duration = Field(86400, description="events older than this when detected are not sent")
    evaluate_every_minutes: int = Field(5, ge=1, le=60, description="the alarm schedule's interval")

    @model_validator(mode="after")
    def _unique(self) -> "AlarmsConfig":
        dupes = repeated([r.name for r in self.rules])
        if dupes:
            raise ValueError(f"alarm rule names must be unique, repeated: {dupes}")
        return self


class AlarmsSection(Strict):
    alarms: AlarmsConfig


# --- models and forecasts (docs/models.md) -------------------------------------------------
Learner = Literal["tpot", "hist_gradient_boosting", "persistence", "same_hour_last_week"]
BASELINES = ("persistence", "same_hour_last_week")
CalendarFeature = Literal["hour", "weekday", "day_of_year", "month", "weekend", "holiday", "tou_period"]


def _check_country(value: Any) -> str | None:
    """A country code the ``holidays`` package knows (``KR``, ``IT``, ``DE``, ...)."""
    if value is None:
        return None
    import holidays

    if str(value) not in holidays.list_supported_countries():
        raise ValueError(f"expected a country code of the holidays package such as 'KR' or 'IT', got {value!r}")
    return str(value)


def _check_clock(value: Any) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", str(value)):
        raise ValueError(f"expected a local time of day as HH:MM such as '00:00' or '10:00', got {value!r}")
    return str(value)


Country = Annotated[str | None, BeforeValidator(_check_country)]
Clock = Annotated[str, BeforeValidator(_check_clock)]


class IssueTime(Strict):
    """When a day's forecast is issued: local ``time`` on the target day (``day: 0``) or
    ``-day`` days before it (``day: -1``, ``time: '10:00'``: a market gate closure)."""

    day: int = Field(0, ge=-7, le=0)
    time: Clock = "00:00"

    @property
    def minutes(self) -> int:
        """Minutes from 00:00 of the target day (negative: before it), wall clock."""
        hours, minutes = (int(x) for x in self.time.split(":"))
        return self.day * 1440 + hours * 60 + minutes


class ExogenousSpec(Strict):
    """Another variable as input: its value at the same local hour ``lags_days`` days earlier
    and its local-day totals ``daily_lags`` days earlier. A ``measured`` variable is known at
    the end of each day, so its lags must lie behind the issue; a ``planned`` one (a schedule
    its source declares planned) is known from ``published`` relative to the day it plans,
    so lag 0, the target day's own plan, is allowed when that is no later than the issue."""

    variable: str
    kind: Literal["measured", "planned"] = "measured"
    published: IssueTime = Field(default_factory=lambda: IssueTime(),
                                 description="planned only: latest instant the plan of day D is known, relative to D "
                                             "(default 00:00 of D, i.e. published during the day before)")
    lags_days: list[int] = Field(default_factory=lambda: [1])
    daily_lags: list[int] = Field(default_factory=list)


class FeatureSpec(Strict):
    calendar: list[CalendarFeature] = Field(default_factory=list)
    target_lags_days: list[int] = Field(default_factory=list, description="target at the same local hour k days earlier")
    target_daily_lags: list[int] = Field(default_factory=list, description="target's local-day total k days earlier")
    exogenous: list[ExogenousSpec] = Field(default_factory=list)
    holidays_country: Country = Field(None, description="public holidays of this country (holidays package)")
    off_holidays: list[str] | None = Field(
        None, description="names (case-insensitive substrings) of the holidays, public or not, on which the plant "
                          "stops: tou_period is light on Sundays and on these; default every public holiday")
    running_day_plan: str | None = Field(
        None, description="a planned exogenous variable: adds the target at the same hour of the last day before "
                          "the issue on which that plan is not all zero (the plant ran) and that day's total")


class TpotBudget(Strict):
    minutes: float = Field(5.0, gt=0, description="search time budget per fit")
    generations: int | None = Field(None, ge=1, description="stop earlier after this many generations")
    population_size: int = Field(20, ge=2)
    cv: int = Field(3, ge=2)
    search_space: str = "linear-light"


class ModelSpec(Strict):
    name: str = Field(pattern=SLUG)
    description: str = ""
    category: str = "load_forecast"
    target: str = Field(description="variable id of the forecast series")
    timezone: TimeZone | None = Field(None, description="local time of days, hours and issue (default: site)")
    features: FeatureSpec = FeatureSpec()
    learner: Learner
    horizon: Literal["day_ahead"] = "day_ahead"
    issue_time: IssueTime = IssueTime()
    tpot: TpotBudget = TpotBudget()
    seed: int = 42

    @model_validator(mode="after")
    def _no_look_ahead(self) -> "ModelSpec":
        """A lag of k days is whole by the issue time only when k >= 1 - issue_time.day: a
        shorter one would read values not yet measured at issue, a leak, so it is refused."""
        first = 1 - self.issue_time.day
        lags = {"features.target_lags_days": self.features.target_lags_days,
                "features.target_daily_lags": self.features.target_daily_lags}
        for i, exo in enumerate(self.features.exogenous):
            if exo.kind == "planned":
                self._check_plan(i, exo)
                continue
            lags[f"features.exogenous[{i}].lags_days"] = exo.lags_days
            lags[f"features.exogenous[{i}].daily_lags"] = exo.daily_lags
        for key, values in lags.items():
            if any(k < first for k in values):
                raise ValueError(f"{key} {values}: a lag shorter than {first} day(s) looks past the issue time "
                                 f"(day {self.issue_time.day}, {self.issue_time.time}); use lags >= {first}")
        planned = {e.variable for e in self.features.exogenous if e.kind == "planned"}
        if self.features.running_day_plan and self.features.running_day_plan not in planned:
            raise ValueError(f"features.running_day_plan {self.features.running_day_plan!r} must be one of the "
                             f"model's planned exogenous variables {sorted(planned)}")
        if "holiday" in self.features.calendar and not self.features.holidays_country:
            raise ValueError("calendar feature 'holiday' needs features.holidays_country")
        if self.learner in BASELINES and (self.features.calendar or self.features.exogenous):
            raise ValueError(f"learner {self.learner!r} is a baseline: it takes no features")
        return self

    def _check_plan(self, i: int, exo: ExogenousSpec) -> None:
        """The plan of day D-k is known at ``published`` of D-k; it may feed the forecast of D
        only when that is no later than D's issue (wall clock)."""
        for key, values in (("lags_days", exo.lags_days), ("daily_lags", exo.daily_lags)):
            late = [k for k in values if k < 0 or exo.published.minutes - 1440 * k > self.issue_time.minutes]
            if late:
                raise ValueError(f"features.exogenous[{i}].{key} {values}: the plan {exo.variable!r} of {late} day(s) "
                                 f"earlier is published (day {exo.published.day}, {exo.published.time}) after the "
                                 f"issue time (day {self.issue_time.day}, {self.issue_time.time})")


class ForecastingConfig(Strict):
    promotion_margin: float = Field(0.05, ge=0, lt=1, description="a challenger's backtest MAE must be this much lower")
    drift_factor: float = Field(1.5, gt=1, description="retrain when live rMAE > factor x backtest rMAE")
    live_window_days: int = Field(14, ge=1)
    backtest_start: date | None = None
    backtest_end: date | None = None
    min_training_days: int = Field(28, ge=1)
    models: list[ModelSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "ForecastingConfig":
        names = [m.name for m in self.models]
        clash = sorted(set(repeated(names)) | (set(names) & set(BASELINES)))
        if clash:
            raise ValueError(f"model names must be unique and not a baseline's name {list(BASELINES)}: {clash}")
        if self.backtest_start and self.backtest_end and self.backtest_start > self.backtest_end:
            raise ValueError("backtest_start is after backtest_end")
        return self

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(f"no model named {name!r}; configured: {[m.name for m in self.models]}")


class ForecastingSection(Strict):
    forecasting: ForecastingConfig


class BempConfig(Strict):
    site: SiteConfig
    sources: list[SourceConfig]
    filter_chains: list[FilterChain] = Field(default_factory=list)
    commissioning: CommissioningConfig = Field(default_factory=CommissioningConfig)
    live_sources: LiveSourcesConfig = Field(default_factory=LiveSourcesConfig)
    gateways: list[GatewaySpec] = Field(default_factory=list)
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)
    forecasting: ForecastingConfig = Field(default_factory=ForecastingConfig)
    comfort: ComfortConfig = Field(default_factory=ComfortConfig)
    planner: PlannerConfig = Field(default_factory=PlannerConfig)
    kpis: KpisConfig = Field(default_factory=KpisConfig)

    def expected_variables(self) -> list[str]:
        """Sensors that must report: listed in commissioning, or registered on a gateway."""
        registered = [s.variable_id(g.sn) for g in self.gateways for s in g.sensors]
        return sorted(set(self.commissioning.expected_variables) | set(registered))
    files: dict[str, str] = Field(default_factory=dict, description="section -> file it came from")

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(f"no source named {name!r}; configured: {[s.name for s in self.sources]}")

    def timezone_of(self, source: SourceConfig) -> str:
        return source.timezone or self.site.timezone


# section name -> (model validating {section: value}, whether the section is required).
# Later capabilities (filters, models, alarms, KPIs) register their sections here.
SECTIONS: dict[str, tuple[type[BaseModel], bool]] = {
    "site": (SiteSection, True),
    "sources": (SourcesSection, True),
    "filter_chains": (FilterChainsSection, False),
    "commissioning": (CommissioningSection, False),
    "live_sources": (LiveSection, False),
    "gateways": (GatewaysSection, False),
    "alarms": (AlarmsSection, False),
    "forecasting": (ForecastingSection, False),
    "comfort": (ComfortSection, False),
    "planner": (PlannerSection, False),
    "kpis": (KpisSection, False),
}


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ""
        for part in loc:
            key += f"[{part}]" if part.isdigit() else (f".{part}" if key else part)
        got = f" (got {err['input']!r})" if err["type"] not in ("missing",) and not isinstance(err["input"], dict) else ""
        lines.append(f"{path}: key '{key}': {err['msg']}{got}")
    return "\n".join(lines)


def _yaml_where(exc: yaml.YAMLError) -> str:
    """' at line L, column C: problem' from a YAML error, on one line."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f" at line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else f": {problem}"


def load_config(config_dir: Path | str) -> BempConfig:
    """Read and validate every ``*.yaml`` in ``config_dir``."""
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: config folder not found (set BEMP_CONFIG or BEMP_HOME)")
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML{_yaml_where(exc)}") from None
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: expected a mapping of sections {sorted(SECTIONS)} at the top level")
        for section, value in content.items():
            if section not in SECTIONS:
                raise ConfigError(f"{path}: key '{section}': unknown section; expected one of {sorted(SECTIONS)}")
            if section in origin:
                raise ConfigError(f"{path}: key '{section}': already defined in {origin[section]}")
            model, _ = SECTIONS[section]
            try:
                parsed = model.model_validate({section: value})
            except ValidationError as exc:
                raise ConfigError(_format_error(path, exc)) from None
            values[section] = getattr(parsed, section)
            origin[section] = str(path)
    for section, (_, required) in SECTIONS.items():
        if required and section not in values:
            raise ConfigError(f"{config_dir}: key '{section}': required section not found in any *.yaml file")
    config = BempConfig(**values, files=origin)
    _check_planned_inputs(config)
    return config


def _check_planned_inputs(config: BempConfig) -> None:
    """A model may read a variable as planned (its target day's value at issue) only when a
    source declares that column ``planned``: a measured value would leak."""
    declared = {f"{s.device}.{c.parameter}" for s in config.sources for c in s.columns if c.planned}
    for i, spec in enumerate(config.forecasting.models):
        for j, exo in enumerate(spec.features.exogenous):
            if exo.kind == "planned" and exo.variable not in declared:
                raise ConfigError(
                    f"{config.files.get('forecasting', 'forecasting')}: key 'forecasting.models[{i}].features."
                    f"exogenous[{j}]': {exo.variable!r} is not declared planned by any source column "
                    f"(sources: columns[].planned: true); declared planned: {sorted(declared)}")
