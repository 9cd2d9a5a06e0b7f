"""The API's audit log into the warehouse (``ops.api_audit``), from a warehouse step.

The API process keeps its audit rows in its own SQLite file (it never opens the warehouse); a
run copies the rows the warehouse lacks, by ``audit_id`` (anti-join, one transaction), so the
copy is idempotent and a crash between two loads loses nothing.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from bemp_assets.domain.warehouse import transaction

from .store import AUDIT_COLUMNS, read_only_rows, state_path


def load_audit(con: duckdb.DuckDBPyConnection, home: Path) -> int:
    """Copy the audit rows newer than the newest already loaded; returns how many were added."""
    (last,) = con.execute("SELECT coalesce(max(audit_id), 0) FROM ops.api_audit").fetchall()[0]
    rows = read_only_rows(state_path(home), f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit WHERE audit_id > ? "
                                            "ORDER BY audit_id", (int(last),))
    if not rows:
        return 0
    con.register("_api_audit", pd.DataFrame(rows, columns=AUDIT_COLUMNS))
    with transaction(con):
        added = con.execute(f"""
            INSERT INTO ops.api_audit ({', '.join(AUDIT_COLUMNS)})
            SELECT audit_id, requested_at::TIMESTAMPTZ, token_id, method, path, variable_id, batch_id,
                   rows_accepted, rows_rejected, status, outcome
            FROM _api_audit ANTI JOIN ops.api_audit USING (audit_id)
        """).fetchall()[0][0]
    con.unregister("_api_audit")
    return int(added)
