"""The URL of the temporary Prefect server this process started, if any.

Run ad hoc (no ``PREFECT_API_URL``), Prefect starts a temporary server per process
(``SubprocessASGIServer``) and offers no public way to ask for its URL. A child process
of ours (``flows.runtime.run_in_child``) would otherwise start a second server of its
own. Prefect keeps its servers in the private class attribute
``SubprocessASGIServer._instances`` (port -> server; ``None`` is the one ``get_client()``
started); this reads it.

Reason: no public API (Prefect 3.8). Verified on prefect ``VERIFIED``;
``pyproject.toml`` keeps prefect below 3.9, and ``tests/flows/test_patches.py`` fails on a
newer Prefect or when the attribute is gone.
"""

from __future__ import annotations

#: The Prefect release this was checked against.
VERIFIED = "3.8.8"


def ephemeral_api_url() -> str | None:
    """The API URL of the temporary server this process runs, or None if it runs none."""
    from prefect.server.api.server import SubprocessASGIServer

    ephemeral = SubprocessASGIServer._instances.get(None)  # the one get_client() started
    if ephemeral is None or ephemeral.server_process is None:
        return None
    return str(ephemeral.api_url)
