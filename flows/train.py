"""The training flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cflib.config import TrainConfig
from tasks.train import train_model


@flow(name="train", log_prints=True)
def train_flow(
    data: str, out: str, config: TrainConfig | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Train one model on the dataset at ``data``; the run directory is ``out``."""
    return train_model(data, out, config or TrainConfig(), run_id)
