"""Property tests: the vectorised set-point dead band and the normalisation fast path against
plain reference loops written here, on random frames longer than the dead band's look-ahead
(NEAR), with shuffled rows, repeated keys, NaN values, plateaus and noise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bemp_assets.domain.filters import NEAR, FilterStats, SetPointParams, normalise, setpoint

CASES = range(40)


def random_frame(seed: int, shuffle: bool = True) -> pd.DataFrame:
    """Several variables, each a mix of plateaus (longer than NEAR), small steps and noise, with
    some NaN values and repeated time stamps."""
    rng = np.random.default_rng(seed)
    parts = []
    for v in range(int(rng.integers(1, 5))):
        n = int(rng.integers(NEAR + 1, 6 * NEAR))
        levels = np.repeat(rng.normal(0, 2, size=n // 8 + 1), 8)[:n]
        plateau = rng.random(n) < 0.5
        values = np.where(plateau, np.round(levels, 1), levels + rng.normal(0, 0.3, n))
        values[rng.random(n) < 0.03] = np.nan
        ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, n * 2, n)), unit="min")
        parts.append(pd.DataFrame({"variable_id": f"v{v}", "ts": ts, "value": values}))
    frame = pd.concat(parts, ignore_index=True)
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True) if shuffle else frame


def normalise_reference(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop NaN, stable sort by (variable, ts), the last row of a repeated key wins."""
    rows = []
    for position, row in enumerate(frame.itertuples(index=False)):
        if not np.isnan(row.value):
            rows.append((row.variable_id, row.ts, position, row.value))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    kept = [r for i, r in enumerate(rows) if i + 1 == len(rows) or rows[i + 1][:2] != r[:2]]
    return pd.DataFrame({"variable_id": [r[0] for r in kept], "ts": [r[1] for r in kept],
                         "value": [r[3] for r in kept]})


def deadband_reference(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Walk each variable's normalised rows: keep a row when it moved beyond ``tolerance``
    from the last row kept."""
    rows, last = [], {}
    for row in normalise_reference(frame).itertuples(index=False):
        if row.variable_id not in last or abs(row.value - last[row.variable_id]) > tolerance:
            rows.append(row)
            last[row.variable_id] = row.value
    return pd.DataFrame(rows, columns=["variable_id", "ts", "value"])


def same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert got["variable_id"].tolist() == expected["variable_id"].tolist()
    assert got["ts"].tolist() == expected["ts"].tolist()
    assert got["value"].tolist() == expected["value"].tolist()


@pytest.mark.parametrize("seed", CASES)
def test_normalise_matches_the_reference(seed):
    for frame in (random_frame(seed), random_frame(seed, shuffle=False)):
        stats = FilterStats("normalise", rows_in=len(frame))
        got = normalise(frame, stats)
        expected = normalise_reference(frame)
        same(got, expected)
        assert stats.nan_dropped == int(frame["value"].isna().sum())
        assert stats.nan_dropped + stats.duplicates_dropped + len(got) == len(frame)


@pytest.mark.parametrize("seed", CASES)
def test_setpoint_dead_band_matches_the_reference(seed):
    frame = random_frame(seed)
    for tolerance in (0.0, 0.05, 0.5, 3.0):
        got, stats = setpoint(frame, SetPointParams(tolerance=tolerance))
        same(got, deadband_reference(frame, tolerance))
        assert stats.rows_out == len(got)
