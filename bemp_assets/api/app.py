"""The BEMP HTTP API (FastAPI), versioned under ``/api/v1``; endpoints in docs/api.md.

It never opens the warehouse: pushes land as files in the landing area (batches.py) that the
``api_landing_sensor`` ingests through the pipeline, its own state is a SQLite file
(store.py), and reads come from the BI snapshot (reads.py). So it answers while a run holds
the warehouse, and cannot block one.

Security: ``Authorization: Bearer <token>``; a missing, wrong or revoked token is the same bare
401, a token without the scope a 403. Every request but ``/health`` is audited (token id,
never the token). Bodies are limited to ``max_body`` bytes (413).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from bemp_assets.domain.config import BempConfig, load_config
from bemp_assets.domain.inbox import source_dir
from bemp_assets.domain.settings import Settings

from . import reads
from .batches import BatchError, csv_readings, json_readings, validate, write_landing
from .registry import VariableSpec, parameter_conflict, validation_errors
from .store import ApiStore, Caller, remember_response, state_path, stored_response

PREFIX = "/api/v1"
# the push body, for the OpenAPI description (the handler reads the raw body itself, to limit
# its size and to take CSV as well)
PUSH_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["readings"], "properties": {"readings": {
        "type": "array", "items": {"oneOf": [
            {"type": "object", "properties": {"timestamp": {"type": "string", "example": "2016-11-02T10:00:00+01:00"},
                                              "value": {"type": "number", "example": 1.5}}},
            {"type": "array", "minItems": 2, "maxItems": 2, "example": ["2016-11-02T10:00:00+01:00", 1.5]}]}}}}},
    "text/csv": {"schema": {"type": "string", "example": "Dispositivo,Parametro,Data,Valore\n"
                                                          "meter7,active_power,2016-11-02T10:00:00+01:00,1.5\n"}}}}}
DEFAULT_MAX_BODY = 5_000_000
OUTCOMES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large",
            422: "invalid", 503: "unavailable"}
log = logging.getLogger("bemp.api")


class ApiError(Exception):
    """An error response: status and a JSON ``detail`` (a text or a list of texts)."""

    def __init__(self, status: int, detail: object, outcome: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.outcome = status, detail, outcome


@dataclass
class Context:
    settings: Settings
    config: BempConfig
    store: ApiStore
    max_body: int

    @property
    def api_source(self):
        sources = [s for s in self.config.sources if s.inbox]
        if not sources:
            raise ApiError(503, "no source with an `inbox` folder (the API's landing area) in sources.yaml")
        return sources[0]


def create_app(settings: Settings, max_body: int = DEFAULT_MAX_BODY) -> FastAPI:
    ctx = Context(settings, load_config(settings.config_dir), ApiStore(state_path(settings.home)), max_body)
    app = FastAPI(title="BEMP API", version="1", docs_url=f"{PREFIX}/docs", openapi_url=f"{PREFIX}/openapi.json",
                  description="Push raw readings, read processed data, models, forecasts and alarms (docs/api.md).")
    app.state.ctx = ctx
    _install_audit(app, ctx)
    _add_routes(app, ctx)
    return app


# ----------------------------------------------------------------------------- audit, errors
def _install_audit(app: FastAPI, ctx: Context) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        request.state.outcome = exc.outcome
        return JSONResponse({"detail": exc.detail}, status_code=exc.status,
                            headers={"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.middleware("http")
    async def audit(request: Request, call_next):
        if request.url.path in (f"{PREFIX}/health", f"{PREFIX}/docs", f"{PREFIX}/openapi.json"):
            return await call_next(request)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > ctx.max_body:
            response = JSONResponse({"detail": f"body of {length} bytes exceeds the limit of {ctx.max_body}"}, 413)
        else:
            try:
                response = await call_next(request)
            except Exception:  # a bug: audited as such, then uvicorn answers 500 and logs the traceback
                await _audit(ctx, request, 500, "error")
                raise
        await _audit(ctx, request, response.status_code)
        return response


async def _audit(ctx: Context, request: Request, status: int, outcome: str | None = None) -> None:
    """One audit row and one log line for a request, from what the handler left in its state."""
    state = request.state
    record = dict(token_id=getattr(state, "token_id", None), method=request.method, path=request.url.path,
                  variable_id=getattr(state, "variable_id", None), batch_id=getattr(state, "batch_id", None),
                  rows_accepted=getattr(state, "rows_accepted", None), rows_rejected=getattr(state, "rows_rejected", None),
                  status=status, outcome=outcome or getattr(state, "outcome", None) or OUTCOMES.get(status, "ok"))
    await run_in_threadpool(ctx.store.audit, **record)
    log.info("%s %s -> %s %s (token %s)", record["method"], record["path"], status, record["outcome"],
             record["token_id"] or "-")


def requires(scope: str):
    """A dependency: the caller, when its bearer token is valid and carries ``scope``."""
    def check(request: Request, authorization: str | None = Header(None, include_in_schema=False)) -> Caller:
        token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
        caller = request.app.state.ctx.store.authenticate(token)
        if caller is None:
            raise ApiError(401, "unauthorized")
        request.state.token_id = caller.token_id
        if not caller.may(scope):
            raise ApiError(403, f"this token lacks the '{scope}' scope")
        return caller
    return check


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it grows past ``limit`` (a chunked body has no length)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
    return bytes(body)


# ------------------------------------------------------------------------------- variables
def _known_variables(ctx: Context) -> dict[str, dict]:
    """Registered variables, and (when a snapshot exists) those the warehouse holds."""
    known: dict[str, dict] = {}
    try:
        with reads.snapshot(ctx.settings.home) as con:
            for row in con.execute("SELECT * FROM bi.variables").df().to_dict(orient="records"):
                known[row["variable_id"]] = {**row, "registered": False}
    except reads.NoSnapshot:
        pass
    for row in ctx.store.variables():
        known[row["variable_id"]] = {**known.get(row["variable_id"], {}), **row, "registered": True}
    return known


def register(ctx: Context, body: object, caller: Caller) -> dict:
    try:
        spec = VariableSpec.model_validate(body)
    except ValidationError as exc:
        raise ApiError(422, validation_errors(exc)) from None
    source = ctx.api_source
    if spec.site not in (None, source.site):
        raise ApiError(422, [f"key 'site': pushed readings are stored under the api source's site "
                             f"{source.site!r}, got {spec.site!r}"])
    registered = ctx.store.variables()
    if any(v["variable_id"] == spec.variable_id for v in registered):
        raise ApiError(409, f"variable {spec.variable_id} is already registered")
    conflict = parameter_conflict(spec, registered)
    if conflict:
        raise ApiError(409, conflict)
    variable = {**spec.model_dump(), "site": source.site, "variable_id": spec.variable_id}
    ctx.store.register_variable(variable, caller.token_id)
    return ctx.store.variable(spec.variable_id)


# ------------------------------------------------------------------------------------ push
def push(ctx: Context, variable_id: str, body: bytes, content_type: str, key: str | None, caller: Caller) -> tuple[int, dict, bool]:
    """(status, response, replayed): a new batch landed, or the stored answer to a retried key."""
    variable = ctx.store.variable(variable_id)
    if variable is None:
        raise ApiError(404, f"variable {variable_id} is not registered for push: POST {PREFIX}/variables first")
    digest = hashlib.sha256(b"\0".join([variable_id.encode(), content_type.encode(), body])).hexdigest()
    with ctx.store.connect(immediate=True) as con:
        prior = stored_response(con, caller.token_id, key) if key else None
        if prior is not None:
            if prior["request_sha256"] != digest:
                raise ApiError(409, "Idempotency-Key already used for a different request", "idempotency_conflict")
            return prior["status"], json.loads(prior["response"]), True
        readings = (csv_readings(body, variable["device"], variable["parameter"]) if "csv" in content_type
                    else json_readings(body))
        if readings.empty:
            raise BatchError("no readings in the body")
        batch = validate(readings, ctx.api_source, ctx.config.site, variable_id)
        write_landing(source_dir(ctx.api_source, ctx.settings.inbox), batch, variable["device"], variable["parameter"])
        response = batch.response()
        if key:
            remember_response(con, caller.token_id, key, digest, batch.batch_id, 202, response)
    return 202, response, False


def _frame_response(frame: pd.DataFrame, fmt: str, following: int | None, extra: dict) -> Response:
    """A page as JSON (``{..extra, "data": [...], "next_offset": n}``) or CSV (``X-Next-Offset``)."""
    headers = {"X-Next-Offset": str(following)} if following is not None else {}
    if fmt == "csv":
        return Response(frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ"), media_type="text/csv",
                        headers=headers)
    records = frame.to_json(orient="records", date_format="iso", date_unit="s")
    head = json.dumps({**extra, "rows": len(frame), "next_offset": following})[:-1]
    return Response(f'{head}, "data": {records}}}', media_type="application/json", headers=headers)


def _instant(text: str | None, name: str) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected ISO 8601 such as 2016-11-01 or 2016-11-01T00:00:00+01:00, got {text!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _snapshot_page(ctx: Context, view: str, equal: dict, fmt: str, limit: int, offset: int, extra: dict,
                   start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> Response:
    try:
        with reads.snapshot(ctx.settings.home) as con:
            page, following = reads.query(con, view, equal, start, end, limit, offset)
    except reads.NoSnapshot as exc:
        raise ApiError(503, str(exc)) from None
    except reads.BadQuery as exc:
        raise ApiError(400, str(exc)) from None
    return _frame_response(page, fmt, following, extra)


# ---------------------------------------------------------------------------------- routes
def _add_routes(app: FastAPI, ctx: Context) -> None:
    reader, pusher, admin = Depends(requires("read")), Depends(requires("push")), Depends(requires("admin"))
    paging = dict(limit=Query(10_000, ge=1, le=reads.MAX_LIMIT), offset=Query(0, ge=0),
                  format=Query("json", pattern="^(json|csv)$"))

    @app.get(f"{PREFIX}/health", summary="Liveness, and whether a BI snapshot exists (no token needed)")
    def health() -> dict:
        path = reads.bi_path(ctx.settings.home)
        return {"status": "ok", "snapshot": path.exists(),
                "snapshot_published_at": pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").isoformat()
                if path.exists() else None}

    @app.get(f"{PREFIX}/variables", summary="Registered variables and those in the warehouse (read)")
    def list_variables(caller: Caller = reader) -> Response:
        return JSONResponse(json.loads(json.dumps({"variables": list(_known_variables(ctx).values())}, default=str)))

    @app.get(f"{PREFIX}/variables/{{variable_id}}", summary="One variable (read)")
    def get_variable(variable_id: str, request: Request, caller: Caller = reader) -> Response:
        request.state.variable_id = variable_id
        found = _known_variables(ctx).get(variable_id)
        if found is None:
            raise ApiError(404, f"no variable {variable_id}")
        return JSONResponse(json.loads(json.dumps(found, default=str)))

    @app.post(f"{PREFIX}/variables", status_code=201, summary="Register a variable for push (admin)",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": VariableSpec.model_json_schema()}}}})
    async def create_variable(request: Request, caller: Caller = admin) -> JSONResponse:
        try:
            body = json.loads(await read_body(request, ctx.max_body))
        except json.JSONDecodeError as exc:
            raise ApiError(422, [f"body is not JSON: {exc}"]) from None
        variable = await run_in_threadpool(register, ctx, body, caller)
        request.state.variable_id = variable["variable_id"]
        return JSONResponse(variable, status_code=201)

    @app.post(f"{PREFIX}/variables/{{variable_id}}/raw_data", status_code=202, openapi_extra=PUSH_BODY,
              summary="Push readings (push): JSON {readings: [...]} or REACH CSV; Idempotency-Key makes retries no-ops")
    async def raw_data(variable_id: str, request: Request, caller: Caller = pusher,
                       idempotency_key: str | None = Header(None, max_length=200)) -> JSONResponse:
        request.state.variable_id = variable_id
        body = await read_body(request, ctx.max_body)
        try:
            status, response, replayed = await run_in_threadpool(
                push, ctx, variable_id, body, request.headers.get("content-type", "application/json"), idempotency_key, caller)
        except BatchError as exc:
            raise ApiError(422, str(exc)) from None
        state = request.state
        state.batch_id, state.rows_accepted, state.rows_rejected = (
            response["batch_id"], response["rows_accepted"], response["rows_rejected"])
        state.outcome = "replayed" if replayed else "accepted"
        return JSONResponse(response, status_code=status, headers={"Idempotent-Replayed": "true"} if replayed else None)

    @app.get(f"{PREFIX}/variables/{{variable_id}}/data", summary="Stored readings of one layer, paged (read)")
    def data(variable_id: str, request: Request, layer: str = Query("clean", pattern="^(raw|clean|hourly)$"),
             start: str | None = None, end: str | None = None, limit: int = paging["limit"],
             offset: int = paging["offset"], format: str = paging["format"], caller: Caller = reader) -> Response:
        request.state.variable_id = variable_id
        return _snapshot_page(ctx, reads.LAYERS[layer], {"variable_id": variable_id}, format, limit, offset,
                              {"variable_id": variable_id, "layer": layer}, _instant(start, "start"), _instant(end, "end"))

    @app.get(f"{PREFIX}/models", summary="Trained forecasting models (bi.models), optionally of one target (read)")
    def models(target: str | None = None, limit: int = paging["limit"], offset: int = paging["offset"],
               format: str = paging["format"], caller: Caller = reader) -> Response:
        return _snapshot_page(ctx, "models", {"target": target}, format, limit, offset, {"target": target})

    @app.get(f"{PREFIX}/forecasts", summary="Forecasts (bi.forecasts) of a target variable, for a site-local day (read)")
    def forecasts(target: str | None = None, day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
                  limit: int = paging["limit"], offset: int = paging["offset"], format: str = paging["format"],
                  caller: Caller = reader) -> Response:
        start = pd.Timestamp(day, tz=ctx.config.site.timezone).tz_convert("UTC") if day else None
        end = (pd.Timestamp(day, tz=ctx.config.site.timezone) + pd.Timedelta(days=1)).tz_convert("UTC") if day else None
        return _snapshot_page(ctx, "forecasts", {"variable_id": target}, format, limit, offset,
                              {"target": target, "day": day}, start, end)

    @app.get(f"{PREFIX}/alarms", summary="active=true: the alarm board (bi.alarms_active); else the event history (read)")
    def alarms(active: bool = False, limit: int = paging["limit"], offset: int = paging["offset"],
               format: str = paging["format"], caller: Caller = reader) -> Response:
        return _snapshot_page(ctx, "alarms_active" if active else "alarms", {}, format, limit, offset, {"active": active})
