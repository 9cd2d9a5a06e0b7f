"""`bemp models list|train` and `bemp forecast` as a user runs them (a subprocess), on a copy
of the steel warehouse built by the real pipeline (tests/test_models.py)."""
import csv
import math
import shutil

import pytest

from .test_cli_errors import bemp, one_line_error
from .test_models import TARGET, steel  # noqa: F401  (module fixture)


@pytest.fixture
def home(steel, tmp_path):  # noqa: F811
    (tmp_path / "home").mkdir()
    shutil.copy2(steel.warehouse, tmp_path / "home" / "warehouse.duckdb")
    return tmp_path


@pytest.mark.parametrize("args, expected", [
    (["forecast", "--model", "steel_calendr", "--day", "2018-03-20"],
     "bemp forecast: --model 'steel_calendr': no such model in {config}/models.yaml (did you mean 'steel_calendar'?)"),
    (["forecast", "--model", "steel_calendar", "--day", "2018-02-30"],
     "bemp forecast: --day '2018-02-30': expected a day as YYYY-MM-DD, e.g. 2018-03-01"),
    (["run", "--select", "group:ml", "--start", "2018-01-01", "--end", "2018-01-01"],
     "bemp run: --select 'group:ml' matches no asset of job bemp_pipeline (models: `bemp models train`)"),
    (["models", "train", "nope"], "bemp models: NAME 'nope': no such model in {config}/models.yaml; configured: "),
    (["models", "train", "--search-minutes", "0"], "bemp models: --search-minutes 0.0: expected a positive number of minutes"),
])
def test_model_commands_name_the_flag(tmp_path, args, expected):
    from .conftest import CONFIG_DIR

    line = one_line_error(bemp(tmp_path, *args))
    assert line.startswith(expected.format(config=CONFIG_DIR))


def test_forecast_writes_a_day_of_hourly_values_as_csv(home):
    out = home / "f.csv"
    result = bemp(home, "forecast", "--model", "steel_calendar", "--day", "2018-03-20", "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    assert {r["variable_id"] for r in rows} == {TARGET} and {r["model_id"] for r in rows} == {"steel_calendar"}
    assert [float(r["horizon_h"]) for r in rows] == list(range(24))
    assert rows[0]["target_ts"].startswith("2018-03-19 15:00:00") and rows[0]["issued_at"] == rows[0]["target_ts"]
    assert all(math.isfinite(float(r["value"])) for r in rows)


def test_models_train_runs_through_the_instance_and_lists_roles(home):
    from .conftest import CONFIG_DIR

    config = home / "config"
    shutil.copytree(CONFIG_DIR, config)
    text = (config / "models.yaml").read_text().replace('"2018-10-01"', '"2018-03-01"').replace('"2018-12-31"', '"2018-03-31"')
    (config / "models.yaml").write_text(text)  # the module's warehouse holds January-March
    result = bemp(home, "models", "train", "steel_calendar", config=config)
    assert result.returncode == 0, result.stderr
    assert "(ml_train: features, models, backtests): SUCCESS" in result.stdout
    listed = bemp(home, "models", "list", config=config)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split("|")[1].strip(): line for line in listed.stdout.splitlines() if line.startswith("| ")}
    assert "baseline" in lines["persistence"] and "baseline" in lines["same_hour_last_week"]
    roles = [line.split("|")[3].strip() for name, line in lines.items() if name.startswith("steel_") and "tpot" not in name]
    assert sorted(roles) == ["challenger", "challenger", "challenger", "champion"]  # four configured HGB models
