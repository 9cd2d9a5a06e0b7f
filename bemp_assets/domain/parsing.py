"""Meter CSV exports -> long rows (variable_id, ts UTC, value, line) in DuckDB temp tables.

Two shapes are understood:

* **REACH long format**: ``Dispositivo,Parametro,Data,Valore``, local time
  ``HH:MM:SS DD/MM/YYYY``, decimal comma, one row per device, parameter and sample;
* **wide exports**: a timestamp column plus one column per variable, described in config.

Each file is handled on its own. It is scanned once (hash, line count, decoding in the source's
``encoding``): a UTF-8 file in a thread while DuckDB's CSV reader reads it, any other first, as it
is transcoded to a temporary UTF-8 copy that the reader then reads. The reader takes every field
as text; numbers, dates and time zones are parsed set-based in SQL. The rows are stored twice:
the reader's text table (its row ids give the file lines exactly) and one table of records with
their UTC instant, line and reject reason, built in one statement from the distinct names and
dates (parsed once each) and the time map. A record names its variable by number (``series_no``),
not by string; that table becomes the file's readings in place (rejects deleted), under a view
that gives each its variable_id (:func:`drop_staged` drops both). The in-file duplicate window runs only when
some key repeats. A line that cannot be used becomes a *reject* with its line number, its own
text and a reason; it never stops the rest of the file. A file that cannot be decoded, is not
text, or whose header matches no known shape is rejected whole (:class:`ParsedFile.error`, one
reject row) and nothing of it is used. Nothing in a file's content raises.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import re
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from itertools import chain
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd

from .config import SiteConfig, SourceConfig
from .timezones import local_time_map, second_pass

REACH_HEADER = ["Dispositivo", "Parametro", "Data", "Valore"]
REACH_TIME_FORMAT = "%H:%M:%S %d/%m/%Y"
# decimal comma with optional dot thousands separators: 12,8900 / -3 / 1.234,5
COMMA_NUMBER = r"[-+]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"
DOT_NUMBER = r"[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?([eE][-+]?\d+)?"
# the same without thousands separators (or exponent): what nearly every cell holds
PLAIN_COMMA_NUMBER = r"[-+]?\d+(,\d+)?"
PLAIN_DOT_NUMBER = r"[-+]?\d+(\.\d+)?"
REJECT_COLUMNS = ["line", "field", "raw_text", "reason"]
# control characters (C0, DEL, C1; tab excepted) make a header unusable
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
CONTROL_SQL = "[\\x00-\\x1f\\x7f-\\x9f]"  # RE2, for device and parameter names: tab included
SCAN_BLOCK = 1 << 20
HEADER_LIMIT = 64 * 1024
# a delimiter no meter export contains: DuckDB then returns each physical line as one field
LINE_DELIM = "\x1f\x1e\x1d\x1c"
# bytes a line may have to be shown in a reject (DuckDB's CSV rows stop at 2 MB); the line
# reader's buffer is set to the same size: left to DuckDB it is 16 lines long (1 GiB), a block
# a session under its memory cap (warehouse.DEFAULT_MEMORY_LIMIT) cannot have
MAX_LINE = 64 << 20
SHOWN_TEXT = 4096     # characters of a rejected line kept in raw.rejects.raw_text
UTF8 = ("utf-8", "utf-8-sig")
# what DuckDB raises when a file's content defeats its CSV reader (not I/O or memory trouble)
CONTENT_ERRORS = (duckdb.InvalidInputException, duckdb.BinderException, duckdb.ConversionException)


class FileShapeError(ValueError):
    """The file cannot be read as a CSV of its source; the whole file is rejected.

    ``line`` is the line the reject row names: 1 for the header, 0 for the file as a whole."""

    def __init__(self, message: str, line: int = 1):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class TimeRange:
    """Instants a reading may have (UTC, ``start`` inclusive, ``end`` exclusive); ``label``
    says in a reject which range it is."""

    start: datetime
    end: datetime
    label: str


# without a site: what pandas and every layer can represent, with room to spare
SUPPORTED_RANGE = TimeRange(datetime(1900, 1, 1, tzinfo=timezone.utc), datetime(2200, 1, 1, tzinfo=timezone.utc),
                            "the supported range 1900-01-01 .. 2199-12-31")


def partition_range(site: SiteConfig, now: datetime | None = None) -> TimeRange:
    """The partitions' span: ``site.start_date`` 00:00 up to the end of today, site-local."""
    tz = ZoneInfo(site.timezone)
    today = (now or datetime.now(timezone.utc)).astimezone(tz).date()
    start = datetime.combine(site.start_date, time(), tz).astimezone(timezone.utc)
    end = datetime.combine(today + timedelta(days=1), time(), tz).astimezone(timezone.utc)
    return TimeRange(start, end, f"the partitions {site.start_date} .. {today} (site.start_date .. today, {site.timezone})")


@dataclass
class StagedReadings:
    """Readings staged for a merge into raw (:func:`warehouse.ingest`): a parsed file, or an HTTP
    batch (:func:`raw_ingest.ingest_readings`). ``table`` names a temp table or view (variable_id,
    ts, value, line); ``variables`` is their catalogue (meta.variables' descriptive columns)."""

    source: str = ""
    # what raw.measurements.source_file and raw.rejects name: the file name, or an API endpoint
    label: str = ""
    sha256: str = ""
    table: str | None = None
    rows: int = 0
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    variables: pd.DataFrame = field(default_factory=pd.DataFrame)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    # True when ``table`` holds at most one row per (variable_id, ts), so a merge need not rank
    unique_keys: bool = False
    lines: int = 0          # physical lines, header included (0 for a batch)
    blank_lines: int = 0    # empty lines: nothing to read
    missing_cells: int = 0  # empty value cells of wide lines that were read (not readings, not rejects)

    @property
    def name(self) -> str:
        return self.label

    @property
    def records(self) -> int:
        """Readings and rejects this file or batch yielded; each ends stored, folded, outside the
        run's window (readings) or in raw.rejects (rejects). A file rejected whole yields one reject."""
        return self.rows + len(self.rejects)


