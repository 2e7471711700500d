"""The Dask cluster a flow runs its parallel work on."""

from __future__ import annotations

from typing import Any, cast

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner
from prefect_dask import DaskTaskRunner

from cflib.config import IngestConfig


def dask_task_runner(cfg: IngestConfig) -> TaskRunner[Any]:
    """A DaskTaskRunner on an existing scheduler (``dask_address``) or a LocalCluster.

    LocalCluster workers are processes with one thread each: the parsing is CPU-bound
    and the per-worker memory stays easy to bound. Workers run plain cflib functions
    (see ``cflib.ingest.parallel``), so they need no Prefect API of their own.
    """
    # cast: prefect-dask's runner is a TaskRunner of its own future type, which mypy
    # does not accept where Prefect's Flow expects TaskRunner[PrefectFuture].
    if cfg.dask_address:
        return cast("TaskRunner[Any]", DaskTaskRunner(address=cfg.dask_address))
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.n_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",  # the scheduler and workers listen on loopback only
            # The dashboard (bokeh) on loopback, on a free port: its link is logged.
            "dashboard_address": "127.0.0.1:0",
        }
    )
    return cast("TaskRunner[Any]", runner)


def dask_scheduler_address() -> str:
    """The scheduler address of the running flow's DaskTaskRunner, starting it if needed;
    logs it and the dashboard's link.

    ``prefect_dask.get_dask_client`` reads the runner's private client, which the runner
    only creates on first use; its public ``client`` property creates it.
    """
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not isinstance(runner, DaskTaskRunner):
        raise RuntimeError("dask_scheduler_address() needs a flow run with a DaskTaskRunner")
    client = runner.client
    dashboard = client.scheduler_info().get("services", {}).get("dashboard")
    get_run_logger().info(
        "Dask scheduler %s, dashboard %s",
        client.scheduler.address,
        client.dashboard_link if dashboard else "not running (it needs bokeh on the scheduler)",
    )
    return str(client.scheduler.address)
