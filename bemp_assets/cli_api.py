"""`bemp api serve|token` (docs/api.md): the HTTP API and its tokens; mistakes are CliErrors."""
from __future__ import annotations

import os

from bemp_assets.cli import CliError
from bemp_assets.domain.settings import Settings

DEFAULT_PORT = 8710


def add_api_parser(sub) -> None:
    api = sub.add_parser("api", help="the HTTP API: serve it, create and revoke its tokens (docs/api.md)")
    actions = api.add_subparsers(dest="action", required=True)
    serve = actions.add_parser("serve", help="run the API (uvicorn); put TLS in front of it in production")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--max-body", type=int, default=int(os.environ.get("BEMP_API_MAX_BODY", 5_000_000)),
                       help="largest request body in bytes (default $BEMP_API_MAX_BODY or 5000000)")
    token = actions.add_parser("token", help="create, revoke or list API tokens").add_subparsers(dest="token_action",
                                                                                             required=True)
    create = token.add_parser("create", help="create a token and print it once (only its hash is kept)")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. 'mes-gateway'")
    create.add_argument("--scope", action="append", choices=["read", "push", "admin"], required=True,
                        help="read, push or admin (admin may do everything); repeat for several")
    revoke = token.add_parser("revoke", help="revoke a token by its id (requests with it get 401)")
    revoke.add_argument("token_id")
    token.add_parser("list", help="token ids, names, scopes, created and revoked times (never the tokens)")


def dispatch(args, settings: Settings) -> int:
    if args.action == "serve":
        return serve(settings, args.host, args.port, args.max_body)
    from bemp_assets.api.store import ApiStore, TokenError, state_path

    store = ApiStore(state_path(settings.home))
    try:
        if args.token_action == "create":
            token_id, token = store.create_token(args.name, args.scope)
            print(f"token id {token_id} ({args.name}, scopes {','.join(sorted(set(args.scope)))})")
            print(f"token (shown once, keep it secret): {token}")
        elif args.token_action == "revoke":
            store.revoke_token(args.token_id)
            print(f"token {args.token_id} revoked")
        else:
            _print_tokens(store.list_tokens())
    except TokenError as exc:
        raise CliError(str(exc)) from None
    return 0


def _print_tokens(tokens: list[dict]) -> None:
    if not tokens:
        print("no tokens (bemp api token create --name NAME --scope read)")
    for t in tokens:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
        print(f"{t['token_id']}  {t['name']:<20} {t['scopes']:<16} created {t['created_at']}  {state}")


def serve(settings: Settings, host: str, port: int, max_body: int) -> int:
    """Serve until Ctrl-C; uvicorn logs one access line per request (paths only, never headers)."""
    import logging

    import uvicorn

    from bemp_assets.api.app import create_app

    if max_body <= 0:
        raise CliError(f"--max-body: expected a positive number of bytes, got {max_body}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings, max_body=max_body)
    print(f"BEMP API on http://{host}:{port}/api/v1 (docs: /api/v1/docs), state {settings.home / 'api'}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