@dataclass
class ParsedFile(StagedReadings):
    """One parsed file (:func:`parse_file`), named by its file name unless ``label`` says otherwise."""

    path: Path = Path()

    @property
    def name(self) -> str:
        return self.label or self.path.name


# --------------------------------------------------------------------------- bytes -> UTF-8 text

@dataclass
class TextScan:
    """A file scanned once: its hash, physical lines, and a UTF-8 path DuckDB can read (the
    file itself, or a transcoded temporary copy). ``error`` says why it is not text.

    A scan begun beside other work (:func:`utf8_text` with ``beside``) fills in ``sha256``,
    ``lines`` and ``error`` only once :meth:`done` has returned."""

    name: str
    path: Path
    sha256: str
    lines: int = 0
    error: str | None = None
    error_text: str = ""
    _worker: threading.Thread | None = None
    _failure: BaseException | None = None

    def done(self) -> "TextScan":
        """Wait for a scan running beside; re-raise what stopped it (an OSError, say)."""
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if self._failure is not None:
            raise self._failure
        return self


@contextmanager
def utf8_text(path: Path, source: SourceConfig, beside: bool = False) -> Iterator[TextScan]:
    """Scan ``path`` in the source's encoding, in bounded memory (1 MiB blocks).

    UTF-8 files (a byte-order mark is allowed) are read in place. Any other encoding is
    transcoded to a temporary UTF-8 copy, deleted on exit: DuckDB's own ``encoding`` option
    knows only utf-8, utf-16 and latin-1 without a downloaded extension, and one UTF-8 path
    keeps line numbers and raw text identical for every encoding.

    ``beside``: a file read in place is scanned in a thread while the caller goes on (DuckDB
    can read it meanwhile: hashing releases the GIL); call :meth:`TextScan.done` before using
    the scan's results. A copy has to be complete before it is read, so it is made at once.
    """
    path = Path(path)
    codec = codecs.lookup(source.encoding).name
    copy = None
    if codec not in UTF8:
        handle, name = tempfile.mkstemp(prefix="bemp-", suffix=".csv")
        os.close(handle)
        copy = Path(name)
    scan = TextScan(name=path.name, path=copy or path, sha256="")
    try:
        if beside and copy is None:
            scan._worker = threading.Thread(target=_scan_beside, args=(scan, path, source, codec), daemon=True)
            scan._worker.start()
        else:
            _scan(scan, path, source, codec, copy)
        yield scan
    finally:
        if scan._worker is not None:
            scan._worker.join()
        if copy is not None:
            copy.unlink(missing_ok=True)


def _scan_beside(scan: TextScan, path: Path, source: SourceConfig, codec: str) -> None:
    try:
        _scan(scan, path, source, codec, None)
    except BaseException as exc:  # handed to the caller by TextScan.done
        scan._failure = exc


def _scan(scan: TextScan, path: Path, source: SourceConfig, codec: str, copy: Path | None) -> None:
    """Fill ``scan`` in: hash, lines, and the first decoding error; write ``copy`` if given."""
    digest, decoder = hashlib.sha256(), codecs.getincrementaldecoder(codec)()
    newlines, offset, last = 0, 0, b""
    with open(path, "rb") as src, (open(copy, "wb") if copy else nullcontext()) as out:
        # the trailing None flushes the decoder: a character cut off at the end is an error too
        for block in chain(iter(lambda: src.read(SCAN_BLOCK), b""), [None]):
            data = block or b""
            digest.update(data)
            if scan.error is None and not (out is None and _plain_ascii(data, decoder)):
                try:
                    text = decoder.decode(data, final=block is None)
                except UnicodeDecodeError as exc:
                    _decode_error(scan, exc, data, offset, newlines, source, codec)
                else:
                    if out:
                        data = text.encode("utf-8")
                        out.write(data)
            newlines += data.count(b"\n")  # after a decoding error: the raw bytes' lines
            last = data[-1:] or last
            offset += len(block or b"")
    scan.sha256 = digest.hexdigest()
    scan.lines = newlines + (1 if last not in (b"", b"\n") else 0)


def _plain_ascii(data: bytes, decoder: codecs.IncrementalDecoder) -> bool:
    """Whether a block read in place needs no decoding to be known valid: ASCII is valid UTF-8,
    and no character begun in the previous block awaits its end. Checking is ten times faster
    than decoding, and nearly every export is ASCII."""
    return data.isascii() and not decoder.getstate()[0]


def _decode_error(scan: TextScan, exc: UnicodeDecodeError, block: bytes, offset: int, newlines: int,
                  source: SourceConfig, codec: str) -> None:
    """Record where decoding failed: byte offset, line, and the text of that line."""
    # the decoder's input is the bytes of a character begun in the previous block, then ``block``
    at = exc.start - (len(exc.object) - len(block))
    inside = min(max(at, 0), len(block))
    line = newlines + block.count(b"\n", 0, inside) + 1
    start, end = block.rfind(b"\n", 0, inside) + 1, block.find(b"\n", inside)
    scan.error_text = printable(block[start:end if end >= 0 else len(block)].decode(codec, errors="backslashreplace"))
    hint = " (it holds NUL bytes: a binary file, or UTF-16 text?)" if b"\x00" in block else ""
    scan.error = (f"{scan.name}: line {line}: not valid {codec} at byte {offset + at} "
                  f"(0x{exc.object[exc.start]:02x}){hint}; "
                  f"declare `encoding:` for source '{source.name}' in sources.yaml (e.g. latin-1, cp1252)")


