"""Filter chains from config, and which chain each variable gets.

A chain's ``select`` lists one or more selectors; each selector uses exactly one of
``variable_id``, ``pattern`` (glob on variable_id), ``device``, ``parameter``, ``category`` or
``kind``, in that order of specificity. A variable gets the chain with the most specific
matching selector; two chains matching equally specifically is an error naming both. A
variable no chain selects passes through unchanged, except cumulative counters, which get
:data:`DEFAULT_COUNTER_CHAIN` so that clean always holds energy per interval, never counter
readings.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .filters import FILTERS, DeaccumulateParams, Params

SELECTOR_RANK = {"variable_id": 6, "pattern": 5, "device": 4, "parameter": 3, "category": 2, "kind": 1}
LIBRARY_VERSION = "2"  # bump when a filter's behaviour changes, so every clean partition shows stale


class ChainError(ValueError):
    """Two chains claim a variable equally specifically."""


class Selector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    variable_id: str | None = None
    pattern: str | None = None
    device: str | None = None
    parameter: str | None = None
    category: str | None = None
    kind: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Selector":
        given = [k for k in SELECTOR_RANK if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a selector uses exactly one of {list(SELECTOR_RANK)}, got {given or 'none'}")
        return self

    @property
    def field(self) -> str:
        return next(k for k in SELECTOR_RANK if getattr(self, k) is not None)

    @property
    def rank(self) -> int:
        return SELECTOR_RANK[self.field]

    def matches(self, variable: dict[str, Any]) -> bool:
        wanted = getattr(self, self.field)
        if self.field == "pattern":
            return fnmatch.fnmatchcase(str(variable["variable_id"]), wanted)
        return str(variable.get(self.field)) == wanted


class FilterChain(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str | None = None
    select: list[Selector] = Field(min_length=1)
    steps: list[tuple[str, Params]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _parse_steps(cls, data: Any) -> Any:
        """``steps: [{clip: {min: 0}}, {deaccumulate: {}}, ...]`` -> [(name, Params)]."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            return data
        if isinstance(data.get("select"), dict):
            data = {**data, "select": [data["select"]]}
        steps = []
        for index, step in enumerate(data["steps"]):
            if isinstance(step, tuple):
                steps.append(step)
                continue
            if isinstance(step, str):
                step = {step: {}}
            if not isinstance(step, dict) or len(step) != 1:
                raise ValueError(f"steps[{index}]: expected one filter as {{name: {{parameters}}}}, got {step!r}")
            (name, params), = step.items()
            if name not in FILTERS:
                raise ValueError(f"steps[{index}]: unknown filter {name!r}; expected one of {sorted(FILTERS)}")
            try:
                steps.append((name, FILTERS[name][1].model_validate(params or {})))
            except Exception as exc:  # pydantic ValidationError: re-raise naming the step
                detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"steps[{index}].{name}: {detail}") from None
        return {**data, "steps": steps}

    @property
    def version(self) -> str:
        """Hash of what the chain does (not its description): changes mark clean stale."""
        body = {"select": [s.model_dump(exclude_none=True) for s in self.select],
                "steps": [[name, params.model_dump()] for name, params in self.steps], "library": LIBRARY_VERSION}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def rank_for(self, variable: dict[str, Any]) -> int:
        return max((s.rank for s in self.select if s.matches(variable)), default=0)


DEFAULT_COUNTER_CHAIN = FilterChain(
    name="default_counter", description="implicit for cumulative counters no chain selects",
    select=[Selector(kind="cumulative")], steps=[("deaccumulate", DeaccumulateParams())])


def check_static_conflicts(chains: list[FilterChain]) -> None:
    """Two chains with an identical selector can never be told apart: fail at load."""
    owner: dict[tuple[str, str], str] = {}
    for chain in chains:
        for selector in chain.select:
            key = (selector.field, getattr(selector, selector.field))
            if key in owner and owner[key] != chain.name:
                raise ChainError(f"chains '{owner[key]}' and '{chain.name}' both select {key[0]}={key[1]!r}")
            owner[key] = chain.name


def assign_chains(variables: pd.DataFrame, chains: list[FilterChain]) -> dict[str, FilterChain | None]:
    """variable_id -> its chain (None: pass through). Raises ChainError on a tie."""
    assignment: dict[str, FilterChain | None] = {}
    for variable in variables.to_dict("records"):
        ranked = sorted(((c.rank_for(variable), c) for c in chains), key=lambda rc: -rc[0])
        best = [c for rank, c in ranked if rank and rank == ranked[0][0]]
        if len(best) > 1:
            raise ChainError(f"variable {variable['variable_id']!r} is selected equally specifically by chains "
                             f"{[c.name for c in best]}: make one selector more specific")
        chain = best[0] if best else None
        if chain is None and variable.get("kind") == "cumulative":
            chain = DEFAULT_COUNTER_CHAIN
        assignment[variable["variable_id"]] = chain
    return assignment


def chains_version(chains: list[FilterChain]) -> str:
    """One hash over every chain: the clean asset's code version."""
    body = sorted(c.name + ":" + c.version for c in [*chains, DEFAULT_COUNTER_CHAIN])
    return hashlib.sha256("|".join(body).encode()).hexdigest()[:12]
