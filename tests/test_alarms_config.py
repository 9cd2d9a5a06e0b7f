"""data/config/alarms.yaml: validated on load, errors naming file and key; rule versions."""
from __future__ import annotations

import shutil

import pytest

from bemp_assets.domain.alarms import rule_version
from bemp_assets.domain.config import ConfigError, ConstantRule, NoDataRule, ThresholdRule, load_config

from .conftest import CONFIG_DIR


def test_shipped_rules_load(config):
    rules = {r.name: r for r in config.alarms.rules}
    assert sorted(rules) == ["bathroom_humidity_high", "gateway_silent", "reach_counter_stuck", "reach_meter_silent",
                             "steel_power_factor_pinned"]
    assert isinstance(rules["gateway_silent"], NoDataRule) and rules["gateway_silent"].threshold == 14 * 86400
    assert rules["gateway_silent"].per_gateway
    assert isinstance(rules["reach_counter_stuck"], ConstantRule) and rules["reach_counter_stuck"].ignore_value == 0
    assert len(rules["reach_counter_stuck"].select) == 5  # the YAML anchor of the five REACH meters
    humid = rules["bathroom_humidity_high"]
    assert isinstance(humid, ThresholdRule) and (humid.upper, humid.hysteresis, humid.on_delay, humid.off_delay) == (70, 5, 1800, 1800)
    assert config.alarms.evaluate_every_minutes == 5


def config_with(tmp_path, text):
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    (folder / "alarms.yaml").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("rule, key, expectation", [
    ('{name: a, severity: warning, type: threshold, select: {pattern: "x*"}}', "alarms.rules[0].threshold",
     "needs 'upper', 'lower' or both"),
    ('{name: a, severity: info, type: constant, select: {pattern: "x*"}, duration: soon}', "alarms.rules[0].constant.duration",
     "expected a duration such as"),
    ('{name: a, severity: urgent, type: no_data, select: {pattern: "x*"}}', "alarms.rules[0].no_data.severity",
     "'info', 'warning', 'error' or 'critical'"),
    ('{name: a, severity: info, type: no_data, select: {site: x}}', "alarms.rules[0].no_data.select[0].site",
     "Extra inputs are not permitted"),
    ('{name: a, severity: info, type: forecast, select: {pattern: "x*"}}', "alarms.rules[0]",
     "does not match any of the expected tags: 'constant', 'no_data', 'threshold', 'tunnel'"),
    ('{name: a, severity: info, type: threshold, upper: 5, lower: 4, hysteresis: 1, select: {pattern: "x*"}}',
     "alarms.rules[0].threshold", "'lower' + hysteresis must stay below 'upper' - hysteresis"),
])
def test_a_bad_rule_names_file_and_key(tmp_path, rule, key, expectation):
    folder = config_with(tmp_path, f"alarms:\n  rules:\n    - {rule}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder / 'alarms.yaml'}: key '{key}'")
    assert expectation in message


def test_rule_names_unique(tmp_path):
    rule = '{name: a, severity: info, type: no_data, select: {pattern: "x*"}}'
    folder = config_with(tmp_path, f"alarms:\n  rules:\n    - {rule}\n    - {rule}\n")
    with pytest.raises(ConfigError, match=r"alarms.yaml: key 'alarms': Value error, alarm rule names must be unique, repeated: \['a'\]"):
        load_config(folder)


def test_version_is_the_hash_of_the_definition(config):
    rule = next(r for r in config.alarms.rules if r.name == "steel_power_factor_pinned")
    assert rule_version(rule) == rule_version(rule.model_copy(update={"description": "another text"}))
    assert rule_version(rule) != rule_version(rule.model_copy(update={"duration": 13 * 3600}))
    assert len(rule_version(rule)) == 12
