"""The lake profile's small parts, without a server: backend choice from the environment,
conflict retries, the backfill policy and the day split of `bemp run --workers`."""
from __future__ import annotations

import duckdb
import pytest

from bemp_assets.assets.common import backfill_policy
from bemp_assets.cli import split_days
from bemp_assets.domain.connection import WarehouseError
from bemp_assets.domain.lake import LakeTarget, extension_file, is_conflict, retrying
from bemp_assets.domain.settings import Settings

CATALOG = "ducklake:postgres:dbname=bemp host=pg.internal user=bemp password=s3cret"
# DuckLake 1.5.5's message when two transactions wrote the same table (seen in tests/test_lake.py)
CONFLICT = ("TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction.\n"
            'Transaction conflict - attempting to insert into table with index "26" - but another transaction has deleted from it')


def test_settings_choose_the_lake_and_keep_it_through_the_environment(tmp_path):
    settings = Settings.from_env({"BEMP_HOME": str(tmp_path), "BEMP_WAREHOUSE": CATALOG,
                                  "BEMP_LAKE_DATA_PATH": str(tmp_path / "lake")})
    assert settings.warehouse == LakeTarget(CATALOG, str(tmp_path / "lake"))
    assert Settings.from_env(settings.to_env()).warehouse == settings.warehouse
    assert "s3cret" not in settings.warehouse.describe()
    with pytest.raises(WarehouseError, match="BEMP_LAKE_DATA_PATH"):
        Settings.from_env({"BEMP_HOME": str(tmp_path), "BEMP_WAREHOUSE": CATALOG})
    assert Settings.from_env({"BEMP_HOME": str(tmp_path)}).warehouse == tmp_path / "warehouse.duckdb"


def test_extensions_come_from_the_pip_packages():
    for package in ("duckdb_extension_ducklake", "duckdb_extension_postgres"):
        path = extension_file(package)
        assert path.suffix == ".duckdb_extension" and f"v{duckdb.__version__}" in str(path)


def test_a_conflict_is_retried_a_bounded_number_of_times():
    calls, waits = [], []

    def conflicting_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise duckdb.TransactionException(CONFLICT)
        return "committed"

    assert retrying(conflicting_twice, attempts=4, sleep=waits.append) == "committed"
    assert len(calls) == 3 and len(waits) == 2 and waits[1] > waits[0] * 0.5

    def always_conflicting():
        raise duckdb.TransactionException(CONFLICT)

    with pytest.raises(duckdb.TransactionException):
        retrying(always_conflicting, attempts=3, sleep=waits.append)
    assert len(waits) == 4  # 2 before + 2 more: the third attempt is not followed by a wait


def test_other_errors_are_not_retried():
    calls = []

    def broken():
        calls.append(1)
        raise duckdb.CatalogException("Table with name nope does not exist!")

    with pytest.raises(duckdb.CatalogException):
        retrying(broken, attempts=5, sleep=lambda s: None)
    assert calls == [1]
    assert is_conflict(duckdb.TransactionException(CONFLICT)) and not is_conflict(ValueError("conflict"))


def test_backfill_policy_follows_the_backend(monkeypatch):
    monkeypatch.delenv("BEMP_WAREHOUSE", raising=False)
    assert backfill_policy().max_partitions_per_run is None  # one run per range on the file
    monkeypatch.setenv("BEMP_WAREHOUSE", CATALOG)
    assert backfill_policy().max_partitions_per_run == 7


@pytest.mark.parametrize("first, last, parts, expected", [
    ("2018-01-01", "2018-03-31", 2, [("2018-01-01", "2018-02-14"), ("2018-02-15", "2018-03-31")]),
    ("2016-11-01", "2016-11-01", 3, [("2016-11-01", "2016-11-01")]),
    ("2016-10-30", "2016-11-01", 2, [("2016-10-30", "2016-10-31"), ("2016-11-01", "2016-11-01")]),
])
def test_split_days_covers_the_range_once(first, last, parts, expected):
    assert split_days(first, last, parts) == expected


def test_only_a_concurrent_catalog_creation_counts_as_one():
    from bemp_assets.domain.lake import is_concurrent_init

    raced = duckdb.Error('Failed to initialize DuckLake: Failed to execute query "CREATE TABLE "public"."ducklake_metadata"'
                         '(...)": ERROR:  relation "ducklake_metadata" already exists')
    assert is_concurrent_init(raced)
    assert not is_concurrent_init(duckdb.Error('Catalog Error: Table with name "w" already exists!'))
    assert not is_concurrent_init(duckdb.Error("Failed to initialize DuckLake: could not connect to server"))
