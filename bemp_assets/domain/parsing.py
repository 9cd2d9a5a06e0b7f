"""Meter CSV exports -> long rows (variable_id, ts UTC, value, line) in DuckDB temp tables.

Two shapes are understood:

* **REACH long format**: ``Dispositivo,Parametro,Data,Valore``, local time
  ``HH:MM:SS DD/MM/YYYY``, decimal comma, one row per device, parameter and sample;
* **wide exports**: a timestamp column plus one column per variable, described in config.

The file is read by DuckDB's CSV reader with every field as text; numbers, dates and time
zones are then parsed set-based in SQL. A row that cannot be read becomes a *reject* with its
line number, raw text and reason; it never stops the rest of the file. A header that matches no
known shape fails the whole file (:class:`ParsedFile.error`) and nothing of it is used.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from .config import SourceConfig
from .timezones import localize

REACH_HEADER = ["Dispositivo", "Parametro", "Data", "Valore"]
REACH_TIME_FORMAT = "%H:%M:%S %d/%m/%Y"
# decimal comma with optional dot thousands separators: 12,8900 / -3 / 1.234,5
COMMA_NUMBER = r"[-+]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"
DOT_NUMBER = r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?([eE][-+]?\d+)?"
REJECT_COLUMNS = ["line", "field", "raw_text", "reason"]


class FileShapeError(ValueError):
    """The file's header matches no known shape; the whole file is rejected."""


@dataclass
class ParsedFile:
    """One parsed file. ``table`` names a temp table (variable_id, ts, value, line)."""

    path: Path
    source: str
    sha256: str
    table: str | None = None
    rows: int = 0
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    variables: pd.DataFrame = field(default_factory=pd.DataFrame)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # True when ``table`` holds at most one row per (variable_id, ts), so a merge need not rank
    unique_keys: bool = False
    # what raw.measurements.source_file and raw.rejects name: the file name, or an API endpoint
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.path.name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_header(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        raise FileShapeError(f"{path.name}: line 1: empty file, expected a CSV header")
    return [name.strip() for name in next(csv.reader(io.StringIO(first)))]


def check_header(path: Path, source: SourceConfig) -> list[str]:
    """Return the header, or raise FileShapeError saying what was expected."""
    header = read_header(path)
    if source.format == "reach":
        if header != REACH_HEADER:
            raise FileShapeError(
                f"{path.name}: line 1: header {','.join(header)!r} matches no known shape; "
                f"expected the REACH header {','.join(REACH_HEADER)!r} (source '{source.name}')"
            )
        return header
    wanted = [source.timestamp.column] + [c.column for c in source.columns]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise FileShapeError(
            f"{path.name}: line 1: header lacks column(s) {missing} that source '{source.name}' "
            f"expects (timestamp column {source.timestamp.column!r} and the configured value columns)"
        )
    return header


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number_sql(expr: str, decimal: str) -> str:
    """SQL turning trimmed text into DOUBLE, or NULL when it is not a number of that style."""
    if decimal == ",":
        return (f"CASE WHEN regexp_full_match({expr}, '{COMMA_NUMBER}') "
                f"THEN CAST(replace(replace({expr}, '.', ''), ',', '.') AS DOUBLE) END")
    return (f"CASE WHEN regexp_full_match({expr}, '{DOT_NUMBER}') "
            f"THEN CAST(replace({expr}, ',', '') AS DOUBLE) END")


class _FileReader:
    """Reads one CSV into a temp table of text fields and maps table rows to file lines."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, header: list[str], prefix: str):
        self.con, self.path, self.prefix = con, path, prefix
        columns = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in header) + "}"
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {prefix}_csv AS
            SELECT * FROM read_csv({_sql_str(str(path))}, header = true, auto_detect = false,
                columns = {columns}, delim = ',', quote = '"', escape = '"',
                store_rejects = true, rejects_table = '{prefix}_rej', rejects_scan = '{prefix}_scan')
        """)
        self.rows = con.execute(f"SELECT count(*) FROM {prefix}_csv").fetchone()[0]
        self.structural = con.execute(f"""
            SELECT line, trim(min(csv_line), chr(10) || chr(13)) AS raw_text,
                   string_agg(DISTINCT error_type || ': ' || error_message, '; ') AS reason
            FROM {prefix}_rej GROUP BY line ORDER BY line
        """).df()
        self._data: bytes | None = None
        self._lines = self._line_numbers()

    def _bytes(self) -> bytes:
        if self._data is None:
            self._data = self.path.read_bytes()
        return self._data

    def _line_numbers(self) -> np.ndarray | None:
        """File line of each table row, or None when it is simply rowid + 2 (the usual case)."""
        data = self._bytes()
        total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        skipped = set(int(x) for x in self.structural["line"])
        if self.rows + len(skipped) + 1 == total and not skipped:
            return None
        blank = {data.count(b"\n", 0, m.start()) + 1 for m in re.finditer(rb"(?m)^[ \t]*\r?$", data)}
        skipped |= {b for b in blank if b <= total}
        lines = np.array(sorted(set(range(2, total + 1)) - skipped), dtype=np.int64)
        return lines if len(lines) == self.rows else np.arange(2, self.rows + 2)

    def line_join(self, alias: str) -> tuple[str, str]:
        """(JOIN clause, SQL expression) giving the file line of rows of ``alias`` by rowid."""
        if self._lines is None:
            return "", f"({alias}.rid + 2)"
        frame = pd.DataFrame({"rid": np.arange(len(self._lines)), "line": self._lines})
        self.con.register(f"{self.prefix}_lines_df", frame)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.prefix}_lines AS SELECT * FROM {self.prefix}_lines_df")
        self.con.unregister(f"{self.prefix}_lines_df")
        return f"LEFT JOIN {self.prefix}_lines l ON l.rid = {alias}.rid", "l.line"

    def raw_text(self, lines: pd.Series) -> list[str]:
        text = self._bytes().decode("utf-8", errors="replace").splitlines()
        return [text[n - 1] if 0 < n <= len(text) else "" for n in lines]

    def drop(self) -> None:
        # the reject tables too: a later file parsed with the same prefix must not inherit them
        for suffix in ("csv", "lines", "rej", "scan"):
            self.con.execute(f"DROP TABLE IF EXISTS {self.prefix}_{suffix}")


