"""Mistakes on the command line or in the config: one line on stderr naming the flag, file or
key and what was expected, a non-zero exit, no traceback and no warehouse summary after it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import CONFIG_DIR, ROOT, SAMPLE

BEMP = [sys.executable, "-m", "bemp_assets.cli"]


def bemp(tmp_path, *args: str, config=CONFIG_DIR) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEMP_HOME": str(tmp_path / "home"), "BEMP_CONFIG": str(config),
           "BEMP_SAMPLE": str(SAMPLE), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    shutil.copy(ROOT / ".dagster_home" / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    return subprocess.run([*BEMP, *args], env=env, capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "Warning" not in line and "return fn" not in line
              and not line.startswith("  ")]  # Dagster's BetaWarnings (two lines each) are not ours
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr and "warehouse:" not in result.stdout
    return errors[0]


@pytest.mark.parametrize("args, expected", [
    (["run", "--select", "grup:raw", "--start", "2018-01-01", "--end", "2018-01-01"],
     "bemp run: --select 'grup:raw': not a valid selection (did you mean 'group:raw'?)"),
    (["run", "--select", "group:rw", "--start", "2018-01-01", "--end", "2018-01-01"],
     "bemp run: --select 'group:rw' matches no asset (did you mean 'group:raw'?)"),
    (["run", "--select", "key:clean/measurement", "--start", "2018-01-01", "--end", "2018-01-01"],
     "bemp run: --select 'key:clean/measurement' matches no asset (did you mean 'key:clean/measurements'?)"),
    (["run", "--start", "2018-02-30", "--end", "2018-03-01"],
     "bemp run: --start '2018-02-30': expected a day as YYYY-MM-DD, e.g. 2018-03-01"),
    (["run", "--start", "2018-03-01", "--end", "01/03/2018"],
     "bemp run: --end '01/03/2018': expected a day as YYYY-MM-DD, e.g. 2018-03-01"),
    (["run", "--start", "2018-03-02", "--end", "2018-03-01"], "bemp run: --start 2018-03-02 is after --end 2018-03-01"),
    (["run", "--job", "bemp_live"], "bemp run: the warehouse holds no live-source data yet; give --start and --end"),
    (["status", "--as-of", "yesterday"],
     "bemp status: --as-of 'yesterday': expected an ISO 8601 instant such as 2018-06-01 or 2018-06-01T12:00 (UTC) "
     "or 2018-06-01T12:00+02:00"),
    (["export", "--variable", "x", "--start", "2018-01-01", "--end", "2018-01-02", "--out", "/nonexistent/dir/x.csv"],
     "bemp export: --out /nonexistent/dir/x.csv: folder /nonexistent/dir does not exist"),
])
def test_cli_mistakes_are_one_line(tmp_path, args, expected):
    assert one_line_error(bemp(tmp_path, *args)) == expected


def test_a_missing_warehouse_is_one_line(tmp_path):
    line = one_line_error(bemp(tmp_path, "status"))
    assert line == (f"bemp status: warehouse {tmp_path / 'home' / 'warehouse.duckdb'} does not exist yet: "
                    f"run `make run` or `bemp run` first")


@pytest.mark.parametrize("file, text, expected", [
    ("site.yaml", "site: [unclosed\n", "site.yaml: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
    ("site.yaml", "site:\n  name: x\n  timezone: Europe/Rom\n  start_date: 2016-02-13\n",
     "site.yaml: key 'site.timezone': Value error, expected an IANA time zone such as 'Europe/Rome', got 'Europe/Rom'"),
])
def test_config_mistakes_are_one_line(tmp_path, file, text, expected):
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / file).write_text(text, encoding="utf-8")
    line = one_line_error(bemp(tmp_path, "run", "--start", "2018-01-01", "--end", "2018-01-01", config=config))
    assert line.startswith(f"bemp run: {config / file.split(':')[0]}") and expected.split(": ", 1)[1] in line


def test_a_missing_config_folder_is_one_line(tmp_path):
    line = one_line_error(bemp(tmp_path, "run", "--start", "2018-01-01", "--end", "2018-01-01",
                               config=tmp_path / "nowhere"))
    assert line == f"bemp run: {tmp_path / 'nowhere'}: config folder not found (set BEMP_CONFIG or BEMP_HOME)"


def test_export_help_documents_every_option():
    result = subprocess.run([*BEMP, "export", "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    for option, words in [("--variable VARIABLE", "variable id"), ("--start START", "first day, YYYY-MM-DD"),
                          ("--end END", "last day, YYYY-MM-DD, inclusive"),
                          ("--layer {raw,clean,hourly}", "raw readings, clean readings (default) or hourly"),
                          ("--out OUT", "CSV file to write; its folder must exist")]:
        assert f"{option} {words}" in text, (option, result.stdout)
