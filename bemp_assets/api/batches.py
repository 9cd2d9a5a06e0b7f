"""Pushed readings: validation with a reason per bad row, and the durable landing file.

A batch is validated here (vectorised, pandas) so the response names every bad row, and then
written, good and bad rows alike, as one REACH-shape CSV in the landing area. The ``api``
source reads that folder, so the batch goes through the same raw -> clean -> hourly assets,
checks, rejects and lineage as a file dropped in the inbox, with the batch's file name as
``source_file``. Bad rows are written so that the parser rejects them too (the original text
where the timestamp is bad, the original value text where the value is), so they land in
``raw.rejects`` at line ``index + 2`` and every row ends stored or rejected.

The landing file is written under a temporary name, fsynced, then renamed: the sensor never
sees half a batch, and an accepted batch survives a crash.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bemp_assets.domain.config import SiteConfig, SourceConfig
from bemp_assets.domain.connection import scratch
from bemp_assets.domain.parsing import DOT_NUMBER, REACH_HEADER, REACH_TIME_FORMAT, partition_range

OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}[T ]"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BatchError(ValueError):
    """The body as a whole is unusable (not JSON, wrong shape, no rows): a 422 with this text."""


@dataclass
class Batch:
    """A validated batch: ``rows`` has one row per reading received, ``reason`` None when good."""

    variable_id: str
    rows: pd.DataFrame
    batch_id: str = field(default_factory=lambda: new_batch_id())

    @property
    def file_name(self) -> str:
        return f"api_{self.batch_id}.csv"

    def response(self) -> dict:
        bad = self.rows[self.rows["reason"].notna()]
        return {
            "batch_id": self.batch_id, "variable_id": self.variable_id, "file": self.file_name,
            "rows_received": len(self.rows), "rows_accepted": len(self.rows) - len(bad), "rows_rejected": len(bad),
            "rejected": [{"index": int(i), "reason": r} for i, r in zip(bad.index, bad["reason"])],
        }


def new_batch_id() -> str:
    """Sortable by arrival, unique: ``20261125T210455Z-3f9a0c1b2d4e``."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


# ------------------------------------------------------------------------------ reading bodies
def json_readings(body: bytes) -> pd.DataFrame:
    """``{"readings": [{"timestamp": T, "value": V} | [T, V], ...]}`` -> (ts_text, value) as
    received, one row per reading; a reading of another shape is kept with both cells None."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError(f"body is not JSON: {exc}") from None
    readings = document.get("readings") if isinstance(document, dict) else None
    if not isinstance(readings, list):
        raise BatchError('expected a JSON object {"readings": [{"timestamp": "...+01:00", "value": 1.5}, ...]}')
    shaped = [isinstance(r, dict) or (isinstance(r, list) and len(r) == 2) for r in readings]
    pairs = [(r.get("timestamp"), r.get("value")) if isinstance(r, dict) else tuple(r) if ok else (None, None)
             for r, ok in zip(readings, shaped)]
    frame = pd.DataFrame(pairs, columns=["ts_text", "value_raw"], dtype=object)
    frame["line_error"] = np.where(shaped, None, 'expected {"timestamp": "...", "value": 1.5} or ["...", 1.5]')
    return frame


def csv_readings(body: bytes, device: str, parameter: str) -> pd.DataFrame:
    """A REACH-shape CSV (``Dispositivo,Parametro,Data,Valore``, Data ISO 8601 with offset, Valore
    with a decimal point) -> (ts_text, value_raw); a line of another variable gets a reason."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchError(f"CSV body is not UTF-8: {exc}") from None
    try:
        header, *records = csv.reader(io.StringIO(text, newline=""), strict=True)
    except (csv.Error, ValueError) as exc:
        raise BatchError(f"CSV body: {'no header' if isinstance(exc, ValueError) else exc}") from None
    if header != REACH_HEADER:
        raise BatchError(f"CSV header: expected {','.join(REACH_HEADER)}, got {','.join(header)}")
    width = pd.Series([len(r) for r in records], dtype=int)
    frame = pd.DataFrame([r[:4] if len(r) >= 4 else r + [""] * (4 - len(r)) for r in records],
                         columns=REACH_HEADER, dtype=object).apply(lambda column: column.str.strip())
    readings = pd.DataFrame({"ts_text": frame["Data"], "value_raw": frame["Valore"]}, dtype=object)
    other = (frame["Dispositivo"] != device) | (frame["Parametro"] != parameter)
    readings["line_error"] = np.select(
        [width.ne(4).to_numpy(), other.to_numpy()],
        ["expected 4 fields (Dispositivo,Parametro,Data,Valore), got " + width.astype(str),
         "line of " + frame["Dispositivo"] + "." + frame["Parametro"] + f", not of this variable ({device}.{parameter})"],
        default=None)
    return readings


# ---------------------------------------------------------------------------------- validation
def _values(raw: pd.Series, kind: pd.Series) -> pd.Series:
    """JSON numbers as they are, numeric text of the parser's dot style as numbers, else NaN
    (``kind``: each cell's Python type; a bool is not a number)."""
    is_number = kind.isin([int, float])
    text = raw.where(~is_number).astype("string").str.strip()
    from_text = pd.to_numeric(text.where(text.str.fullmatch(DOT_NUMBER, na=False)).str.replace(",", ""), errors="coerce")
    return pd.Series(np.where(is_number, pd.to_numeric(raw.where(is_number), errors="coerce"), from_text),
                     index=raw.index, dtype=float)


