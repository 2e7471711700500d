"""Retry policy shared by the tasks: retry I/O failures only, never bad input."""

from __future__ import annotations

from typing import Any

from cflib.errors import CfpipeError

IO_RETRIES = 2
IO_RETRY_DELAY_S = 2


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry an OSError, not a data or config error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - an unreadable state is not worth a retry
        return False
    return isinstance(exc, OSError) and not isinstance(exc, CfpipeError)
