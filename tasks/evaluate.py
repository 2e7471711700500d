"""Prefect tasks of the evaluate and publish stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from cflib import evaluate, registry, report
from cflib.config import EvaluateConfig, PublishConfig
from tasks._retry import io_task


@task(name="evaluate-run")
def evaluate_run(run: str, config: EvaluateConfig) -> dict[str, Any]:
    """Score the run's model and the baselines on the test split."""
    metrics = evaluate.evaluate(Path(run), config)
    get_run_logger().info("test RMSE %.4f over %d ratings", metrics["rmse"], metrics["n_test"])
    return metrics


@task(name="write-report")
def write_report(run: str) -> str:
    """Render ``RUN/report.md``."""
    return str(report.write_report(Path(run)))


@io_task("publish-run")
def publish_run(run: str, registry_root: str, config: PublishConfig) -> dict[str, Any]:
    """Copy the run into the registry and move ``latest``."""
    result = registry.publish(Path(run), Path(registry_root), config)
    get_run_logger().info("published %s", result["artifact"])
    return result
