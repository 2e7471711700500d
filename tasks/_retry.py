"""Retry policy shared by the tasks: retry I/O failures only, never bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task

from cflib.errors import CfpipeError

P = ParamSpec("P")
R = TypeVar("R")

IO_RETRIES = 2
IO_RETRY_DELAY_S = 2


def retry_on_io(task_: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry an OSError, not a data or config error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
        return False
    return isinstance(exc, OSError) and not isinstance(exc, CfpipeError)


def io_task(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A Prefect task named ``name`` that retries on I/O errors, never on bad input."""
    return task(
        name=name,
        retries=IO_RETRIES,
        retry_delay_seconds=IO_RETRY_DELAY_S,
        retry_condition_fn=retry_on_io,
    )