def printable(text: str, limit: int = 200) -> str:
    """``text`` shortened, control characters written as \\xNN (for a reject of a whole file)."""
    shown = "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _first_line(path: Path) -> tuple[bytes, bool]:
    """The first line's bytes (without its end) and whether it ended within HEADER_LIMIT."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_LIMIT)
    end = re.search(rb"\r\n|\r|\n", head)
    return (head[:end.start()], True) if end else (head, len(head) < HEADER_LIMIT)


def first_line_text(path: Path, encoding: str = "utf-8") -> str:
    """Line 1 as a reject shows it: decoded leniently, bounded, control characters escaped."""
    raw, _ = _first_line(path)
    codec = codecs.lookup(encoding).name
    return printable(raw.decode("utf-8-sig" if codec in UTF8 else codec, errors="backslashreplace"))


def read_header(path: Path, encoding: str = "utf-8-sig", name: str | None = None) -> list[str]:
    """Header fields of an (ASCII-compatible) text file; FileShapeError for anything else.

    Reads at most 64 KiB, so a binary file without line ends costs nothing."""
    name = name or Path(path).name
    raw, ended = _first_line(path)
    if not ended:
        raise FileShapeError(f"{name}: line 1: no line end in the first {HEADER_LIMIT // 1024} KiB: "
                             "not a CSV header (binary file?)")
    try:
        first = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FileShapeError(f"{name}: line 1: not valid {encoding} at byte {exc.start}") from None
    if not first.strip():
        what = "empty file" if Path(path).stat().st_size == 0 else "empty line"
        raise FileShapeError(f"{name}: line 1: {what}, expected a CSV header")
    control = CONTROL.search(first)
    if control:
        raise FileShapeError(f"{name}: line 1: control character 0x{ord(control.group()):02x} at position "
                             f"{control.start() + 1} of the header: not a CSV text file (binary, or another encoding?)")
    # an unnamed column (a trailing comma) gets DuckDB's positional name
    header = [column.strip() or f"column{i}" for i, column in enumerate(next(csv.reader(io.StringIO(first))), start=1)]
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FileShapeError(f"{name}: line 1: column name(s) {repeated} appear more than once in the header")
    return header


def check_header(text: TextScan, source: SourceConfig) -> list[str]:
    """Return the header, or raise FileShapeError saying what was expected."""
    header = read_header(text.path, name=text.name)
    if source.format == "reach":
        if header != REACH_HEADER:
            raise FileShapeError(
                f"{text.name}: line 1: header {','.join(header)!r} matches no known shape; "
                f"expected the REACH header {','.join(REACH_HEADER)!r} (source '{source.name}')"
            )
        return header
    wanted = [source.timestamp.column] + [c.column for c in source.columns]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise FileShapeError(
            f"{text.name}: line 1: header lacks column(s) {missing} that source '{source.name}' "
            f"expects (timestamp column {source.timestamp.column!r} and the configured value columns)"
        )
    return header


# --------------------------------------------------------------------------- SQL pieces

def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A column name quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def read_csv_sql(path: Path, header: list[str], options: str = "") -> str:
    """DuckDB's ``read_csv`` over a CSV with this header: every column text, ',' and '"'."""
    columns = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in header) + "}"
    return (f"read_csv({_sql_str(str(path))}, header = true, auto_detect = false, columns = {columns}, "
            f"delim = ',', quote = '\"', escape = '\"'{options})")


def _ts_sql(instant: datetime) -> str:
    return f"TIMESTAMPTZ '{instant.astimezone(timezone.utc).isoformat()}'"


def _number_sql(expr: str, decimal: str, trimmed: bool = True) -> str:
    """SQL turning text into DOUBLE, or NULL when it is not a number of that style.

    Most cells are plain (digits, a sign, one decimal mark): a simpler pattern settles those
    and needs no thousands separators removed; the full pattern runs only on the rest (about
    10 % of a parse). Both branches give the same double for a plain number. ``expr`` not yet
    ``trimmed``: the plain pattern is tried on it as written (a match holds no space, so its
    trim would be itself; trimming every cell cost a third of the conversion), and only the
    rest is trimmed and tried again."""
    plain, full = (PLAIN_COMMA_NUMBER, COMMA_NUMBER) if decimal == "," else (PLAIN_DOT_NUMBER, DOT_NUMBER)
    as_written = expr
    if not trimmed:
        expr = f"trim({expr})"

    def plain_value(text: str) -> str:
        return f"TRY_CAST(replace({text}, ',', '.') AS DOUBLE)" if decimal == "," else f"TRY_CAST({text} AS DOUBLE)"
    full_value = (f"TRY_CAST(replace(replace({expr}, '.', ''), ',', '.') AS DOUBLE)" if decimal == ","
                  else f"TRY_CAST(replace({expr}, ',', '') AS DOUBLE)")
    untrimmed = "" if trimmed else f"WHEN regexp_full_match({as_written}, '{plain}') THEN {plain_value(as_written)} "
    return (f"CASE {untrimmed}WHEN regexp_full_match({expr}, '{plain}') THEN {plain_value(expr)} "
            f"WHEN regexp_full_match({expr}, '{full}') THEN {full_value} END")


def _coded_sql(expr: str, codes: dict[str, float]) -> str:
    """SQL turning a label of a coded text column (wide ``codes``) into its number, NULL otherwise."""
    branches = " ".join(f"WHEN {_sql_str(label)} THEN {float(code)!r}" for label, code in codes.items())
    return f"(CASE {expr} {branches} END)::DOUBLE"


def _quoted(expr: str) -> str:
    """``'text'`` for a reason, cut at 40 characters (a 400-digit number stays readable)."""
    return (f"coalesce('''' || CASE WHEN length({expr}) > 40 THEN left({expr}, 40) || '…' ELSE {expr} END "
            f"|| '''', 'NULL')")


def _value_reason(value: str, raw: str, source: SourceConfig, expected: str) -> str:
    """CASE branches rejecting a cell that is not a usable number: unreadable, not finite, too large."""
    limit = source.max_abs_value
    return f"""
        WHEN {value} IS NULL THEN 'bad number ' || {_quoted(raw)} || {_sql_str(expected)}
        WHEN NOT isfinite({value}) THEN 'number ' || {_quoted(raw)} || ' is not finite (beyond the range of a double)'
        WHEN abs({value}) > {limit!r} THEN 'number ' || {_quoted(raw)}
             || ' beyond ±{limit:g} (source ''{source.name}'' max_abs_value)'"""


def _outside(local: str, bounds: TimeRange, margin_days: int = 3) -> tuple[str, str]:
    """(condition, reason) for a local timestamp surely outside ``bounds``: checked before time
    zones are applied (whatever the zone, it is more than ``margin_days`` away), so a date like
    31/12/9999 never reaches pandas. The exact check follows on the UTC instant."""
    lo = (bounds.start - timedelta(days=margin_days)).replace(tzinfo=None)
    hi = (bounds.end + timedelta(days=margin_days)).replace(tzinfo=None)
    return (f"({local} < TIMESTAMP '{lo.isoformat()}' OR {local} >= TIMESTAMP '{hi.isoformat()}')",
            _range_reason(local, bounds))


