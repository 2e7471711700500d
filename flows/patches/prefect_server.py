"""The temporary Prefect server this process started: its URL, and its life.

Run ad hoc (no ``PREFECT_API_URL``), Prefect starts a temporary server per process
(``SubprocessASGIServer``, a ``uvicorn`` child) and offers no public way to ask for its
URL, nor to say how the child is started.

- ``ephemeral_api_url``: a child process of ours (``flows.runtime.run_in_child``) would
  otherwise start a second server of its own. Prefect keeps its servers in the private
  class attribute ``SubprocessASGIServer._instances`` (port -> server; ``None`` is the
  one ``get_client()`` started); this reads it.
- ``start_early``: the server takes 5-10 s to start (imports, database migrations), and
  Prefect starts it only when a flow run first needs it; this starts the same server
  (``SubprocessASGIServer()``, the one ``get_client()`` starts) in a thread of its own
  while the command does other work (TensorFlow loads in the stages' process), and
  ``wait_ready`` waits for it before the first flow run. The thread stays alive: the
  server's parent-death signal follows it.
- ``die_with_parent``: the server outlived a SIGKILLed ``cfpipe`` for ever, and a SIGTERM
  to the command's process group stopped it before the flow run could be marked Crashed.
  ``SubprocessASGIServer._run_uvicorn_command`` starts it with the module's
  ``subprocess.Popen``; this gives that module a ``subprocess`` whose ``Popen`` starts
  the server in a session of its own (a signal to our group does not reach it: we stop
  it at exit, as Prefect's ``atexit`` does) that gets SIGTERM when this process dies
  (``prctl(PR_SET_PDEATHSIG)``, only when started from the main thread: the signal
  follows the starting thread, and another could end before the process).

Reason: no public API (Prefect 3.8). Verified on prefect ``VERIFIED``;
``pyproject.toml`` keeps prefect below 3.9, and ``tests/flows/test_patches.py`` fails on a
newer Prefect or when the attribute or the ``subprocess.Popen`` call is gone.
"""

from __future__ import annotations

import os
import subprocess
import threading
import types
from typing import Any

#: The Prefect release this was checked against.
VERIFIED = "3.8.8"


def ephemeral_api_url() -> str | None:
    """The API URL of the temporary server this process runs, or None if it runs none."""
    from prefect.server.api.server import SubprocessASGIServer

    ephemeral = SubprocessASGIServer._instances.get(None)  # the one get_client() started
    if ephemeral is None or ephemeral.server_process is None:
        return None
    return str(ephemeral.api_url)


def kill_ephemeral() -> None:
    """SIGKILL the temporary server this process runs, if any (a second Ctrl-C)."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        if server.server_process is not None and server.server_process.poll() is None:
            server.server_process.kill()


#: The thread that starts the server early; it lives as long as the process.
_STARTER = "cfpipe-prefect-server"
_ready = threading.Event()
_failure: list[BaseException] = []


def start_early() -> bool:
    """Start this process's temporary server in the background, unless a server is
    configured (``PREFECT_API_URL``) or one is started already; True if it starts one.
    Call :func:`wait_ready` before anything talks to the API."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return False
    if any(t.name == _STARTER for t in threading.enumerate()):
        return False
    # The server's module (1-2 s of imports) loads in the thread, beside the caller's work.
    threading.Thread(target=_start_and_stay, name=_STARTER, daemon=True).start()
    return True


def _start_and_stay() -> None:
    try:
        from prefect.server.api.server import SubprocessASGIServer

        die_with_parent()
        SubprocessASGIServer().start()  # a no-op if get_client() started it already
    except BaseException as exc:  # handed to wait_ready's caller
        _failure.append(exc)
    finally:
        _ready.set()
    threading.Event().wait()  # the server's parent-death signal follows this thread


def wait_ready() -> None:
    """Wait until the server :func:`start_early` started answers (no-op if it started
    none); re-raises its failure (a start-up time-out)."""
    if any(t.name == _STARTER for t in threading.enumerate()):
        _ready.wait()
    if _failure:
        raise _failure[0]


def _popen_in_own_session(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    from flows.supervise import die_with_parent

    kwargs.setdefault("start_new_session", True)
    starter = threading.current_thread()
    if starter is threading.main_thread() or starter.name == _STARTER:
        parent = os.getpid()
        kwargs.setdefault("preexec_fn", lambda: die_with_parent(parent))
    return subprocess.Popen(*args, **kwargs)


def die_with_parent() -> None:
    """From now on, this process's temporary server runs in a session of its own and
    dies with this process (idempotent)."""
    from prefect.server.api import server as module

    if getattr(module.subprocess, "cfpipe_plugged", False):
        return
    shim = types.SimpleNamespace(**vars(subprocess))
    shim.Popen = _popen_in_own_session
    shim.cfpipe_plugged = True
    module.subprocess = shim  # type: ignore[assignment]