def _reach_rows(reader: _FileReader, source: SourceConfig) -> str:
    """Temp table of REACH rows with parsed fields and a reason where they are bad."""
    con, p = reader.con, reader.prefix
    params = pd.DataFrame([
        {"original": name, "parameter": spec.parameter, "unit": spec.unit, "kind": spec.kind,
         "category": spec.category or source.category}
        for name, spec in source.parameters.items()
    ], columns=["original", "parameter", "unit", "kind", "category"])
    con.register(f"{p}_params", params)
    value = _number_sql("trim(Valore)", source.decimal_separator)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_rows AS
        WITH f AS (
            SELECT rowid AS rid, trim(Dispositivo) AS device, trim(Parametro) AS original,
                   trim(Data) AS raw_date, trim(Valore) AS raw_value,
                   try_strptime(trim(Data), '{REACH_TIME_FORMAT}') AS local_ts,
                   {value} AS value
            FROM {p}_csv
        )
        SELECT f.rid, f.local_ts, f.value, f.device, f.original,
               coalesce(m.parameter, trim(regexp_replace(lower(f.original), '[^a-z0-9]+', '_', 'g'), '_')) AS parameter,
               m.unit, coalesce(m.kind, 'instantaneous') AS kind, coalesce(m.category, {_sql_str(source.category or '')}) AS category,
               f.device || '.' || coalesce(m.parameter, trim(regexp_replace(lower(f.original), '[^a-z0-9]+', '_', 'g'), '_')) AS series,
               '' AS field,
               CASE
                   WHEN coalesce(f.device, '') = '' THEN 'missing device (Dispositivo)'
                   WHEN coalesce(f.original, '') = '' THEN 'missing parameter (Parametro)'
                   WHEN f.local_ts IS NULL THEN 'bad date ' || coalesce('''' || f.raw_date || '''', 'NULL')
                        || ': expected HH:MM:SS DD/MM/YYYY'
                   WHEN f.value IS NULL THEN 'bad number ' || coalesce('''' || f.raw_value || '''', 'NULL')
                        || ': expected a decimal-comma number such as 12,8900'
               END AS reason
        FROM f LEFT JOIN {p}_params m ON m.original = f.original
    """)
    con.unregister(f"{p}_params")
    return f"{p}_rows"


def _wide_rows(reader: _FileReader, source: SourceConfig) -> str:
    """Temp table of wide-export cells (one row per timestamp and configured column)."""
    con, p, spec = reader.con, reader.prefix, source.timestamp
    ts_col = '"' + spec.column.replace('"', '""') + '"'
    local = f"try_strptime(trim({ts_col}), {_sql_str(spec.format)})"
    if spec.midnight_is_end_of_day:
        local = f"(CASE WHEN {local}::TIME = TIME '00:00' THEN {local} + INTERVAL 1 DAY ELSE {local} END)"
    cells = []
    for col in source.columns:
        quoted = '"' + col.column.replace('"', '""') + '"'
        cells.append(f"""
            SELECT rowid AS rid, {local} AS local_ts, trim({ts_col}) AS raw_date,
                   trim({quoted}) AS raw_value, {_number_sql(f'trim({quoted})', source.decimal_separator)} AS value,
                   {_sql_str(source.device)} AS device, {_sql_str(col.column)} AS original,
                   {_sql_str(col.parameter)} AS parameter, {_sql_str(col.unit) if col.unit else 'NULL'} AS unit,
                   {_sql_str(col.kind)} AS kind, {_sql_str(col.category or source.category or '')} AS category,
                   {_sql_str(col.column)} AS field
            FROM {p}_csv WHERE coalesce(trim({quoted}), '') <> ''""")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_rows AS
        SELECT rid, local_ts, value, device, original, parameter, unit, kind, category,
               device || '.' || parameter AS series,
               CASE WHEN local_ts IS NULL THEN {_sql_str(spec.column)} ELSE field END AS field,
               CASE
                   WHEN local_ts IS NULL THEN 'bad date ' || coalesce('''' || raw_date || '''', 'NULL')
                        || ': expected format ' || {_sql_str(spec.format)}
                   WHEN value IS NULL THEN 'bad number ''' || raw_value || ''' in column '
                        || original || ': expected a number with ''{source.decimal_separator}'' as decimal mark'
               END AS reason
        FROM ({' UNION ALL '.join(cells)})
    """)
    return f"{p}_rows"


def parse_file(con: duckdb.DuckDBPyConnection, path: Path, source: SourceConfig, tz: str,
               prefix: str) -> ParsedFile:
    """Parse ``path`` as ``source`` into temp table ``prefix`` on ``con``."""
    path = Path(path)
    parsed = ParsedFile(path=path, source=source.name, sha256=file_sha256(path))
    try:
        header = check_header(path, source)
    except FileShapeError as exc:
        parsed.error = str(exc)
        return parsed
    if source.format == "wide":
        known = {source.timestamp.column, *source.ignore_columns, *(c.column for c in source.columns)}
        extra = [h for h in header if h not in known]
        if extra:
            parsed.warnings.append(f"{path.name}: columns not in config, not stored: {extra}")
    reader = _FileReader(con, path, header, prefix)
    rows = (_reach_rows if source.format == "reach" else _wide_rows)(reader, source)
    shift = f" - INTERVAL {source.expected_interval} SECOND" if source.format == "wide" and source.timestamp.label == "end" else ""
    if source.format == "reach":  # one row per line already: a view, nothing to group or store
        local = f"{prefix}_local_view"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {local} AS "
                    f"SELECT rid, series, local_ts FROM {rows} WHERE reason IS NULL")
    else:
        local = f"{prefix}_local"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {local} AS "
                    f"SELECT rid, min(series) AS series, local_ts FROM {rows} WHERE reason IS NULL GROUP BY rid, local_ts")
    localize(con, local, tz, f"{prefix}_tz", source.expected_interval)
    line_join, line = reader.line_join("r")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_all AS
        SELECT r.series, r.field, r.value, t.ts{shift} AS ts,
               coalesce(r.reason, CASE WHEN t.nonexistent THEN 'local time '
                   || strftime(r.local_ts, '%Y-%m-%d %H:%M:%S') || ' does not exist in {tz} (DST spring gap)' END) AS why,
               {line} AS line
        FROM {rows} r LEFT JOIN {prefix}_tz t ON t.rid = r.rid {line_join}
    """)
    # Within one file the last line for a (variable, ts) wins; earlier ones are quarantined.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_dups AS
        SELECT line, field, series, ts,
               max(line) OVER (PARTITION BY series, ts) AS winner
        FROM {prefix}_all WHERE why IS NULL
        QUALIFY count(*) OVER (PARTITION BY series, ts) > 1 AND line < winner
    """)
    parsed.rows = con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {prefix} AS
        SELECT a.series AS variable_id, a.ts, a.value, a.line::INTEGER AS line
        FROM {prefix}_all a ANTI JOIN {prefix}_dups d ON a.line = d.line AND a.field = d.field
        WHERE a.why IS NULL
    """).fetchone()[0]
    parsed.table = prefix
    # The last line wins above, so keys are unique unless one line holds several cells of the
    # same variable: impossible in REACH (one cell a line), and in a wide file only when two
    # configured columns share a parameter.
    parameters = [c.parameter for c in source.columns]
    parsed.unique_keys = source.format == "reach" or len(set(parameters)) == len(parameters)
    parsed.variables = con.execute(f"""
        SELECT series AS variable_id, any_value(device) AS device, any_value(parameter) AS parameter,
               any_value(original) AS original_name, any_value(unit) AS unit, any_value(kind) AS kind,
               nullif(any_value(category), '') AS category
        FROM {rows} ANTI JOIN (SELECT rid FROM {prefix}_tz WHERE nonexistent) USING (rid)
        WHERE reason IS NULL GROUP BY series ORDER BY series
    """).df()
    value_rejects = con.execute(f"""
        SELECT DISTINCT line, field, why AS reason FROM {prefix}_all WHERE why IS NOT NULL
        UNION ALL
        SELECT line, field, 'duplicate of ' || series || ' at ' || strftime(ts, '%Y-%m-%d %H:%M:%S UTC')
               || ': superseded by line ' || winner AS reason FROM {prefix}_dups
    """).df()
    value_rejects.insert(2, "raw_text", reader.raw_text(value_rejects["line"]) if len(value_rejects) else [])
    structural = reader.structural.assign(field="")[REJECT_COLUMNS]
    frames = [f for f in (structural, value_rejects[REJECT_COLUMNS]) if len(f)]
    if frames:
        parsed.rejects = pd.concat(frames, ignore_index=True).sort_values(["line", "field"], ignore_index=True)
    con.execute(f"DROP VIEW IF EXISTS {prefix}_local_view")
    for suffix in ("_rows", "_local", "_tz", "_tz_map", "_all", "_dups"):
        con.execute(f"DROP TABLE IF EXISTS {prefix}{suffix}")
    reader.drop()
    return parsed
