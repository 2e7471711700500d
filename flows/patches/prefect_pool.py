"""One Prefect process pool whose single process serves every TensorFlow stage of a run.

``ProcessPoolTaskRunner`` is built to run tasks of one flow run: it serializes the
calling run's context (flow run, settings) once, at its first ``submit``, and reuses it
for every later task; and it starts its processes only at the first ``submit``. cfpipe
keeps one such process for a whole pipeline run (training, evaluation, publishing: one
``import tensorflow`` instead of three), across the subflows that submit to it, and
starts it before the first subflow needs it so that TensorFlow loads while the temporary
server starts and the data is ingested. :class:`SharedProcessPool` therefore

- forgets the cached context and environment before each ``submit`` (the private
  attributes ``_cached_context`` and ``_cached_env``), so each task runs under the flow
  run that submitted it, with the settings of that moment (``PREFECT_API_URL``);
- starts its process at once (:meth:`SharedProcessPool.start_process`) through the
  private ``_executor``, a ``concurrent.futures.ProcessPoolExecutor``, with a no-op.

Reason: no public API (Prefect 3.8). Verified on prefect ``VERIFIED``;
``pyproject.toml`` keeps prefect below 3.9, and ``tests/flows/test_patches.py`` fails on a
newer Prefect or when an attribute is gone.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable
from multiprocessing.process import BaseProcess
from typing import Any

from prefect.futures import PrefectConcurrentFuture
from prefect.task_runners import ProcessPoolTaskRunner
from prefect.tasks import Task

#: The Prefect release this was checked against.
VERIFIED = "3.8.8"


def _nothing() -> None:
    """The first job of a new process: it runs after the pool's initializer."""


class SharedProcessPool(ProcessPoolTaskRunner):
    """A ``ProcessPoolTaskRunner`` that several flow runs submit to, started early."""

    def submit(  # type: ignore[override]
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> PrefectConcurrentFuture[Any]:
        """Submit ``task`` under the calling flow run's context (not the first caller's)."""
        self._cached_context = None
        self._cached_env = None
        return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def start_process(self) -> list[BaseProcess]:
        """Start the pool's processes now, without waiting for their initializer; returns
        them. The calling thread is the one they are started from (their parent-death
        signal follows it): call this from the main thread."""
        if self._executor is None:
            raise RuntimeError("start_process() needs the pool entered (`with` block)")
        before = set(multiprocessing.active_children())
        self._executor.submit(_nothing)
        return [p for p in multiprocessing.active_children() if p not in before]
