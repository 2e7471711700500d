"""Prefect task of the training stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from cflib.config import TrainConfig


@task(name="train-model")
def train_model(data: str, out: str, config: TrainConfig, run_id: str | None) -> dict[str, Any]:
    """Train one model on an ingested dataset; returns the run's train summary."""
    from cflib.train import train  # TensorFlow loads only in the process that trains.

    artifact: list[UUID] = []

    def progress(done: int, most: int, logs: dict[str, float]) -> None:
        """A progress artifact of the task run: epochs done out of the most it may run."""
        percent = 100.0 * done / most
        what = f"epochs ({done}: validation RMSE {logs.get('val_rmse', float('nan')):.4f})"
        if artifact:
            update_progress_artifact(artifact[0], percent, description=what)
        else:
            artifact.append(cast(UUID, create_progress_artifact(percent, description=what)))

    summary = train(Path(data), Path(out), config, run_id=run_id, on_epoch=progress)
    if artifact:  # early stopping ends the run before the last epoch: it is complete
        update_progress_artifact(artifact[0], 100.0, description="epochs (done)")
    get_run_logger().info(
        "%s: %s trained for %d epochs, validation RMSE %.4f",
        summary["run_id"],
        summary["model"],
        summary["epochs_run"],
        summary["val_rmse"],
    )
    return summary
