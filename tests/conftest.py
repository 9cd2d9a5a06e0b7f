"""Shared fixtures: the repository's config and sample data, a fresh warehouse per test."""
from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import pytest

from bemp_assets.domain.config import load_config
from bemp_assets.domain.settings import Settings
from bemp_assets.domain.warehouse import prepare

warnings.filterwarnings("ignore", message=".*is currently in beta.*")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
CONFIG_DIR = ROOT / "data" / "config"
# CC BY 4.0 originals copied from ../shared/data/real (see data/sample/ATTRIBUTION.md)
REAL = SAMPLE / "real"

# The slowest modules (CI's --durations list, module fixtures that build warehouses), longest
# first: `make test` hands files to the two pytest-xdist workers in collection order
# (--no-loadscope-reorder), so these start first and the short files fill in around them,
# instead of a long one starting last on a worker while the other idles.
SLOWEST_FIRST = ["test_lake", "test_pipeline", "test_alarms_sample", "test_kpi", "test_run_hygiene", "test_models",
                 "test_models_assets", "test_live", "test_models_cli"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


@pytest.fixture(scope="session")
def config():
    return load_config(CONFIG_DIR)


@pytest.fixture
def con(tmp_path):
    connection = prepare(duckdb.connect(str(tmp_path / "warehouse.duckdb")))
    yield connection
    connection.close()


def make_settings(home: Path, config_dir: Path = CONFIG_DIR) -> Settings:
    return Settings.from_env({"BEMP_HOME": str(home), "BEMP_CONFIG": str(config_dir), "BEMP_SAMPLE": str(SAMPLE)})


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "home")


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
