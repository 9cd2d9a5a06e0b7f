"""The building registry (data/config/buildings.csv): typed rows, assumptions labelled, and an
invalid row rejected with file, row and column named."""
from __future__ import annotations

import csv

import pytest

from bemp_assets.domain.buildings import COLUMNS, load_registry, registry_version
from bemp_assets.domain.config import ConfigError

from .conftest import CONFIG_DIR, write_csv

HEADER = ",".join(COLUMNS)


def row(**cells) -> str:
    values = {"building_id": "B1", "main_carrier": "gas", **cells}
    return ",".join(str(values.get(c, "")) for c in COLUMNS)


def test_project_registry_loads_with_every_row_and_labelled_assumptions():
    path = CONFIG_DIR / "buildings.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        expected = list(csv.DictReader(handle))
    table = load_registry(path)
    assert list(table["building_id"]) == [r["building_id"] for r in expected]
    assert {"59_473_7", "59_473_8", "UCam_Building_b101"} <= set(table["building_id"])
    gateway_house = table.set_index("building_id").loc["59_473_7"]
    assert gateway_house["heated_area_m2"] == 220.0 and gateway_house["floors"] == 2
    assert "heated_area_m2" in gateway_house["assumed_fields"]  # not documented: labelled
    cambridge = table.set_index("building_id").loc["UCam_Building_b101"]
    assert cambridge["heated_area_m2"] != cambridge["heated_area_m2"]  # unknown stays missing (NaN)
    assert cambridge["orientation"] is None or cambridge["orientation"] != cambridge["orientation"]


@pytest.mark.parametrize("cells, line_part", [
    ({"floors": "two"}, "column 'floors': expected a whole number >= 1, got 'two'"),
    ({"floors": "1.5"}, "column 'floors'"),
    ({"window_share_s": "1.4"}, "column 'window_share_s': expected a number between 0 and 1"),
    ({"latitude": "95"}, "column 'latitude'"),
    ({"orientation": "up"}, "column 'orientation': expected one of ['N'"),
    ({"district_heating": "maybe"}, "column 'district_heating'"),
    ({"main_carrier": ""}, "column 'main_carrier': expected a value (required)"),
    ({"assumed_fields": "colour"}, "column 'assumed_fields'"),
    ({"assumed_fields": "floors"}, "an empty cell is unknown, not assumed"),
])
def test_invalid_row_names_file_row_and_column(tmp_path, cells, line_part):
    path = write_csv(tmp_path / "buildings.csv", "\n".join([HEADER, row(building_id="OK"), row(building_id="BAD", **cells)]) + "\n")
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    message = str(err.value)
    assert message.startswith(f"{path}: row 3 (building 'BAD'), ")
    assert line_part in message


def test_duplicate_id_missing_column_and_ragged_row(tmp_path):
    dup = write_csv(tmp_path / "a.csv", "\n".join([HEADER, row(), row()]) + "\n")
    with pytest.raises(ConfigError, match=r"row 3 \(building 'B1'\), column 'building_id': expected a building id used once"):
        load_registry(dup)
    short = write_csv(tmp_path / "b.csv", HEADER.replace(",floors", "") + "\n")
    with pytest.raises(ConfigError, match=r"header: missing columns \['floors'\]"):
        load_registry(short)
    ragged = write_csv(tmp_path / "c.csv", HEADER + "\nB1,x\n")
    with pytest.raises(ConfigError, match="row 2: 2 cells, the header has"):
        load_registry(ragged)


def test_registry_version_changes_with_any_edit(tmp_path):
    path = write_csv(tmp_path / "buildings.csv", "\n".join([HEADER, row()]) + "\n")
    before = registry_version(path)
    write_csv(path, "\n".join([HEADER, row(floors=3)]) + "\n")
    assert registry_version(path) != before
    assert registry_version(tmp_path / "absent.csv") == "none"
