"""A Prefect progress artifact of the running task, created on the first update."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class Progress:
    """Shows a percentage on the task run in the Prefect UI; ``set`` creates it the first
    time and updates it afterwards."""

    def __init__(self) -> None:
        self._id: UUID | None = None

    def set(self, percent: float, description: str | None = None) -> None:
        if self._id is None:
            self._id = cast(UUID, create_progress_artifact(percent, description=description))
        else:
            update_progress_artifact(self._id, percent, description=description)

    @property
    def started(self) -> bool:
        return self._id is not None
