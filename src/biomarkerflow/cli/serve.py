"""`serve`: the REST API and dashboard; `tokens`: who may use them."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from biomarkerflow.cli.app import (
    ExecutorOption,
    JsonOption,
    WorkersOption,
    app,
    console,
    handled,
    platform,
    say,
    tell,
)
from biomarkerflow.terminal import Column, print_table

DEFAULT_PORT = 8000

# Study totals shown are at most this old: every reader within it shares one count of the
# catalog (0.1-0.3 s at 100k files) instead of each one counting again.
SUMMARY_MAX_AGE = 2.0

tokens_app = typer.Typer(
    help="Bearer tokens for the REST API and dashboard (stored as hashes; shown once).", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")


@app.command()
@handled
def serve(
    host: Annotated[
        str, typer.Option(metavar="HOST", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    watch: Annotated[
        bool, typer.Option("--watch", help="Also run the watch service in this process (needs --configs).")
    ] = False,
    configs: Annotated[
        str | None, typer.Option(metavar="DIR_OR_URL", help="Study configs the --watch service scans.")
    ] = None,
    interval: Annotated[float, typer.Option(metavar="SECONDS", min=1, help="--watch: seconds between rescans.")] = 60.0,
    workers: WorkersOption = 1,
    executor_spec: ExecutorOption = "local",
    secure_cookies: Annotated[
        bool,
        typer.Option("--secure-cookies", help="Behind a TLS proxy: browsers send the session cookie over HTTPS only."),
    ] = False,
) -> None:
    """The REST API (/api/v1, schema at /openapi.json) and dashboard, until Ctrl-C.

    Every endpoint but /healthz needs a token (biomarkerflow tokens create). Without
    --watch, scan/process/retrain requests wait in the catalog for a running `watch`.

    \b
    Examples:
      biomarkerflow tokens create --name alice --scope operate
      biomarkerflow serve --port 8000 --watch --configs studies/
    """
    import uvicorn

    from biomarkerflow.api import create_app
    from biomarkerflow.errors import UsageError
    from biomarkerflow.service.watcher import Watcher

    if watch and configs is None:
        raise UsageError("--watch needs --configs DIR_OR_URL: the study configs the service scans")
    service = platform()
    service.recent.max_age = SUMMARY_MAX_AGE
    service.require_studies(None)  # open (and upgrade) the catalog before the first request
    api = create_app(
        service, session_secret=os.environ.get("BIOMARKERFLOW_SESSION_SECRET"), secure_cookies=secure_cookies
    )
    watcher = None
    if watch:
        assert configs is not None
        service.require_configs_location(configs)
        watcher = Watcher(service, configs, interval=interval, executor_spec=executor_spec, workers=workers)
        api.state.watching = True
        watcher.start()
    if not service.tokens():
        tell("no tokens yet: create one to sign in, e.g. biomarkerflow tokens create --name admin --scope admin")
    say(f"serving {service.catalog_name()} on http://{host}:{port} (Ctrl-C to stop)")
    try:
        uvicorn.run(api, host=host, port=port, log_level="warning")
    finally:
        if watcher is not None:
            tell("stopping the watch service after the running jobs")
            watcher.stop()
            watcher.join()


@tokens_app.command("create")
@handled
def tokens_create(
    name: Annotated[str, typer.Option(metavar="NAME", help="Who or what uses it, e.g. alice or trial-dashboard.")],
    scope: Annotated[
        str,
        typer.Option(metavar="SCOPE", help="read (see everything), operate (also scan/process), admin (also tokens)."),
    ] = "read",
) -> None:
    """A new token, printed once: keep it; the catalog stores only its hash.

    Example: biomarkerflow tokens create --name alice --scope operate
    """
    created = platform().create_token(name, scope)
    say(created.token)
    tell(f"token '{name}' ({scope}) created: it is shown only this once. Send it as 'Authorization: Bearer TOKEN'.")


@tokens_app.command("list")
@handled
def tokens_list(as_json: JsonOption = False) -> None:
    """Every token: name, scope, first characters, created, last used, revoked."""
    from biomarkerflow.service.access import token_json

    records = [token_json(t) for t in platform().tokens()]
    if as_json:
        print(json.dumps(records, indent=2))
        return
    if not records:
        say("no tokens yet: biomarkerflow tokens create --name NAME --scope read")
        return
    columns = [
        Column(c, key=c == "name") for c in ("name", "scope", "prefix", "created_at", "last_used_at", "revoked_at")
    ]
    rows = [[str(r[c.header] or "") for c in columns] for r in records]
    print_table(console, columns, rows)


@tokens_app.command("revoke")
@handled
def tokens_revoke(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The token's name (see tokens list).")],
) -> None:
    """Revoke a token at once: requests with it get 401 from then on."""
    platform().revoke_token(name)
    say(f"token '{name}' revoked")
