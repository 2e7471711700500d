"""Prefect task of the training stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from cflib.config import TrainConfig


@task(name="train-model")
def train_model(data: str, out: str, config: TrainConfig, run_id: str | None) -> dict[str, Any]:
    """Train one model on an ingested dataset; returns the run's train summary."""
    from cflib.train import train  # TensorFlow loads only in the process that trains.

    summary = train(Path(data), Path(out), config, run_id=run_id)
    get_run_logger().info(
        "%s: %s trained for %d epochs, validation RMSE %.4f",
        summary["run_id"],
        summary["model"],
        summary["epochs_run"],
        summary["val_rmse"],
    )
    return summary
