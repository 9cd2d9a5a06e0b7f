"""The API's own state: tokens, registered variables, idempotent batches and the audit log.

It lives in one SQLite file, ``$BEMP_HOME/api/api.sqlite``, never in the warehouse: the API
process must not open the DuckDB file (one writer per file, and a writer blocks the readers of
other processes), so a push is accepted even while a run holds the warehouse. Each write is one
SQLite transaction (atomic and durable); the ``ops/api_audit`` asset copies the audit rows into
``ops.api_audit`` from a warehouse step, and the ``api`` source's raw asset reads the registered
variables' units and kinds from here.

Tokens are ``bemp_<id>.<secret>``; only a salted scrypt hash of the secret is stored, so the
file reveals no usable token. The token is shown once, by ``bemp api token create``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

SCOPES = ("read", "push", "admin")
# scrypt cost: 16 MiB and some 30 ms per hash, so guessing a secret offline is slow
SCRYPT = dict(n=2 ** 14, r=8, p=1, dklen=32)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL, salt TEXT NOT NULL,
    hash TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
CREATE TABLE IF NOT EXISTS variables (
    variable_id TEXT PRIMARY KEY, device TEXT NOT NULL, parameter TEXT NOT NULL, unit TEXT,
    kind TEXT NOT NULL, category TEXT, site TEXT, registered_at TEXT NOT NULL, token_id TEXT);
CREATE TABLE IF NOT EXISTS batches (
    token_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, request_sha256 TEXT NOT NULL,
    batch_id TEXT, status INTEGER NOT NULL, response TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (token_id, idempotency_key));
CREATE TABLE IF NOT EXISTS audit (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT, requested_at TEXT NOT NULL, token_id TEXT, method TEXT NOT NULL,
    path TEXT NOT NULL, variable_id TEXT, batch_id TEXT, rows_accepted INTEGER, rows_rejected INTEGER,
    status INTEGER NOT NULL, outcome TEXT NOT NULL);
"""
AUDIT_COLUMNS = ["audit_id", "requested_at", "token_id", "method", "path", "variable_id", "batch_id",
                 "rows_accepted", "rows_rejected", "status", "outcome"]


class TokenError(ValueError):
    """A token command cannot be done (unknown id, bad scope); the message says why."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the token's id and scopes (never the token itself)."""

    token_id: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        """``admin`` may do everything; otherwise the scope must have been granted."""
        return scope in self.scopes or "admin" in self.scopes


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def state_path(home: Path) -> Path:
    return Path(home) / "api" / "api.sqlite"


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode(), salt=salt, **SCRYPT).hex()


class ApiStore:
    """One SQLite file; a connection per call, so request threads never share one."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")  # readers (a Dagster step) never wait for a push
            con.executescript(SCHEMA)
        finally:
            con.close()

    @contextmanager
    def connect(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction: committed on success, rolled back on error. ``immediate`` takes the
        write lock at once, so a read-check-write (idempotency) is serialised across processes."""
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA synchronous=FULL")
        try:
            con.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    # ------------------------------------------------------------------ tokens
    def create_token(self, name: str, scopes: list[str]) -> tuple[str, str]:
        """(token id, token); the token is not stored and cannot be shown again."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise TokenError(f"scopes: expected one or more of {list(SCOPES)}, got {scopes}")
        token_id, secret, salt = secrets.token_hex(4), secrets.token_urlsafe(32), secrets.token_bytes(16)
        with self.connect(immediate=True) as con:
            con.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, NULL)",
                        (token_id, name, ",".join(sorted(set(scopes))), salt.hex(), _hash(secret, salt), now_iso()))
        return token_id, f"bemp_{token_id}.{secret}"

    def revoke_token(self, token_id: str) -> None:
        with self.connect(immediate=True) as con:
            changed = con.execute("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) WHERE token_id = ?",
                                  (now_iso(), token_id)).rowcount
        if not changed:
            raise TokenError(f"no token with id {token_id!r} (see `bemp api token list`)")

    def list_tokens(self) -> list[dict]:
        with self.connect() as con:
            rows = con.execute("SELECT token_id, name, scopes, created_at, revoked_at FROM tokens ORDER BY created_at")
            return [dict(r) for r in rows]

    def authenticate(self, token: str | None) -> Caller | None:
        """The caller a presented token belongs to, or None (malformed, unknown, wrong secret,
        revoked: the caller learns nothing of which)."""
        if not token or not token.startswith("bemp_") or "." not in token:
            return None
        token_id, secret = token[len("bemp_"):].split(".", 1)
        with self.connect() as con:
            row = con.execute("SELECT scopes, salt, hash, revoked_at FROM tokens WHERE token_id = ?",
                              (token_id,)).fetchone()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(row["salt"])), row["hash"]):
            return None
        return Caller(token_id, frozenset(row["scopes"].split(",")))

    # --------------------------------------------------------------- variables
    def register_variable(self, variable: dict, token_id: str) -> None:
        with self.connect(immediate=True) as con:
            con.execute("INSERT INTO variables VALUES (:variable_id, :device, :parameter, :unit, :kind, :category, "
                        ":site, :registered_at, :token_id)",
                        {**variable, "registered_at": now_iso(), "token_id": token_id})

    def variables(self) -> list[dict]:
        with self.connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM variables ORDER BY variable_id")]

    def variable(self, variable_id: str) -> dict | None:
        with self.connect() as con:
            row = con.execute("SELECT * FROM variables WHERE variable_id = ?", (variable_id,)).fetchone()
        return dict(row) if row else None

    # ------------------------------------------------------------------- audit
    def audit(self, **record) -> None:
        """One audit row: who (token id), what (method, path, variable, batch), rows, outcome."""
        record = {c: record.get(c) for c in AUDIT_COLUMNS[2:]}
        with self.connect(immediate=True) as con:
            con.execute(f"INSERT INTO audit (requested_at, {', '.join(record)}) VALUES (?, {', '.join('?' * len(record))})",
                        (now_iso(), *record.values()))

    def audit_rows(self, after_id: int = 0) -> list[tuple]:
        with self.connect() as con:
            return [tuple(r) for r in con.execute(
                f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE audit_id > ? ORDER BY audit_id", (after_id,))]


def read_only_rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on the API state file opened read-only (from a Dagster step); none when
    the API never ran."""
    if not Path(path).exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def stored_response(con: sqlite3.Connection, token_id: str, key: str) -> sqlite3.Row | None:
    return con.execute("SELECT request_sha256, status, response FROM batches WHERE token_id = ? AND idempotency_key = ?",
                       (token_id, key)).fetchone()


def remember_response(con: sqlite3.Connection, token_id: str, key: str, request_sha256: str, batch_id: str | None,
                      status: int, response: dict) -> None:
    con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, key, request_sha256, batch_id, status, json.dumps(response), now_iso()))
