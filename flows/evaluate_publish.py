"""The evaluate and publish flows."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cflib.config import EvaluateConfig, PublishConfig
from flows import limits
from flows.runtime import run_in_child
from tasks.evaluate import evaluate_run, write_report
from tasks.publish import publish_run


@flow(name="evaluate", log_prints=True)
def evaluate_flow(run: str, config: EvaluateConfig | None = None) -> dict[str, Any]:
    """Score a trained run against the baselines and write its report.

    The scoring loads TensorFlow, so it runs in a child process (see ``train_flow``).
    """
    config = config or EvaluateConfig()
    limits.warn_if_unenforced(config.timeout)
    metrics = run_in_child(evaluate_run, {"run": run, "config": config})
    write_report(run)
    return metrics


@flow(name="publish", log_prints=True)
def publish_flow(run: str, registry: str, config: PublishConfig | None = None) -> dict[str, Any]:
    """Publish an evaluated run into the model registry (in a child process: exporting the
    SavedModel loads TensorFlow)."""
    config = config or PublishConfig()
    limits.warn_if_unenforced(config.timeout)
    parameters = {"run": run, "registry_root": registry, "config": config}
    return run_in_child(publish_run, parameters)


def run_evaluate(run: str, config: EvaluateConfig) -> dict[str, Any]:
    """Run the evaluate flow within ``config.timeout`` (``limits.call``)."""
    return limits.call(evaluate_flow, config.timeout, run, config)


def run_publish(run: str, registry: str, config: PublishConfig) -> dict[str, Any]:
    """Run the publish flow within ``config.timeout`` (``limits.call``)."""
    return limits.call(publish_flow, config.timeout, run, registry, config)
