"""Each filter against hand-computed expectations, and the real OPSD counters."""
import numpy as np
import pandas as pd
import pytest

from bemp_assets.domain.chains import ChainError, FilterChain, assign_chains, chains_version
from bemp_assets.domain.filters import (
    ClipParams, DeaccumulateParams, ScaleParams, SetPointParams, SpikeParams, TimestepParams,
    apply_chain, clip, deaccumulate, scale, setpoint, spike, timestep,
)

from .conftest import REAL


def frame(minutes, values, variable="a"):
    ts = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min")
    return pd.DataFrame({"variable_id": variable, "ts": ts, "value": np.asarray(values, dtype=float)})


def pairs(out):
    return [(int((t - pd.Timestamp("2020-01-01", tz="UTC")).total_seconds() // 60), round(v, 9))
            for t, v in zip(out["ts"], out["value"])]


# ---------------------------------------------------------------- deaccumulate
def test_deaccumulate_regular_counter():
    out, stats = deaccumulate(frame([0, 15, 30, 45], [10, 12, 15, 15]), DeaccumulateParams(), 900)
    assert pairs(out) == [(0, 2), (15, 3), (30, 0)]
    assert (stats.rows_in, stats.rows_out, stats.resets, stats.gaps) == (4, 3, 0, 0)


def test_deaccumulate_reset_counts_from_zero_or_discards():
    data = frame([0, 15, 30, 45], [100, 104, 3, 5])  # meter swapped between 15 and 30
    out, stats = deaccumulate(data, DeaccumulateParams(), 900)
    assert pairs(out) == [(0, 4), (15, 3), (30, 2)] and stats.resets == 1
    out, stats = deaccumulate(data, DeaccumulateParams(reset="discard"), 900)
    assert pairs(out) == [(0, 4), (30, 2)] and stats.removed == 1
    assert (out["value"] >= 0).all()


def test_deaccumulate_rollover_is_a_wrap_not_a_reset():
    data = frame([0, 15, 30, 45], [9990, 9998, 5, 9])
    out, stats = deaccumulate(data, DeaccumulateParams(rollover=10000), 900)
    assert pairs(out) == [(0, 8), (15, 7), (30, 4)]
    assert (stats.wraps, stats.resets) == (1, 0)
    # a drop to the middle of the range is not a plausible wrap: a reset
    # from 3000 to 100: a wrap would mean 10000 - 3000 + 100 = 7100, over half the range: a reset
    out, stats = deaccumulate(frame([0, 15], [3000, 100]), DeaccumulateParams(rollover=10000), 900)
    assert pairs(out) == [(0, 100)] and (stats.wraps, stats.resets) == (0, 1)


def test_deaccumulate_small_drop_is_a_glitch_not_a_reset():
    # 101 -> 100.5 is jitter (above 10 % of 101): held at 101, so no 100.5 kWh spike
    out, stats = deaccumulate(frame([0, 15, 30, 45, 60], [100, 101, 100.5, 100.8, 102]), DeaccumulateParams(), 900)
    assert pairs(out) == [(0, 1), (15, 0), (30, 0), (45, 1)]
    assert (stats.glitches, stats.resets) == (1, 0) and out["value"].sum() == 2  # = 102 - 100
    # a glitch, then a real reset, then climbing again
    out, stats = deaccumulate(frame([0, 15, 30, 45], [50, 49, 2, 4]), DeaccumulateParams(), 900)
    assert pairs(out) == [(0, 0), (15, 2), (30, 2)] and (stats.glitches, stats.resets) == (1, 1)


def test_deaccumulate_gap_attribute_or_spread():
    data = frame([0, 15, 75, 90], [0, 1, 9, 10])  # 60 minutes between 15 and 75: 4 intervals
    out, stats = deaccumulate(data, DeaccumulateParams(gap="attribute"), 900)
    assert pairs(out) == [(0, 1), (60, 8), (75, 1)] and stats.gaps == 1
    out, _ = deaccumulate(data, DeaccumulateParams(gap="spread"), 900)
    assert pairs(out) == [(0, 1), (15, 2), (30, 2), (45, 2), (60, 2), (75, 1)]


def test_deaccumulate_nan_single_unsorted_duplicates():
    out, stats = deaccumulate(frame([30, 0, 15, 15, 45], [3, 1, 5, 2, np.nan]), DeaccumulateParams(), 900)
    # sorted: 0->1, 15->2 (the later duplicate row wins), 30->3; NaN dropped
    assert pairs(out) == [(0, 1), (15, 1)]
    assert (stats.nan_dropped, stats.duplicates_dropped) == (1, 1)
    single, stats = deaccumulate(frame([0], [5]), DeaccumulateParams(), 900)
    assert len(single) == 0 and stats.rows_out == 0
    empty, _ = deaccumulate(frame([], []), DeaccumulateParams(), 900)
    assert list(empty.columns) == ["variable_id", "ts", "value"] and len(empty) == 0


def test_deaccumulate_many_variables_with_their_own_intervals():
    data = pd.concat([frame([0, 15, 30], [0, 1, 3], "q"), frame([0, 60, 120], [5, 6, 8], "h")])
    out, _ = deaccumulate(data, DeaccumulateParams(), pd.Series({"q": 900, "h": 3600}))
    got = {v: pairs(g) for v, g in out.groupby("variable_id")}
    assert got == {"q": [(0, 1), (15, 2)], "h": [(0, 1), (60, 2)]}


@pytest.mark.parametrize("gap", ["attribute", "spread"])
def test_real_opsd_counters_keep_their_energy(gap):
    raw = pd.read_csv(REAL / "opsd_household_data_60min_DE_KN_residential4_2017extract.csv")
    counters = [c for c in raw.columns if c.startswith("DE_KN")]
    long = raw.melt(id_vars="utc_timestamp", value_vars=counters, var_name="variable_id").dropna()
    long["ts"] = pd.to_datetime(long["utc_timestamp"], utc=True)
    out, stats = deaccumulate(long, DeaccumulateParams(gap=gap), 3600)
    assert (out["value"] >= 0).all()
    totals = out.groupby("variable_id")["value"].sum()
    for column in counters:
        series = raw[column].dropna().to_numpy()
        assert (np.diff(series) >= 0).all()  # these real counters never drop: the advance is last - first
        expected = series[-1] - series[0]
        assert totals[column] == pytest.approx(expected, rel=1e-9, abs=1e-9), column
    assert stats.gaps > 0  # the extract has missing hours: they kept their energy


# ---------------------------------------------------------------- clip, setpoint, spike, scale
def test_clip_to_bounds_or_remove():
    data = frame([0, 1, 2, 3], [-5, 10, 120, np.nan])
    out, stats = clip(data, ClipParams(min=0, max=100))
    assert pairs(out) == [(0, 0), (1, 10), (2, 100)] and (stats.clipped, stats.nan_dropped) == (2, 1)
    out, stats = clip(data, ClipParams(min=0, max=100, mode="remove"))
    assert pairs(out) == [(1, 10)] and stats.removed == 2
    with pytest.raises(ValueError, match="min 5.0 is above max 1.0"):
        ClipParams(min=5, max=1)


def test_setpoint_keeps_changes_only():
    out, stats = setpoint(frame([0, 1, 2, 3, 4], [1, 1, 2, 2, 1]), SetPointParams())
    assert pairs(out) == [(0, 1), (2, 2), (4, 1)] and stats.removed == 2
    # tolerance relative to the last KEPT value: slow drift still registers
    out, _ = setpoint(frame([0, 1, 2, 3, 4], [20.0, 20.3, 20.6, 20.7, 21.2]), SetPointParams(tolerance=0.5))
    assert pairs(out) == [(0, 20.0), (2, 20.6), (4, 21.2)]
    out, _ = setpoint(pd.concat([frame([0, 1], [1, 1], "x"), frame([0, 1], [1, 1], "y")]), SetPointParams())
    assert out["variable_id"].tolist() == ["x", "y"]


def test_spike_and_scale():
    out, stats = spike(frame(range(7), [1, 1, 1, 50, 1, 1, 1]), SpikeParams(window=3, threshold=5))
    assert 3 not in [m for m, _ in pairs(out)] and stats.removed == 1 and len(out) == 6
    out, _ = scale(frame([0], [2.0]), ScaleParams(factor=1000, offset=-1))
    assert pairs(out) == [(0, 1999)]


# ---------------------------------------------------------------- timestep
def test_timestep_by_kind():
    power = frame([0, 5, 10, 15, 20], [1, 2, 3, 10, 20], "p")
    energy = frame([0, 5, 10, 15, 20], [1, 2, 3, 10, 20], "e")
    state = frame([0, 5, 10, 15, 20], [1, 2, 3, 10, 20], "s")
    kinds = pd.Series({"p": "instantaneous", "e": "interval", "s": "state"})
    out, stats = timestep(pd.concat([power, energy, state]), TimestepParams(step="15min"), kinds=kinds)
    got = {v: pairs(g) for v, g in out.groupby("variable_id")}
    assert got == {"p": [(0, 2), (15, 15)], "e": [(0, 6), (15, 30)], "s": [(0, 3), (15, 20)]}
    assert (stats.rows_in, stats.rows_out) == (15, 6)


def test_timestep_forward_fill_up_to_max_gap():
    out, _ = timestep(frame([0, 100], [1, 2]), TimestepParams(step="15min", how="last", fill="ffill", max_gap="30min"))
    assert pairs(out) == [(0, 1), (15, 1), (30, 1), (90, 2)]


# ---------------------------------------------------------------- chains and assignment
def chain(name, select, steps=()):
    return FilterChain.model_validate({"name": name, "select": select, "steps": list(steps)})


def test_chain_composition_and_kind_change():
    counters = chain("c", {"kind": "cumulative"}, [{"deaccumulate": {}}, {"clip": {"max": 1.5}}, {"timestep": {"step": "30min"}}])
    data = frame([0, 15, 30, 45, 60], [0, 1, 3, 4, 5])
    out, stats = apply_chain(data, counters.steps, pd.Series({"a": 900}), pd.Series({"a": "cumulative"}))
    # deltas 1,2,1,1 -> clip 1,1.5,1,1 -> 30-minute sums (kind is interval after deaccumulate)
    assert pairs(out) == [(0, 2.5), (30, 2)]
    assert [s.filter for s in stats] == ["deaccumulate", "clip", "timestep"] and stats[1].clipped == 1


def test_most_specific_selector_wins_and_ties_fail():
    variables = pd.DataFrame([
        {"variable_id": "m1.active_power", "device": "m1", "parameter": "active_power", "category": "electricity", "kind": "instantaneous"},
        {"variable_id": "m1.active_energy", "device": "m1", "parameter": "active_energy", "category": "electricity", "kind": "cumulative"},
        {"variable_id": "m2.voltage", "device": "m2", "parameter": "voltage", "category": "electricity", "kind": "instantaneous"},
    ])
    by_device, by_id = chain("dev", {"device": "m1"}), chain("one", {"variable_id": "m1.active_power"})
    got = assign_chains(variables, [by_device, by_id])
    assert got["m1.active_power"].name == "one" and got["m1.active_energy"].name == "dev" and got["m2.voltage"] is None
    assert assign_chains(variables.iloc[[1]], [])["m1.active_energy"].name == "default_counter"
    # two glob patterns claim m1.active_power equally specifically
    with pytest.raises(ChainError, match=r"'m1.active_power'.*\['meter', 'power'\]"):
        assign_chains(variables, [chain("meter", {"pattern": "m1.*"}), chain("power", {"pattern": "*.active_power"})])


def test_chain_config_errors_name_the_step():
    with pytest.raises(ValueError, match=r"steps\[1\]: unknown filter 'smooth'; expected one of \['clip', 'deaccumulate'"):
        chain("x", {"kind": "state"}, [{"clip": {"max": 1}}, {"smooth": {}}])
    with pytest.raises(ValueError, match=r"steps\[0\].clip: mode: Input should be 'clip' or 'remove'"):
        chain("x", {"kind": "state"}, [{"clip": {"max": 1, "mode": "cut"}}])
    with pytest.raises(ValueError, match=r"exactly one of"):
        chain("x", {"kind": "state", "device": "m"}, [])


def test_chain_version_follows_steps_not_description():
    a = chain("a", {"kind": "cumulative"}, [{"clip": {"max": 5}}])
    b = a.model_copy(update={"description": "words"})
    c = chain("a", {"kind": "cumulative"}, [{"clip": {"max": 6}}])
    assert a.version == b.version != c.version
    assert chains_version([a]) != chains_version([c])
