"""The evaluate and publish flows."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cflib.config import EvaluateConfig, PublishConfig
from tasks.evaluate import evaluate_run, write_report
from tasks.publish import publish_run


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: str, config: EvaluateConfig | None = None) -> dict[str, Any]:
    """Score a trained run against the baselines and write its report."""
    metrics = evaluate_run(run, config or EvaluateConfig())
    write_report(run)
    return metrics


@flow(name="publish", log_prints=True)
def publish_flow(run: str, registry: str, config: PublishConfig | None = None) -> dict[str, Any]:
    """Publish an evaluated run into the model registry."""
    return publish_run(run, registry, config or PublishConfig())