def _range_reason(local: str, bounds: TimeRange) -> str:
    return f"'time ' || strftime({local}, '%Y-%m-%d %H:%M:%S') || ' is outside ' || {_sql_str(bounds.label)}"


def _date_reason(local: str, raw: str, column: str, expected: str, bounds: TimeRange) -> str:
    """CASE branches rejecting a line by its timestamp: the header again, unreadable, out of range."""
    outside, why = _outside(local, bounds)
    return f"""
        WHEN {raw} = {_sql_str(column)} THEN 'the header repeated on this line (files joined together?)'
        WHEN {local} IS NULL THEN 'bad date ' || {_quoted(raw)} || {_sql_str(': expected ' + expected)}
        WHEN {outside} THEN {why}"""


# --------------------------------------------------------------------------- the CSV reader

class _FileReader:
    """Reads one CSV into temp table ``<prefix>_csv`` (every field text) and maps its rows to
    physical file lines (``<prefix>_lines``), so every line is a row, a reject or blank.

    DuckDB's reader does the work. When its rows, rejects and blank lines do not add up to the
    file's lines, some record spanned lines (an unterminated quote swallows the next line):
    the file is then split line by line in SQL instead, each line judged on its own text.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, text: TextScan, header: list[str], prefix: str):
        self.con, self.text, self.header, self.prefix = con, text, header, prefix
        self.lines, self.blank_lines, self._text_loaded, self._mapped = 0, 0, False, False
        options = f", store_rejects = true, rejects_table = '{prefix}_rej', rejects_scan = '{prefix}_scan'"
        self.rows = con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_csv AS "
                                f"SELECT * FROM {read_csv_sql(text.path, header, options)}").fetchone()[0]
        _scanned(text)  # it ran beside the read (a third of the read's time, saved)
        self.lines = text.lines
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {prefix}_struct AS
            SELECT line, string_agg(DISTINCT error_type || ': ' || error_message, '; ') AS reason
            FROM {prefix}_rej GROUP BY line
        """)
        structural = con.execute(f"SELECT count(*) FROM {prefix}_struct").fetchall()[0][0]
        if self.rows + 1 == text.lines and not structural:
            return  # the usual case: row i is line i + 2
        self.load_text()
        # DuckDB's count: it also ends lines at a lone carriage return
        self.lines, self.blank_lines = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE text IS NULL AND line > 1) FROM {prefix}_text").fetchall()[0]
        if self.rows + structural + self.blank_lines + 1 != self.lines:
            self._split_lines()
        else:
            self._map(f"SELECT line FROM {prefix}_text WHERE line > 1 AND text IS NOT NULL "
                      f"AND line NOT IN (SELECT line FROM {prefix}_struct)")

    def load_text(self) -> None:
        """``<prefix>_text``(line, text): every physical line as written (NULL when empty).

        Not strict: a line holding LINE_DELIM keeps its place, its text cut there. A line
        longer than MAX_LINE makes the file unreadable (DuckDB raises)."""
        if self._text_loaded:
            return
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {self.prefix}_lines_raw AS
            SELECT l AS text FROM read_csv({_sql_str(str(self.text.path))}, header = false, auto_detect = false,
                columns = {{'l': 'VARCHAR'}}, delim = {_sql_str(LINE_DELIM)}, quote = '', escape = '',
                strict_mode = false, max_line_size = {MAX_LINE}, buffer_size = {MAX_LINE})
        """)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.prefix}_text AS "
                         f"SELECT rowid + 1 AS line, text FROM {self.prefix}_lines_raw")
        self.con.execute(f"DROP TABLE {self.prefix}_lines_raw")
        self._text_loaded = True

    def _map(self, lines_sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {self.prefix}_lines AS "
                         f"SELECT row_number() OVER (ORDER BY line) - 1 AS rid, line FROM ({lines_sql})")
        self._mapped = True

    def _split_lines(self) -> None:
        """Replace DuckDB's reading by one record per physical line: a line that is not exactly
        the header's fields (quoted fields closing on the same line) is a structural reject."""
        p, n = self.prefix, len(self.header)
        cell = '("(?:[^"]|"")*"|[^,"]*)'
        pattern = _sql_str("^" + ",".join([cell] * n) + "$")
        names = "[" + ", ".join(f"'c{i}'" for i in range(n)) + "]"
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {p}_split AS
            SELECT line, text, regexp_matches(text, {pattern}) AS ok, regexp_extract(text, {pattern}, {names}) AS f
            FROM {p}_text WHERE line > 1 AND text IS NOT NULL
        """)
        fields = ", ".join(
            f"CASE WHEN starts_with(f.c{i}, '\"') THEN replace(f.c{i}[2:-2], '\"\"', '\"') ELSE f.c{i} END "
            f"AS {ident(name)}" for i, name in enumerate(self.header))
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {p}_csv AS SELECT {fields} FROM {p}_split WHERE ok ORDER BY line")
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {p}_struct AS
            SELECT line, CASE WHEN (length(text) - length(replace(text, '"', ''))) % 2 = 1
                              THEN 'unterminated quote: a quoted field must close on the line it opens'
                              ELSE 'expected {n} fields separated by '','' (quoted where they hold a comma), as in the header'
                         END AS reason
            FROM {p}_split WHERE NOT ok
        """)
        self.rows = self.con.execute(f"SELECT count(*) FROM {p}_csv").fetchall()[0][0]
        self._map(f"SELECT line FROM {p}_split WHERE ok")
        self.con.execute(f"DROP TABLE {p}_split")

    def line_join(self, alias: str) -> tuple[str, str]:
        """(JOIN clause, SQL expression) giving the file line of rows of ``alias`` by rid."""
        if not self._mapped:
            return "", f"({alias}.rid + 2)"
        return f"LEFT JOIN {self.prefix}_lines l ON l.rid = {alias}.rid", "l.line"


# --------------------------------------------------------------------------- the two shapes

