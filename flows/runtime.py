"""Where a flow's work runs: the Dask cluster of its parallel work, the child processes
of its TensorFlow stages, and the Prefect API they report to."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.process import BaseProcess
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner
from prefect.tasks import Task

from cflib.config import IngestConfig
from flows import limits, supervise
from flows.patches import dask_caches, prefect_server
from flows.patches.prefect_pool import SharedProcessPool
from flows.patches.prefect_server import ephemeral_api_url
from flows.patches.prefect_shield import shield

#: Modules a TensorFlow stage's process imports before its first task (TensorFlow, Keras
#: and what the stages' tasks load), while the command does other work.
WARM_MODULES = ("cflib.train.loop", "cflib.evaluate.scoring", "cflib.registry.publish")


def dask_task_runner(cfg: IngestConfig) -> TaskRunner[Any]:
    """A DaskTaskRunner on an existing scheduler (``dask_address``) or a LocalCluster.

    LocalCluster workers are processes with one thread each: the parsing is CPU-bound
    and the per-worker memory stays easy to bound. Workers run plain cflib functions
    (see ``cflib.ingest.parallel``), so they need no Prefect API of their own.
    """
    from prefect_dask import DaskTaskRunner  # with distributed: 1-2 s to import

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

    The flow's time limit waits until the cluster is up (``prefect_shield.shield``): raised in
    the middle of ``LocalCluster()``, Prefect's cancellation would leave a half-started
    cluster that no one closes until the process exits (10-19 s later, measured, its
    workers running meanwhile); raised after, the runner closes the cluster.
    """
    from prefect_dask import DaskTaskRunner

    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if not isinstance(runner, DaskTaskRunner):
        raise RuntimeError("dask_scheduler_address() needs a flow run with a DaskTaskRunner")
    with shield():
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


class _Worker:
    """The process pool of :func:`tensorflow_worker` and the process it started."""

    def __init__(self, pool: SharedProcessPool, processes: list[BaseProcess]) -> None:
        self.pool = pool
        self.processes = processes


_worker: _Worker | None = None


@contextlib.contextmanager
def tensorflow_worker() -> Iterator[None]:
    """Within the block, every ``run_in_child`` runs in one process, started now.

    One ``import tensorflow`` (3-5 s on 2 cores) for a pipeline's training, evaluation and
    publishing instead of one per stage, and it happens while the block's caller goes on
    (the temporary server starts, the data is ingested). Re-entrant: an inner block uses
    the outer one's process. The process stops on SIGTERM/SIGINT and dies with this one
    like any ``run_in_child`` child; after the block it has exited.
    """
    global _worker
    if _worker is not None:
        yield
        return
    pool = SharedProcessPool(
        max_workers=1, initializer=supervise.init_child, initargs=(os.getpid(), WARM_MODULES)
    )
    with pool:
        _worker = _Worker(pool, pool.start_process())
        try:
            yield
        finally:
            _worker = None


@contextlib.contextmanager
def started(*, tensorflow: bool) -> Iterator[Callable[[], None]]:
    """A ``cfpipe`` command's start: the temporary Prefect server (unless
    ``PREFECT_API_URL`` names one) and, for stages that load TensorFlow, their process
    (:func:`tensorflow_worker`) start side by side, while the block imports what it
    needs; the block calls the callable it is given (it waits until the server answers)
    before its first flow run."""
    prefect_server.start_early()
    with tensorflow_worker() if tensorflow else contextlib.nullcontext():
        yield prefect_server.wait_ready


