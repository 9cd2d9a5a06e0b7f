"""Variables registered through the API (``POST /variables``), for the ``api`` source's parser.

A pushed batch lands as REACH lines whose ``Parametro`` is the variable's parameter; the
``api`` source maps each registered parameter to its unit, kind and category, so the raw asset
records them in ``meta.variables`` as the registration said. A parameter has one unit, kind
and category across devices (registration refuses a second, different one).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from bemp_assets.domain.config import SLUG, Kind, ParameterSpec, SourceConfig, Strict

from .store import read_only_rows, state_path


class VariableSpec(Strict):
    """A variable registered through the API; its id is ``device.parameter``, as in the raw layer."""

    device: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=100)
    parameter: str = Field(pattern=SLUG, max_length=100)
    unit: str | None = Field(None, max_length=40)
    kind: Kind = "instantaneous"
    category: str | None = Field(None, max_length=60)
    site: str | None = None

    @property
    def variable_id(self) -> str:
        return f"{self.device}.{self.parameter}"


def validation_errors(exc: ValidationError) -> list[str]:
    """One line per problem naming the key, as the config files' errors do."""
    return [f"key '{'.'.join(str(p) for p in err['loc']) or 'body'}': {err['msg']}"
            + (f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else "")
            for err in exc.errors()]


def parameter_conflict(spec: VariableSpec, registered: list[dict]) -> str | None:
    """Why ``spec`` cannot join the registered variables (its parameter already means another
    unit, kind or category), or None."""
    for other in registered:
        if other["parameter"] == spec.parameter:
            theirs = (other["unit"], other["kind"], other["category"])
            if theirs != (spec.unit, spec.kind, spec.category):
                return (f"key 'parameter': '{spec.parameter}' is registered with unit, kind, category {theirs} "
                        f"(variable {other['variable_id']}); a parameter means the same everywhere")
    return None


def with_registered_parameters(source: SourceConfig, home: Path) -> SourceConfig:
    """``source`` with the registered variables' parameters mapped (only for a source reading
    its own folder, the API's landing area; other sources are returned as they are)."""
    if source.inbox is None:
        return source
    rows = read_only_rows(state_path(home), "SELECT DISTINCT parameter, unit, kind, category FROM variables")
    mapped = {p: ParameterSpec(parameter=p, unit=u, kind=k, category=c) for p, u, k, c in rows}
    return source.model_copy(update={"parameters": {**source.parameters, **mapped}})