@dataclass(frozen=True)
class _Shape:
    """What a file shape hands the common steps (:func:`_parse_rows`): SQL relations over the
    reader's rows, none of them stored, so the file's rows are materialised once, as records.

    * ``records``: rid, variable_id, ``series_no`` (a number per variable_id, from 0; see
      :func:`_count_records`), field (a wide cell's column; NULL in REACH, where a line holds
      one value: an empty string on every reading cost a twentieth of the records' statement),
      value, reason (NULL when usable), local_ts,
      ``localise`` (the line's time is to be turned into UTC: REACH's usable rows, every
      record of a wide line with a usable timestamp) and the time map's utc_first, utc_second,
      nonexistent for local_ts (the map is ``<prefix>_tz_map``, made from ``times`` before
      ``records`` is read);
    * ``local``: rid, series, local_ts of the lines localised, whose file order decides an
      autumn fold (:func:`timezones.second_pass`);
    * ``times``: every local time a localised line may have (a superset is fine: the time map);
    * ``catalogue``: variable_id, device, parameter, original_name, unit, kind, category;
    * ``series``: series_no, variable_id, one row per series_no of a usable record (the
      records store the number only: a variable_id string per reading was a sixth of the
      records' statement). A name with a reason (a control character, say) is not listed.
    """

    records: str
    local: str
    times: str
    catalogue: str
    series: str


def _reach_shape(reader: _FileReader, source: SourceConfig, bounds: TimeRange) -> _Shape:
    """REACH rows with parsed fields and a reason where they are bad.

    Names and dates repeat on every line (a device-parameter pair per series, a time stamp per
    minute), so they are parsed once per distinct text (:func:`_reach_names`,
    :func:`_reach_dates`) and joined back; only the value is parsed per row."""
    p = reader.prefix
    names, dates = _reach_names(reader, source), _reach_dates(reader, bounds)
    value = _number_sql("c.Valore", source.decimal_separator, trimmed=False)
    records = f"""(
        SELECT *, reason IS NULL AS localise FROM (
            SELECT c.rid, n.series AS variable_id, n.series_no, NULL::VARCHAR AS field, c.value, d.local_ts, d.utc_first, d.utc_second, d.nonexistent,
                   CASE
                       WHEN n.reason IS NOT NULL THEN n.reason
                       WHEN d.reason IS NOT NULL THEN d.reason
                       {_value_reason('c.value', 'trim(c.Valore)', source, ': expected a decimal-comma number such as 12,8900')}
                   END AS reason
            FROM (SELECT rowid AS rid, Dispositivo, Parametro, Data, Valore, {value} AS value
                  FROM {p}_csv c) c
            JOIN {names} n ON c.Dispositivo IS NOT DISTINCT FROM n.raw_device AND c.Parametro IS NOT DISTINCT FROM n.raw_parameter
            JOIN (SELECT d.raw, d.local_ts, d.reason, m.utc_first, m.utc_second, m.nonexistent
                  FROM {dates} d LEFT JOIN {p}_tz_map m USING (local_ts)) d ON c.Data IS NOT DISTINCT FROM d.raw
        ))"""
    return _Shape(records=records,
                  local=f"(SELECT rid, variable_id AS series, local_ts FROM {records} WHERE localise)",
                  times=f"(SELECT local_ts FROM {dates} WHERE reason IS NULL)",
                  catalogue=f"(SELECT series AS variable_id, device, parameter, original AS original_name, unit, kind, "
                            f"category FROM {names} WHERE reason IS NULL)",
                  series=f"(SELECT DISTINCT series_no, series AS variable_id FROM {names} WHERE reason IS NULL)")


def _reach_names(reader: _FileReader, source: SourceConfig) -> str:
    """Temp table: each distinct (Dispositivo, Parametro) as written, with its device, parameter
    (configured, else a slug of the name), unit, kind, category, series (its number: series_no), and
    why it is unusable."""
    con, p = reader.con, reader.prefix
    params = pd.DataFrame([
        {"original": name, "parameter": spec.parameter, "unit": spec.unit, "kind": spec.kind,
         "category": spec.category or source.category}
        for name, spec in source.parameters.items()
    ], columns=["original", "parameter", "unit", "kind", "category"])
    slug = "trim(regexp_replace(lower(f.original), '[^a-z0-9]+', '_', 'g'), '_')"
    con.register(f"{p}_params", params)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_names AS
        SELECT *, (dense_rank() OVER (ORDER BY series) - 1)::INTEGER AS series_no FROM (
        WITH f AS (
            SELECT raw_device, raw_parameter, trim(raw_device) AS device, trim(raw_parameter) AS original
            FROM (SELECT DISTINCT Dispositivo AS raw_device, Parametro AS raw_parameter FROM {p}_csv)
        )
        SELECT f.raw_device, f.raw_parameter, f.device, f.original,
               coalesce(m.parameter, {slug}) AS parameter,
               m.unit, coalesce(m.kind, 'instantaneous') AS kind, coalesce(m.category, {_sql_str(source.category or '')}) AS category,
               f.device || '.' || coalesce(m.parameter, {slug}) AS series,
               CASE
                   WHEN coalesce(f.device, '') = '' THEN 'missing device (Dispositivo)'
                   WHEN coalesce(f.original, '') = '' THEN 'missing parameter (Parametro)'
                   WHEN regexp_matches(f.device, '{CONTROL_SQL}') THEN 'control character in the device (Dispositivo)'
                   WHEN regexp_matches(f.original, '{CONTROL_SQL}') THEN 'control character in the parameter (Parametro)'
               END AS reason
        FROM f LEFT JOIN {p}_params m ON m.original = f.original)
    """)
    con.unregister(f"{p}_params")
    return f"{p}_names"


def _reach_dates(reader: _FileReader, bounds: TimeRange) -> str:
    """Temp table: each distinct ``Data`` as written, its local time and why it is unusable."""
    con, p = reader.con, reader.prefix
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_dates AS
        SELECT raw, local_ts,
               CASE {_date_reason('local_ts', 'raw_date', 'Data', 'HH:MM:SS DD/MM/YYYY', bounds)} END AS reason
        FROM (SELECT raw, trim(raw) AS raw_date, try_strptime(trim(raw), '{REACH_TIME_FORMAT}') AS local_ts
              FROM (SELECT DISTINCT Data AS raw FROM {p}_csv))
    """)
    return f"{p}_dates"