def run_in_child(task: Task[..., Any], parameters: dict[str, Any]) -> Any:
    """Run ``task`` in a child process (spawned) and return its result: the process of
    the enclosing :func:`tensorflow_worker`, else a fresh one.

    A task run of the calling flow run like any other (state, logs and artifacts in the
    UI), through Prefect's ``ProcessPoolTaskRunner`` of one process, entered here (or by
    ``tensorflow_worker``) rather than as the flow's task runner: leaving its block waits
    until the child has exited and every log line it sent is handed to this process's
    log worker, so none is lost when the flow run (or the command) ends right after.

    The child stops on SIGTERM or SIGINT (training with a checkpoint) and dies with this
    process (``supervise.init_child``). Interrupted while it runs, this asks the child to
    stop and waits for it (``supervise.stop_children``) before the pool is shut down,
    marks its task run Crashed with the one line and raises ``supervise.Interrupted``;
    when the signal is a Cancel of the flow run, marks it Cancelled and lets the signal
    go on to Prefect's engine, which ends the flow run Cancelled. The flow's time limit
    (``--timeout``) stops the child the same way, marks the task run Crashed with
    ``limits.TimeLimitReached``'s line and lets Prefect's cancellation through, so that
    the flow run ends TimedOut.

    Raises:
        ChildProcessError: the child died without an answer (killed by a signal, such as
            the kernel's out-of-memory killer); the task's own exceptions pass through.
        supervise.Interrupted: SIGINT or SIGTERM while the child ran.
        prefect.exceptions.TerminationSignal: the flow run was cancelled while it ran.
        asyncio.CancelledError: Prefect's cancellation when the flow's time limit fired.
    """
    task_run_id: UUID | None = None
    before = set(multiprocessing.active_children())
    try:
        with shared_api(), _pool() as runner:
            future = runner.submit(task, parameters)
            task_run_id = future.task_run_id
            try:
                return future.result()
            except (KeyboardInterrupt, TerminationSignal, supervise.Interrupted) as exc:
                interrupted = supervise.interrupted_by(exc)
                supervise.stop_children(_children(before), future.wrapped_future.done)
                if isinstance(exc, TerminationSignal) and supervise.cancelling():
                    # A Cancel: Prefect's engine ends the flow runs Cancelled on this signal.
                    message = supervise.cancelled_message(interrupted.stage)
                    _mark_crashed(task_run_id, message, cancelled=True)
                    raise
                _mark_crashed(task_run_id, interrupted.message)
                raise interrupted from None
            except asyncio.CancelledError:  # the flow's --timeout fired (flows/limits.py)
                limit = limits.reached()
                supervise.stop_children(_children(before), future.wrapped_future.done)
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


def _children(before: set[BaseProcess]) -> set[BaseProcess]:
    """The processes running a task now: those started since ``before``, and the one of
    the enclosing :func:`tensorflow_worker` (started before it)."""
    children = set(multiprocessing.active_children()) - before
    if _worker is not None:
        children.update(_worker.processes)
    return children


@contextlib.contextmanager
def _pool() -> Iterator[ProcessPoolTaskRunner]:
    """The process of the enclosing :func:`tensorflow_worker`, else a fresh one for this
    task alone (leaving the block then waits for it to exit, its logs all sent)."""
    if _worker is not None:
        yield _worker.pool
        return
    runner = ProcessPoolTaskRunner(
        max_workers=1, initializer=supervise.init_child, initargs=(os.getpid(),)
    )
    with runner:
        yield runner


def _mark_crashed(task_run_id: UUID, message: str, *, cancelled: bool = False) -> None:
    """Set a dead child's task run Crashed (Cancelled: its flow run is being cancelled),
    as its engine would have had it lived: else the UI shows it Running for ever. A
    failure here is logged, not raised."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Cancelled, Crashed, State

    state: State[Any] = Cancelled(message=message) if cancelled else Crashed(message=message)
    try:
        with get_client(sync_client=True) as client:
            client.set_task_run_state(task_run_id, state, force=True)
    except Exception as exc:  # the flow run fails anyway, with the message
        # 404: it died before its task run was recorded, so no one will see it Running.
        if not (isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code == 404):
            get_run_logger().warning("could not mark task run %s Crashed: %s", task_run_id, exc)
