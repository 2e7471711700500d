"""Where a flow's work runs: the Dask cluster of its parallel work, the child processes
of its TensorFlow stages, and the Prefect API they report to."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner
from prefect.tasks import Task
from prefect_dask import DaskTaskRunner

from cflib.config import IngestConfig
from flows import limits, supervise
from flows.patches import dask_caches
from flows.patches.prefect_server import ephemeral_api_url


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
    dask_caches.plug()  # this process will hold the cluster's scheduler: let it go after
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

    The flow's time limit waits until the cluster is up (``limits.shield``): raised in
    the middle of ``LocalCluster()``, Prefect's cancellation would leave a half-started
    cluster that no one closes until the process exits (10-19 s later, measured, its
    workers running meanwhile); raised after, the runner closes the cluster.
    """
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not isinstance(runner, DaskTaskRunner):
        raise RuntimeError("dask_scheduler_address() needs a flow run with a DaskTaskRunner")
    with limits.shield():
        client = runner.client
    dashboard = client.scheduler_info().get("services", {}).get("dashboard")
    get_run_logger().info(
        "Dask scheduler %s, dashboard %s",
        client.scheduler.address,
        client.dashboard_link if dashboard else "not running (it needs bokeh on the scheduler)",
    )
    return str(client.scheduler.address)


@contextlib.contextmanager
def shared_api() -> Iterator[None]:
    """Within the block, tasks sent to other processes report to this process's API.

    Without ``PREFECT_API_URL`` (``cfpipe`` run ad hoc, tests), Prefect starts a temporary
    server for the process; a ``ProcessPoolTaskRunner`` child would start another one of
    its own, a second server process and its start-up for every TensorFlow stage (its
    artifacts reach the flow run only because both servers use PREFECT_HOME's database).
    This names the temporary server's URL in the settings the child receives.
    """
    ephemeral = None if PREFECT_API_URL.value() else ephemeral_api_url()
    if ephemeral is None:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: ephemeral}):
        yield


def run_in_child(task: Task[..., Any], parameters: dict[str, Any]) -> Any:
    """Run ``task`` in a fresh child process (spawned) and return its result.

    A task run of the calling flow run like any other (state, logs and artifacts in the
    UI), through Prefect's ``ProcessPoolTaskRunner`` of one process, entered here rather
    than as the flow's task runner: leaving the block waits until the child has exited
    and every log line it sent is handed to this process's log worker, so none is lost
    when the flow run ends right after.

    The child stops on SIGTERM or SIGINT (training with a checkpoint) and dies with this
    process (``supervise.init_child``). Interrupted while it runs, this asks the child to
    stop and waits for it (``supervise.stop_children``) before the pool is shut down,
    marks its task run Crashed with the one line and raises ``supervise.Interrupted``.
    The flow's time limit (``--timeout``) stops the child the same way, marks the task
    run Crashed with ``limits.TimeLimitReached``'s line and lets Prefect's cancellation
    through, so that the flow run ends TimedOut.

    Raises:
        ChildProcessError: the child died without an answer (killed by a signal, such as
            the kernel's out-of-memory killer); the task's own exceptions pass through.
        supervise.Interrupted: SIGINT or SIGTERM while the child ran.
        asyncio.CancelledError: Prefect's cancellation when the flow's time limit fired.
    """
    task_run_id: UUID | None = None
    before = set(multiprocessing.active_children())
    try:
        with (
            shared_api(),
            ProcessPoolTaskRunner(
                max_workers=1, initializer=supervise.init_child, initargs=(os.getpid(),)
            ) as runner,
        ):
            future = runner.submit(task, parameters)
            task_run_id = future.task_run_id
            try:
                return future.result()
            except (KeyboardInterrupt, TerminationSignal, supervise.Interrupted) as exc:
                interrupted = supervise.interrupted_by(exc)
                children = set(multiprocessing.active_children()) - before
                supervise.stop_children(children, future.wrapped_future.done)
                _mark_crashed(task_run_id, interrupted.message)
                raise interrupted from None
            except asyncio.CancelledError:  # the flow's --timeout fired (flows/limits.py)
                limit = limits.reached()
                children = set(multiprocessing.active_children()) - before
                supervise.stop_children(children, future.wrapped_future.done)
                _mark_crashed(task_run_id, limit.message if limit else f"{task.name}: cancelled")
                raise  # Prefect ends the flow run TimedOut
    except BrokenProcessPool:
        message = (
            f"{task.name}: its process died without an answer (killed by a signal, e.g. "
            "the out-of-memory killer: see `dmesg`); run it again, training resumes from "
            "its last checkpoint"
        )
        if task_run_id is not None:
            _mark_crashed(task_run_id, message)
        raise ChildProcessError(message) from None


def _mark_crashed(task_run_id: UUID, message: str) -> None:
    """Set a dead child's task run Crashed, as its engine would have had it lived: else
    the UI shows it Running for ever. A failure here is logged, not raised."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(task_run_id, Crashed(message=message), force=True)
    except Exception as exc:  # the flow run fails anyway, with the message
        # 404: it died before its task run was recorded, so no one will see it Running.
        if not (isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code == 404):
            get_run_logger().warning("could not mark task run %s Crashed: %s", task_run_id, exc)
