"""A real Prefect server for a test, on a port that is really its own.

A port found free and released before the server binds it can be taken in between (by
another test's server on this shared machine): the start is retried on a fresh port
when the server exits, and the health check only counts when the server that answers
is this one (its PREFECT_HOME, read back from the API)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

START_DEADLINE_S = 300.0
ATTEMPTS = 5


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str  # http://HOST:PORT
    home: Path
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ours(url: str, home: Path) -> bool | None:
    """True when the server at ``url`` is healthy and uses ``home``; False when another
    one answers; None when nothing answers yet."""
    try:
        if httpx.get(f"{url}/api/health", timeout=5).status_code != 200:
            return None
        settings = httpx.get(f"{url}/api/admin/settings", timeout=5).json()
    except httpx.HTTPError:
        return None
    return Path(settings["home"]).resolve() == home.resolve()


def start(
    argv: Callable[[str, int], list[str]],
    home: Path,
    env: dict[str, str],
    *,
    host: str = "127.0.0.1",
) -> Server:
    """Start ``argv(host, port)`` (a command that runs a Prefect server) in a session of
    its own, with PREFECT_HOME ``home``; return once it answers as itself."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    for attempt in range(ATTEMPTS):
        port = free_port(host)
        log = home / f"server-{attempt}.log"
        # The UI asks its API at PREFECT_UI_API_URL (default: port 4200, not this one).
        ui = {"PREFECT_UI_API_URL": f"http://{host}:{port}/api"}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv(host, port),
                env={**env, **ui},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, f"http://{host}:{port}", home, log)
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline and proc.poll() is None:
            ours = _ours(server.url, home)
            if ours:
                return server
            if ours is False:  # the port went to someone else's server: ours cannot bind
                break
            time.sleep(0.5)
        stop(proc)
        if time.monotonic() >= deadline:
            raise AssertionError(f"the server did not start: {log.read_text()[-3000:]}")
    raise AssertionError(f"no free port after {ATTEMPTS} tries: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group a test started (by its pid): SIGTERM twice, as Prefect wants,
    then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
    # The group may outlive its leader (uvicorn workers): end what is left of it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
