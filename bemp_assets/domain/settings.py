"""Where BEMP keeps its files.

Every path is resolved to an absolute path exactly once, here, so that the webserver, the
daemon, run workers and the CLI agree on the same warehouse even if they start in different
working directories. ``BEMP_WAREHOUSE=ducklake:...`` (with ``BEMP_LAKE_DATA_PATH``) selects the
DuckLake backend instead of the file: ``warehouse`` is then a ``lake.LakeTarget``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    home: Path
    inbox: Path
    warehouse: Path  # or a lake.LakeTarget (BEMP_WAREHOUSE=ducklake:...)
    config_dir: Path
    sample_dir: Path
    artifacts: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("BEMP_HOME", "data")).expanduser().resolve()
        return cls(
            home=home,
            inbox=home / "inbox",
            warehouse=_warehouse(env, home),
            config_dir=Path(env.get("BEMP_CONFIG", home / "config")).expanduser().resolve(),
            sample_dir=Path(env.get("BEMP_SAMPLE", home / "sample")).expanduser().resolve(),
            artifacts=home / "artifacts",
        )

    def to_env(self) -> dict[str, str]:
        """The BEMP_* variables that make ``from_env`` return these settings (for a code
        location loaded in another module import or process)."""
        lake = {"BEMP_LAKE_DATA_PATH": self.warehouse.data_path} if hasattr(self.warehouse, "data_path") else {}
        return {**lake, "BEMP_HOME": str(self.home), "BEMP_WAREHOUSE": str(self.warehouse),
                "BEMP_CONFIG": str(self.config_dir), "BEMP_SAMPLE": str(self.sample_dir)}


def _warehouse(env: Mapping[str, str], home: Path):
    value = env.get("BEMP_WAREHOUSE", "")
    if value.startswith("ducklake:"):
        from .connection import warehouse_target  # duckdb only when a lake is configured

        return warehouse_target(value, env)
    return Path(value or home / "warehouse.duckdb").expanduser().resolve()
