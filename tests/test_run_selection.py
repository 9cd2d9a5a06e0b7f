"""`bemp run` without --select takes, for each span of days, only the raw sources with a file
holding one of its days (or a file whose days cannot be read), then clean and agg: a source
without a file there would only record empty partitions, one event pair per day.

The files are written here, so the days each holds are known by construction: REACH stamps are
site-local (Europe/Rome) and a file's days are padded by one on each side.
"""
from __future__ import annotations

from datetime import date

from dagster import AssetKey, AssetRecordsFilter, instance_for_test

from bemp_assets.cli import run
from bemp_assets.domain.inbox import HeldDays

from .conftest import make_settings

HEADER = "Dispositivo,Parametro,Data,Valore\n"


def reach(day: str, device: str) -> str:
    """Ten minutes of readings on ``day`` (DD/MM/YYYY)."""
    return HEADER + "".join(f'{device},Potenza attiva,10:{m:02d}:00 {day},"{m},5"\n' for m in range(10))


def materialized(instance, key: list[str]) -> list[str]:
    records = instance.fetch_materializations(AssetRecordsFilter(asset_key=AssetKey(key)), limit=1000).records
    return sorted({r.partition_key for r in records})


def run_assets(instance) -> list[set[str]]:
    """The raw assets each run named, oldest run first."""
    return [{key.to_user_string() for key in r.asset_selection if key.path[0] == "raw"}
            for r in reversed(instance.get_runs()) if r.job_name == "bemp_pipeline"]


def test_each_span_runs_only_the_sources_with_files_in_it(tmp_path, capsys):
    settings = make_settings(tmp_path / "home")
    settings.inbox.mkdir(parents=True)
    (settings.inbox / "meter_a.csv").write_text(reach("05/11/2016", "m1"), encoding="utf-8")
    (settings.inbox / "reach_residential4_x.csv").write_text(reach("20/11/2016", "r1"), encoding="utf-8")
    landing = settings.home / "api" / "landing"
    landing.mkdir(parents=True)
    (landing / "api_broken.csv").write_bytes(b"\x00\x01 not a csv")  # undated: its source runs in every span
    with instance_for_test() as instance:
        assert run(settings, None, None, None, instance=instance, refresh_status=False) == 0
        assert run_assets(instance) == [{"raw/reach_meters", "raw/api"}, {"raw/reach_residential", "raw/api"}]
        assert materialized(instance, ["raw", "reach_meters"]) == ["2016-11-04", "2016-11-05", "2016-11-06"]
        assert materialized(instance, ["raw", "reach_residential"]) == ["2016-11-19", "2016-11-20", "2016-11-21"]
        assert materialized(instance, ["raw", "steel_plant"]) == []
        assert materialized(instance, ["clean", "measurements"]) == ["2016-11-04", "2016-11-05", "2016-11-06",
                                                                    "2016-11-19", "2016-11-20", "2016-11-21"]
        printed = capsys.readouterr().out
        assert "sources with files in 2016-11-04 .. 2016-11-06: api, reach_meters" in printed
        # given dates: the same rule, over the given range
        assert run(settings, "2016-11-01", "2016-11-10", None, instance=instance, refresh_status=False) == 0
        assert run_assets(instance)[-1] == {"raw/reach_meters", "raw/api"}
        assert materialized(instance, ["raw", "reach_meters"]) == [f"2016-11-{d:02d}" for d in range(1, 11)]
        # --select is the user's choice, whatever the files
        assert run(settings, "2016-11-01", "2016-11-01", "key:raw/steel_plant", instance=instance, refresh_status=False) == 0
        assert materialized(instance, ["raw", "steel_plant"]) == ["2016-11-01"]


def test_held_days_merges_touching_spans_and_picks_overlapping_sources():
    d = date.fromisoformat
    held = HeldDays({"a": [(d("2020-01-01"), d("2020-01-10"))], "b": [(d("2020-01-11"), d("2020-01-20"))],
                     "c": [(d("2020-03-01"), d("2020-03-02"))]}, frozenset({"x"}))
    assert held.spans() == [(d("2020-01-01"), d("2020-01-20")), (d("2020-03-01"), d("2020-03-02"))]
    assert held.sources_within(d("2020-01-10"), d("2020-01-10")) == ["a", "x"]
    assert held.sources_within(d("2020-01-10"), d("2020-01-11")) == ["a", "b", "x"]
    assert held.sources_within(d("2020-02-01"), d("2020-02-28")) == ["x"]