def _first_reason(checks: list[tuple[pd.Series, object]], index: pd.Index) -> tuple[pd.Series, pd.Series]:
    """(reason of the first check that holds or None, whether any holds); NA counts as holding."""
    held = [pd.Series(c, index=index).fillna(True).to_numpy(dtype=bool) for c, _ in checks]
    reasons = [np.broadcast_to(np.asarray(r, dtype=object), len(index)) for _, r in checks]
    reason = pd.Series(np.select(held, reasons, default=None), index=index, dtype=object)
    return reason, pd.Series(np.logical_or.reduce(held), index=index)


def validate(readings: pd.DataFrame, source: SourceConfig, site: SiteConfig, variable_id: str,
             now: datetime | None = None) -> Batch:
    """Each reading good (``reason`` None) or rejected with the first reason that applies: its
    timestamp (offset, ISO 8601, whole seconds, inside the partitions), then its value (a finite
    number within the source's ``max_abs_value``), then duplicates (the later row wins)."""
    bounds, index = partition_range(site, now), readings.index
    text = readings["ts_text"].astype("string").str.strip()
    shown = text.fillna("").str.slice(0, 40)
    has_offset = text.str.contains(ISO_DATE, na=False) & text.str.contains(OFFSET, na=False)
    ts = pd.to_datetime(text.where(has_offset), format="ISO8601", utc=True, errors="coerce")
    raw = readings["value_raw"]
    kind = raw.map(type)  # JSON cells are Python objects: their type, looked up once
    value = _values(raw, kind)
    line_error = readings["line_error"]
    time_reason, bad_time = _first_reason([
        (line_error.notna(), line_error),
        (text.isna() | (text == ""), "missing timestamp"),
        (~has_offset, "timestamp '" + shown + "' has no UTC offset: expected ISO 8601 such as 2024-03-01T12:00:00+01:00"),
        (ts.isna(), "timestamp '" + shown + "' is not a valid ISO 8601 date and time"),
        (ts != ts.dt.floor("s"), "timestamp '" + shown + "' has fractions of a second: whole seconds expected"),
        ((ts < bounds.start) | (ts >= bounds.end), "timestamp '" + shown + f"' outside {bounds.label}"),
    ], index)
    value_reason, _ = _first_reason([
        (kind.eq(type(None)), "missing value"),
        (value.isna() & kind.ne(float), "value '" + raw.astype(str).str.slice(0, 40) + "' is not a number"),
        (~np.isfinite(value), "value " + raw.astype(str) + " is not finite"),
        (value.abs() > source.max_abs_value,
         "value " + value.astype(str) + f" beyond ±{source.max_abs_value:g} (source '{source.name}' max_abs_value)"),
    ], index)
    rows = pd.DataFrame({"ts_text": text, "value_raw": raw, "ts": ts, "value": value,
                         "reason": time_reason.where(bad_time, value_reason), "time_good": ~bad_time})
    return Batch(variable_id, _mark_duplicates(rows))


def _mark_duplicates(rows: pd.DataFrame) -> pd.DataFrame:
    """Two good readings at the same instant: the later row wins, as in a file (the parser
    rejects the earlier line as superseded)."""
    good = rows[rows["reason"].isna()]
    winner = good.reset_index().groupby("ts")["index"].transform("max").to_numpy()
    superseded = good.index.to_numpy() < winner
    rows.loc[good.index[superseded], "reason"] = [f"duplicate timestamp {t.isoformat()}: superseded by row {w}"
                                                  for t, w in zip(good["ts"][superseded], winner[superseded])]
    return rows


# ---------------------------------------------------------------------------------- landing
def _printable(values: pd.Series) -> pd.Series:
    """Text for a CSV cell: missing as empty, control characters (line breaks) as spaces."""
    return values.astype("string").fillna("").str.replace(CONTROL.pattern, " ", regex=True)


def landing_rows(batch: Batch, device: str, parameter: str) -> pd.DataFrame:
    """The batch as REACH lines in UTC (the ``api`` source's zone), bad rows kept so that the
    parser rejects them: the original timestamp text unless the timestamp was good (an ISO text
    never reads as ``HH:MM:SS DD/MM/YYYY``), the original value text unless it was finite."""
    rows = batch.rows
    data = np.where(rows["time_good"], _reach_times(rows["ts"]), _printable(rows["ts_text"]))
    value = np.where(np.isfinite(rows["value"]), rows["value"].map(repr), _printable(rows["value_raw"]))
    return pd.DataFrame({"Dispositivo": device, "Parametro": parameter, "Data": data, "Valore": value},
                        columns=REACH_HEADER, index=rows.index)


def _reach_times(ts: pd.Series) -> np.ndarray:
    """UTC instants as REACH local text ``HH:MM:SS DD/MM/YYYY`` (DuckDB: some ten times faster
    than pandas' strftime on a large batch); None where there is no instant."""
    frame = pd.DataFrame({"i": np.arange(len(ts)), "ts": ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()})
    with scratch() as con:
        con.register("batch", frame)
        return con.execute(f"SELECT strftime(ts, '{REACH_TIME_FORMAT}') FROM batch ORDER BY i").df().iloc[:, 0].to_numpy()


def write_landing(folder: Path, batch: Batch, device: str, parameter: str) -> Path:
    """Write the batch durably under its final name: temp file, fsync, rename, fsync folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target, temp = folder / batch.file_name, folder / f".{batch.file_name}.part"
    with open(temp, "w", encoding="utf-8", newline="") as handle:
        landing_rows(batch, device, parameter).to_csv(handle, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target
