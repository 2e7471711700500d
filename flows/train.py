"""The training flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cflib.config import TrainConfig
from flows import limits
from flows.runtime import run_in_child
from tasks.train import train_model


@flow(name="train", log_prints=True)
def train_flow(
    data: str, out: str, config: TrainConfig | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Train one model on the dataset at ``data``; the run directory is ``out``.

    The training runs in a child process of its own (see ``run_in_child``): TensorFlow's
    native state (compiled kernels, the runtime's device set-up) goes with it, so a
    long-lived process running flow after flow stays flat, and each run can choose its
    own ``--replicas``, which TensorFlow fixes once per process.
    """
    config = config or TrainConfig()
    limits.warn_if_unenforced(config.timeout)
    parameters = {"data": data, "out": out, "config": config, "run_id": run_id}
    return run_in_child(train_model, parameters)


def run_train(
    data: str, out: str, config: TrainConfig, run_id: str | None = None
) -> dict[str, Any]:
    """Run the training flow within ``config.timeout`` (``limits.call``): past it, training
    stops with a checkpoint and the same command resumes from it."""
    return limits.call(train_flow, config.timeout, data, out, config, run_id)