def _wide_shape(reader: _FileReader, source: SourceConfig, bounds: TimeRange) -> _Shape:
    """Wide-export records: one reject for a line whose timestamp is unusable, else one row per
    non-empty configured cell. The lines are stored once (``<prefix>_wl``, with their count of
    empty cells, which are neither readings nor rejects)."""
    con, p, spec = reader.con, reader.prefix, source.timestamp
    local = f"try_strptime(trim({ident(spec.column)}), {_sql_str(spec.format)})"
    if spec.midnight_is_end_of_day:
        local = f"(CASE WHEN {local}::TIME = TIME '00:00' THEN {local} + INTERVAL 1 DAY ELSE {local} END)"
    cells = [f"trim({ident(c.column)}) AS v{i}" for i, c in enumerate(source.columns)]
    empty = " + ".join(f"(coalesce(v{i}, '') = '')::INTEGER" for i in range(len(source.columns)))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_wl AS
        SELECT *, {empty} AS empty_cells,
               CASE {_date_reason('local_ts', 'raw_date', spec.column, 'format ' + spec.format, bounds)} END AS date_reason
        FROM (SELECT rowid AS rid, {local} AS local_ts, trim({ident(spec.column)}) AS raw_date, {', '.join(cells)}
              FROM {p}_csv)
    """)
    expected = f" in column {{}}: expected a number with '{source.decimal_separator}' as decimal mark"
    records = [f"""
        SELECT rid, {_sql_str(spec.column)} AS field, NULL::DOUBLE AS value, NULL::VARCHAR AS variable_id,
               NULL::INTEGER AS series_no,
               date_reason AS reason, local_ts, false AS localise, NULL AS utc_first, NULL AS utc_second, NULL AS nonexistent
        FROM {p}_wl WHERE date_reason IS NOT NULL"""]
    series_no = {v: i for i, v in enumerate(sorted({f"{source.device}.{c.parameter}" for c in source.columns}))}
    for i, col in enumerate(source.columns):
        cell, variable_id = f"v{i}", f"{source.device}.{col.parameter}"
        value = _coded_sql(cell, col.codes) if col.codes else _number_sql(cell, source.decimal_separator)
        why = (f" in column {col.column}: expected one of the labels {', '.join(map(repr, sorted(col.codes)))}"
               if col.codes else expected.format(col.column))
        records.append(f"""
            SELECT rid, {_sql_str(col.column)} AS field, {value} AS value,
                   {_sql_str(variable_id)} AS variable_id, {series_no[variable_id]} AS series_no,
                   CASE {_value_reason(value, cell, source, why)} END AS reason,
                   local_ts, true AS localise, utc_first, utc_second, nonexistent
            FROM lines WHERE coalesce({cell}, '') <> ''""")
    catalogue = " UNION ALL ".join(
        f"SELECT {_sql_str(f'{source.device}.{c.parameter}')} AS variable_id, {_sql_str(source.device)} AS device, "
        f"{_sql_str(c.parameter)} AS parameter, {_sql_str(c.column)} AS original_name, "
        f"{_sql_str(c.unit) if c.unit else 'NULL'}::VARCHAR AS unit, {_sql_str(c.kind)} AS kind, "
        f"{_sql_str(c.category or source.category or '')} AS category" for c in source.columns)
    # one timestamp a line: the lines are localised, as one series (the fold is per line order)
    local = f"(SELECT rid, {_sql_str(source.device)} AS series, local_ts FROM {p}_wl WHERE date_reason IS NULL)"
    lines = f"lines AS (SELECT * FROM {p}_wl w LEFT JOIN {p}_tz_map m USING (local_ts) WHERE w.date_reason IS NULL)"
    series = " UNION ALL ".join(f"SELECT {n} AS series_no, {_sql_str(v)} AS variable_id" for v, n in series_no.items()) \
        or "SELECT NULL::INTEGER AS series_no, NULL::VARCHAR AS variable_id WHERE false"
    return _Shape(records=f"(WITH {lines} {' UNION ALL '.join(records)})", local=local, times=local,
                  catalogue=f"({catalogue})", series=f"({series})")


# --------------------------------------------------------------------------- one file

def parse_file(con: duckdb.DuckDBPyConnection, path: Path, source: SourceConfig, tz: str,
               prefix: str, bounds: TimeRange = SUPPORTED_RANGE) -> ParsedFile:
    """Parse ``path`` as ``source`` into temp table ``prefix`` on ``con``.

    ``bounds`` is the range a reading may fall in (the partitions': :func:`partition_range`);
    a reading outside it is rejected with that reason.
    """
    path = Path(path)
    try:
        with utf8_text(path, source, beside=True) as text:
            return _parse_text(con, text, path, source, tz, prefix, bounds)
    except OSError as exc:  # unreadable (permissions, vanished): a reject too, not a failed source
        parsed = ParsedFile(path=path, source=source.name, sha256="")
        _rejected_whole(parsed, f"{path.name}: cannot be read: {exc.strerror or exc}", 0, "")
        return parsed


def _parse_text(con: duckdb.DuckDBPyConnection, text: TextScan, path: Path, source: SourceConfig, tz: str,
                prefix: str, bounds: TimeRange) -> ParsedFile:
    """The file (its scan may still be running) into temp table ``prefix``, or rejected whole
    with the reason. A file that is not text in its encoding is rejected for that, whatever
    its header or DuckDB's reading of it said."""
    parsed = ParsedFile(path=path, source=source.name, sha256="")
    try:
        try:
            header = check_header(text, source)
            reader = _FileReader(con, text, header, prefix)
        finally:
            _scanned(text, parsed)
        _parse_rows(reader, parsed, header, source, tz, bounds)
    except FileShapeError as exc:
        _rejected_whole(parsed, str(exc), exc.line, text.error_text or first_line_text(path, source.encoding))
    except CONTENT_ERRORS as exc:  # DuckDB's CSV reader gave up on the file
        drop_staged(con, prefix)
        reason = f"{path.name}: not readable as CSV: {_duckdb_reason(exc)}"
        _rejected_whole(parsed, reason, 0, first_line_text(path, source.encoding))
    finally:
        _drop_stages(con, prefix)
    return parsed


def _scanned(text: TextScan, parsed: ParsedFile | None = None) -> None:
    """Wait for the scan, record its hash and lines in ``parsed``; FileShapeError if the file
    is not text."""
    text.done()
    if parsed is not None:
        parsed.sha256, parsed.lines = text.sha256, text.lines
    if text.error:
        raise FileShapeError(text.error, line=0)


def _duckdb_reason(exc: duckdb.Error) -> str:
    """DuckDB's CSV error without the offending line (it may be megabytes) and the hints."""
    lines = [t for t in str(exc).splitlines() if t.strip() and not t.startswith(("Original Line", "Possible", "*", " "))]
    return ": ".join(lines[:2])


def _rejected_whole(parsed: ParsedFile, reason: str, line: int, raw_text: str) -> None:
    parsed.error, parsed.table, parsed.rows, parsed.missing_cells = reason, None, 0, 0
    parsed.rejects = pd.DataFrame([{"line": line, "field": "", "raw_text": raw_text, "reason": reason}])


def _drop_stages(con: duckdb.DuckDBPyConnection, prefix: str) -> None:
    """Drop every intermediate table of a parse (not the result table ``prefix``): a later
    file parsed with the same prefix must not inherit them."""
    for suffix in ("csv", "lines", "rej", "scan", "struct", "text", "split", "lines_raw", "names", "dates",
                   "wl", "tz_map", "second", "all", "dups", "rejects"):
        con.execute(f"DROP TABLE IF EXISTS {prefix}_{suffix}")


def _parse_rows(reader: _FileReader, parsed: ParsedFile, header: list[str], source: SourceConfig,
                tz: str, bounds: TimeRange) -> None:
    """The reader's rows -> records (one materialisation), then the file's table, variables and rejects."""
    con, prefix = reader.con, reader.prefix
    parsed.lines, parsed.blank_lines = reader.lines, reader.blank_lines
    if source.format == "wide":
        known = {source.timestamp.column, *source.ignore_columns, *(c.column for c in source.columns)}
        extra = [h for h in header if h not in known]
        if extra:
            parsed.warnings.append(f"{parsed.path.name}: columns not in config, not stored: {extra}")
    shape = (_reach_shape if source.format == "reach" else _wide_shape)(reader, source, bounds)
    records = _localised_records(reader, shape, source, tz, bounds)
    ids = _series_ids(con, shape)
    variable_of = _variable_of(ids)
    counts = _count_records(con, prefix)
    valid, rejected = counts.usable, records - counts.usable
    superseded = _in_file_duplicates(con, prefix, bool(counts.repeated), variable_of)
    parsed.variables = con.execute(f"""
        SELECT variable_id, any_value(device) AS device, any_value(parameter) AS parameter,
               any_value(original_name) AS original_name, any_value(unit) AS unit, any_value(kind) AS kind,
               nullif(any_value(category), '') AS category
        FROM {shape.catalogue} c WHERE variable_id IN (SELECT unnest($ids::VARCHAR[]))
        GROUP BY variable_id ORDER BY variable_id
    """, {"ids": [ids[n] for n in counts.series]}).df()
    if source.format == "wide":  # its records keep rid and line_reject (_localised_records)
        line_rejects = f"(SELECT DISTINCT rid FROM {prefix}_all WHERE line_reject)"
        parsed.missing_cells = int(con.execute(
            f"SELECT coalesce(sum(empty_cells), 0) FROM {prefix}_wl ANTI JOIN {line_rejects} USING (rid) "
            f"WHERE date_reason IS NULL").fetchall()[0][0])
    parsed.rejects = _rejects(reader)
    _keep_readings(con, prefix, rejected, superseded, variable_of)
    parsed.table, parsed.rows = prefix, valid - superseded
    # The last line wins, so keys are unique unless one line holds several cells of the same
    # variable: impossible in REACH (one cell a line), and in a wide file only when two
    # configured columns share a parameter.
    parameters = [c.parameter for c in source.columns]
    parsed.unique_keys = source.format == "reach" or len(set(parameters)) == len(parameters)


def _localised_records(reader: _FileReader, shape: _Shape, source: SourceConfig, tz: str, bounds: TimeRange) -> int:
    """Temp table ``<prefix>_all``: every record with its UTC instant, its file line and why it
    is not used (NULL when it is). A line whose time does not exist (spring gap) or falls outside
    ``bounds`` is rejected as a whole (in a wide file on its timestamp column, ``line_reject``).
    Returns its rows."""
    con, p = reader.con, reader.prefix
    line_field = _sql_str(source.timestamp.column) if source.format == "wide" else "NULL"
    shift = f" - INTERVAL {source.expected_interval} SECOND" if source.format == "wide" and source.timestamp.label == "end" else ""
    local_time_map(con, shape.times, tz, f"{p}_tz_map")
    if second_pass(con, shape.local, f"{p}_tz_map", f"{p}_second", source.expected_interval):
        second_join, utc = f"LEFT JOIN {p}_second s ON s.rid = r.rid", "CASE WHEN s.rid IS NULL THEN r.utc_first ELSE r.utc_second END"
    else:
        second_join, utc = "", "r.utc_first"
    line_join, line = reader.line_join("r")
    # a wide line's cells share its rid, which the count of its empty cells needs (_parse_rows)
    wide_lines = "r.rid, r.line_why IS NOT NULL AS line_reject, " if source.format == "wide" else ""
    return con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_all AS
        SELECT {wide_lines}r.series_no, CASE WHEN r.line_why IS NOT NULL THEN {line_field} ELSE r.field END AS field,
               r.value, r.ts, coalesce(r.line_why, r.reason) AS why, ({line})::INTEGER AS line
        FROM (
            SELECT r.*, CASE WHEN r.nonexistent THEN 'local time ' || strftime(r.local_ts, '%Y-%m-%d %H:%M:%S')
                                                     || ' does not exist in {tz} (DST spring gap)'
                             WHEN r.ts < {_ts_sql(bounds.start)} OR r.ts >= {_ts_sql(bounds.end)}
                             THEN {_range_reason('r.local_ts', bounds)} END AS line_why
            FROM (
                SELECT r.rid, r.series_no, r.field, r.value, r.reason, r.local_ts,
                       CASE WHEN r.localise THEN {utc}{shift} END AS ts, r.localise AND r.nonexistent AS nonexistent
                FROM {shape.records} r {second_join}
            ) r
        ) r {line_join}
    """).fetchone()[0]


def _series_ids(con: duckdb.DuckDBPyConnection, shape: _Shape) -> dict[int, str]:
    """variable_id by series_no, for the series a usable record may have."""
    return dict(con.execute(f"SELECT series_no, variable_id FROM {shape.series}").fetchall())


def _variable_of(ids: dict[int, str]) -> str:
    """SQL giving a record's variable_id from its ``series_no``: a list literal indexed by it.

    A projection, not a join: joining the readings to the series cost the merge's insert more
    than half again, while indexing a list keeps the readings' order and costs little."""
    items = ", ".join("NULL" if ids.get(n) is None else _sql_str(ids[n]) for n in range(max(ids, default=-1) + 1))
    return f"([{items}]::VARCHAR[])[series_no + 1]"


@dataclass(frozen=True)
class _Counts:
    usable: int       # records of ``<prefix>_all`` without a reason
    repeated: int     # usable records whose key (variable_id, ts) another one has: 0 exactly when none
    series: list[int]  # the series_no of the usable records


def _count_records(con: duckdb.DuckDBPyConnection, prefix: str) -> _Counts:
    """What the usable records of ``<prefix>_all`` hold, in one aggregate of few groups.

    Counting distinct keys needs a hash table of every reading (it cost a third of the records'
    own statement). Instead the readings are grouped by instant (and series_no // 62, a handful
    of groups per instant at most) and each adds 2^(series_no % 62): a sum of n powers of two
    has n bits set exactly when no power repeats (adding a power already in the sum carries,
    which loses a bit); series_no is one number per variable_id, so no repeated power means
    no repeated key in the group. OR-ing the powers instead tells which series occur, without
    a second pass over the records."""
    usable, repeated, present = con.execute(f"""
        WITH instants AS (
            SELECT series_no // 62 AS bucket, count(*) AS n, sum(1::BIGINT << (series_no % 62)) AS powers,
                   bit_or(1::BIGINT << (series_no % 62)) AS present
            FROM {prefix}_all WHERE why IS NULL GROUP BY ts, bucket)
        SELECT (SELECT coalesce(sum(n), 0) FROM instants), (SELECT coalesce(sum(n - bit_count(powers)), 0) FROM instants),
               (SELECT list((bucket, present)) FROM (SELECT bucket, bit_or(present) AS present FROM instants GROUP BY bucket))
    """).fetchone()
    series = sorted(bucket * 62 + bit for bucket, mask in present or [] for bit in range(62) if mask >> bit & 1)
    return _Counts(int(usable), int(repeated), series)


def _in_file_duplicates(con: duckdb.DuckDBPyConnection, prefix: str, any_repeated: bool, variable_of: str) -> int:
    """Temp table ``<prefix>_dups``: within one file the last line for a (variable, ts) wins;
    earlier ones are quarantined. The window (a sort of every reading) runs only when some key
    repeats (``any_repeated``, from :func:`_count_records`); the table is empty otherwise.
    Returns its rows."""
    return con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_dups AS
        SELECT line, field, {variable_of} AS variable_id, ts,
               max(line) OVER (PARTITION BY series_no, ts) AS winner
        FROM {prefix}_all WHERE why IS NULL AND {'true' if any_repeated else 'false'}
        QUALIFY count(*) OVER (PARTITION BY series_no, ts) > 1 AND line < winner
    """).fetchone()[0]


def _keep_readings(con: duckdb.DuckDBPyConnection, prefix: str, rejected: int, superseded: int,
                   variable_of: str) -> None:
    """Make ``<prefix>_all``, less its rejected and superseded records, the file's readings:
    table ``<prefix>_readings`` under view ``prefix`` (variable_id, ts, value, line), without
    copying them: the usual file has no reject, and a few are deleted in place."""
    if rejected:
        con.execute(f"DELETE FROM {prefix}_all WHERE why IS NOT NULL")
    if superseded:
        con.execute(f"DELETE FROM {prefix}_all a USING {prefix}_dups d "
                    f"WHERE a.line = d.line AND a.field IS NOT DISTINCT FROM d.field")
    drop_staged(con, prefix)
    con.execute(f"ALTER TABLE {prefix}_all RENAME TO {prefix}_readings")
    con.execute(f"CREATE TEMP VIEW {prefix} AS SELECT {variable_of} AS variable_id, ts, value, line FROM {prefix}_readings")


def drop_staged(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Drop a parsed file's readings (:attr:`ParsedFile.table`: a view over ``<table>_readings``)."""
    con.execute(f"DROP VIEW IF EXISTS {table}")
    con.execute(f"DROP TABLE IF EXISTS {table}_readings")


def _rejects(reader: _FileReader) -> pd.DataFrame:
    """Structural rejects (from the reader), bad values and superseded duplicates, each with
    the text of its own physical line."""
    con, p = reader.con, reader.prefix
    count = con.execute(f"""
        CREATE OR REPLACE TEMP TABLE {p}_rejects AS
        SELECT line, '' AS field, reason FROM {p}_struct
        UNION ALL
        SELECT DISTINCT line, coalesce(field, '') AS field, why AS reason FROM {p}_all WHERE why IS NOT NULL
        UNION ALL
        SELECT line, coalesce(field, ''), 'duplicate of ' || variable_id || ' at ' || strftime(ts, '%Y-%m-%d %H:%M:%S UTC')
               || ': superseded by line ' || winner AS reason FROM {p}_dups
    """).fetchall()[0][0]
    if not count:
        return pd.DataFrame(columns=REJECT_COLUMNS)
    reader.load_text()
    return con.execute(f"""
        SELECT r.line::BIGINT AS line, r.field,
               CASE WHEN length(t.text) > {SHOWN_TEXT} THEN left(t.text, {SHOWN_TEXT}) || '…' ELSE t.text END AS raw_text, r.reason
        FROM {p}_rejects r LEFT JOIN {p}_text t USING (line) ORDER BY r.line, r.field
    """).df()
