"""Fault switches of the reference servers: set at start (CLI flags) or at runtime (POST /_faults).

Counts make faults deterministic ("fail the next 2 requests with 500"); ``fail_rate`` draws
from a seeded generator, so a given seed fails the same requests every time. Faults apply to
data endpoints only, never to /health or /_faults.
"""
from __future__ import annotations

import argparse
import random
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_s: float = Field(0.0, ge=0, description="seconds added before every data response")
    fail_next: int = Field(0, ge=0, description="answer the next N data requests with HTTP 500")
    fail_rate: float = Field(0.0, ge=0, le=1, description="fraction of data requests answered with 500 (seeded)")
    rate_limit_next: int = Field(0, ge=0, description="answer the next N data requests with 429")
    retry_after_s: int = Field(1, ge=0, description="Retry-After seconds sent with a 429")
    truncate_next: int = Field(0, ge=0, description="cut the JSON body of the next N responses in half")
    duplicate_every: int = Field(0, ge=0, description="serve every Nth record of a page twice (0: off)")
    out_of_order: bool = Field(False, description="serve the records of each page in reverse time order")
    seed: int = Field(0, description="seed of the fail_rate draws")


def describe_error(exc: ValidationError) -> str:
    return "; ".join(f"key '{'.'.join(map(str, e['loc'])) or '(body)'}': {e['msg']}" for e in exc.errors())


class Faults:
    """The live settings, shared by the request threads."""

    def __init__(self, settings: FaultSettings | None = None):
        self._lock = threading.Lock()
        self._set(settings or FaultSettings())

    def _set(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)

    def update(self, changes: dict[str, Any]) -> FaultSettings:
        """Apply a partial change; ValueError names the bad key. Keys not given keep their value."""
        if not isinstance(changes, dict):
            raise ValueError(f"expected a JSON object of fault settings, got {type(changes).__name__}")
        with self._lock:
            try:
                self._set(FaultSettings.model_validate({**self.settings.model_dump(), **changes}))
            except ValidationError as exc:
                raise ValueError(describe_error(exc)) from None
            return self.settings

    def reset(self) -> FaultSettings:
        with self._lock:
            self._set(FaultSettings())
            return self.settings

    def take(self, counter: str) -> bool:
        """Consume one unit of a 'next N' counter; True when this request gets the fault."""
        with self._lock:
            left = getattr(self.settings, counter)
            if left <= 0:
                return False
            self.settings = self.settings.model_copy(update={counter: left - 1})
            return True

    def should_fail(self) -> bool:
        if self.take("fail_next"):
            return True
        with self._lock:
            return self.settings.fail_rate > 0 and self._rng.random() < self.settings.fail_rate

    def shape(self, records: list[dict]) -> list[dict]:
        """Duplicate and reorder a page's records as switched on."""
        every, reverse = self.settings.duplicate_every, self.settings.out_of_order
        if every:
            records = [r for i, rec in enumerate(records, 1) for r in ([rec, rec] if i % every == 0 else [rec])]
        return records[::-1] if reverse else records


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """One --flag per fault setting, generated from the model so flags and endpoint agree."""
    group = parser.add_argument_group("fault switches (also settable at runtime: POST /_faults)")
    for name, field in FaultSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            group.add_argument(flag, dest=f"fault_{name}", action="store_true", help=field.description)
        else:
            group.add_argument(flag, dest=f"fault_{name}", type=field.annotation, default=field.default,
                               help=f"{field.description} (default {field.default})")


def faults_from_args(args: argparse.Namespace) -> FaultSettings:
    values = {name: getattr(args, f"fault_{name}") for name in FaultSettings.model_fields}
    try:
        return FaultSettings(**values)
    except ValidationError as exc:
        raise SystemExit(f"fault flags: {describe_error(exc)}") from None
