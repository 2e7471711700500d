"""Where flows run: the Prefect API they report to and the Dask cluster ingest uses."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, cast

from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from cflib.config import IngestConfig

log = logging.getLogger(__name__)


def api_url() -> str | None:
    """The Prefect API this process reports to, if one is configured."""
    url = get_current_settings().api.url
    return str(url) if url else None


@contextlib.contextmanager
def prefect_api() -> Iterator[str]:
    """Make sure one Prefect API serves this process and every Dask worker it starts.

    With no ``PREFECT_API_URL``, Prefect would start a temporary server in this process
    and another in each Dask worker process (about 14 s and 220 MB each). Start the one
    temporary server here instead and export its URL, so workers inherit it.
    """
    url = api_url()
    if url is not None:
        yield url
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # Stopped at exit by Prefect's own atexit hook.
    url = server.api_url
    # Settings are read once at import: set them here, and in the environment for workers.
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def dask_task_runner(cfg: IngestConfig) -> TaskRunner[Any]:
    """A DaskTaskRunner on an existing scheduler (``dask_address``) or a LocalCluster.

    LocalCluster workers are processes with one thread each: the parsing is CPU-bound
    and the per-worker memory stays easy to bound.
    """
    # cast: prefect-dask's runner is a TaskRunner of its own future type, which mypy
    # does not accept where Prefect's Flow expects TaskRunner[PrefectFuture].
    if cfg.dask_address:
        return cast("TaskRunner[Any]", DaskTaskRunner(address=cfg.dask_address))
    env = {"PREFECT_API_URL": url} if (url := api_url()) else {}
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.n_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "env": env,
        }
    )
    return cast("TaskRunner[Any]", runner)
