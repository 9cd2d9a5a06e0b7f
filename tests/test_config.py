"""Config validation: one clear error naming file, key and expectation."""
import shutil

import pytest

from bemp_assets.domain.config import ConfigError, load_config, parse_duration

from .conftest import CONFIG_DIR


def copy_config(tmp_path):
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def test_repository_config_loads(config):
    assert config.site.timezone == "Europe/Rome"
    assert [s.name for s in config.sources] == ["steel_plant", "steel_production", "reach_residential", "reach_meters", "api"]
    steel = config.source("steel_plant")
    assert steel.expected_interval == 900 and steel.timestamp.label == "end"
    assert config.timezone_of(config.source("reach_meters")) == "Europe/Rome"


@pytest.mark.parametrize("text, expected", [("15min", 900), ("1h", 3600), ("30s", 30), ("1d", 86400), (60, 60)])
def test_durations(text, expected):
    assert parse_duration(text) == expected


def test_unknown_key_names_file_and_key(tmp_path):
    folder = copy_config(tmp_path)
    site = folder / "site.yaml"
    site.write_text(site.read_text().replace("timezone:", "timezon:"))
    with pytest.raises(ConfigError) as err:
        load_config(folder)
    message = str(err.value)
    assert "site.yaml" in message and "site.timezon" in message and "Extra inputs are not permitted" in message


def test_wrong_type_and_bad_enum(tmp_path):
    folder = copy_config(tmp_path)
    sources = folder / "sources.yaml"
    sources.write_text(sources.read_text().replace("expected_interval: 15min", "expected_interval: soon")
                       .replace("format: reach\n    pattern: \"*.csv\"", "format: xml\n    pattern: \"*.csv\""))
    with pytest.raises(ConfigError) as err:
        load_config(folder)
    message = str(err.value)
    assert "sources.yaml: key 'sources[0].expected_interval'" in message and "'soon'" in message
    assert "sources[3].format" in message and "'reach' or 'wide'" in message


def test_missing_field_and_wide_without_columns(tmp_path):
    folder = copy_config(tmp_path)
    (folder / "sources.yaml").write_text("sources:\n  - name: w\n    format: wide\n    pattern: '*.csv'\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].*a wide source needs timestamp, device, columns"):
        load_config(folder)
    (folder / "sources.yaml").write_text("sources:\n  - format: reach\n    pattern: '*.csv'\n")
    with pytest.raises(ConfigError, match=r"sources.yaml: key 'sources\[0\].name': Field required"):
        load_config(folder)


def test_bad_timezone_unknown_section_duplicate_section_and_missing_folder(tmp_path):
    folder = copy_config(tmp_path)
    site = folder / "site.yaml"
    site.write_text(site.read_text().replace("Europe/Rome", "Mars/Olympus"))
    with pytest.raises(ConfigError, match="site.timezone.*IANA time zone"):
        load_config(folder)
    site.write_text("site: {name: x, start_date: '2020-01-01'}\nreports: []\n")
    with pytest.raises(ConfigError, match="key 'reports': unknown section"):
        load_config(folder)
    site.write_text("site: {name: x, start_date: '2020-01-01'}\n")
    (folder / "more.yaml").write_text("site: {name: y, start_date: '2020-01-01'}\n")
    with pytest.raises(ConfigError, match="already defined in"):
        load_config(folder)
    with pytest.raises(ConfigError, match="config folder not found"):
        load_config(tmp_path / "nowhere")


def test_filter_chain_errors_name_file_key_and_step(tmp_path):
    folder = copy_config(tmp_path)
    filters = folder / "filters.yaml"
    original = filters.read_text()
    filters.write_text(original.replace("- deaccumulate: {reset: from_zero, gap: spread}", "- deaccumulate: {reset: from_zero, gap: smear}"))
    with pytest.raises(ConfigError, match=r"filters.yaml: key 'filter_chains\[0\]'.*steps\[0\].deaccumulate: gap: Input should be 'attribute' or 'spread'"):
        load_config(folder)
    filters.write_text(original.replace("- clip: {min: 0, max: 100, mode: remove}", "- median: {window: 3}"))
    with pytest.raises(ConfigError, match=r"filter_chains\[1\].*unknown filter 'median'; expected one of"):
        load_config(folder)
    filters.write_text(original.replace('select: {pattern: "daewoo_gwangyang.power_factor_*"}', "select: {kind: cumulative}"))
    with pytest.raises(ConfigError, match=r"chains 'counters' and 'steel_power_factor' both select kind='cumulative'"):
        load_config(folder)
