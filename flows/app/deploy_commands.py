"""``cfpipe server`` and ``cfpipe deploy serve``: a Prefect server and the deployments,
on one machine, with nothing but Prefect itself (no scheduler of cfpipe's own)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from cflib.errors import ConfigError

deploy_app = typer.Typer(help="Serve the Prefect deployments in deploy/.", no_args_is_help=True)

LOOPBACK = "127.0.0.1"


def server(
    host: str = typer.Option(
        LOOPBACK, "--host", help="Address to bind; anything but loopback exposes the API."
    ),
    port: int = typer.Option(4200, "--port", min=1, max=65535, help="Port of the API and UI."),
) -> None:
    """Start the Prefect server and UI (``prefect server start``), on 127.0.0.1 by default."""
    url = f"http://{host}:{port}"
    typer.echo(f"Prefect UI: {url}   for commands and workers: export PREFECT_API_URL={url}/api")
    if host not in (LOOPBACK, "localhost", "::1") and not os.environ.get(
        "PREFECT_SERVER_API_AUTH_STRING"
    ):
        typer.echo(
            f"warning: {host} exposes the API without authentication; set "
            "PREFECT_SERVER_API_AUTH_STRING (and PREFECT_API_AUTH_STRING on clients) or put "
            "it behind an authenticating proxy",
            err=True,
        )
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # Prefect's own process from here on: signals go to it


@deploy_app.command("serve")
def serve(
    prefect_file: Path = typer.Option(
        None, "--prefect-file", help="Deployments file (default: deploy/prefect.yaml)."
    ),
    only: list[str] = typer.Option(
        [], "--only", help="Serve only this deployment (repeat for several)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Most flow runs at once (default: no limit)."
    ),
) -> None:
    """Serve the deployments in one long-lived process (``prefect.serve``).

    Scheduled runs and runs started from the UI execute in this process's children.
    Needs a running Prefect server: PREFECT_API_URL (see ``cfpipe server``).
    """
    from prefect import serve as prefect_serve

    from flows.app import deployments

    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "PREFECT_API_URL is not set: start a server (`cfpipe server`) and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api, so that the UI sees the deployments"
        )
    built = deployments.build(
        prefect_file or deployments.DEFAULT_FILE, only or None, check_paths=True
    )
    typer.echo(f"serving {', '.join(d.name for d in built)}")
    prefect_serve(*built, limit=limit, print_starting_message=False)
