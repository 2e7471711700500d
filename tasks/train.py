"""Prefect task of the training stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from cflib.config import TrainConfig
from tasks._progress import Progress


@task(name="train-model")
def train_model(data: str, out: str, config: TrainConfig, run_id: str | None) -> dict[str, Any]:
    """Train one model on an ingested dataset; returns the run's train summary."""
    from cflib.train.loop import train  # TensorFlow loads only in the process that trains.

    bar = Progress()

    def progress(done: int, most: int, logs: dict[str, float]) -> None:
        """Epochs done out of the most the run (or its refit) may take."""
        if "val_rmse" in logs:
            rmse = logs["val_rmse"]
            bar.set(100.0 * done / most, f"epochs ({done}: validation RMSE {rmse:.4f})")
        else:
            bar.set(100.0 * done / most, f"refit on train + validation ({done} of {most})")

    summary = train(Path(data), Path(out), config, run_id=run_id, on_epoch=progress)
    if bar.started:  # early stopping ends the run before the last epoch: it is complete
        bar.set(100.0, "epochs (done)")
    refit = summary["refit"]
    get_run_logger().info(
        "%s: %s trained for %d epochs, validation RMSE %.4f%s",
        summary["run_id"],
        summary["model"],
        summary["epochs_run"],
        summary["val_rmse"],
        f"; refit on train + validation for {refit['epochs']} epochs" if refit else "",
    )
    return summary
