"""The whole pipeline as one parent flow: ingest, train, evaluate, publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from cflib.config import PipelineConfig
from cflib.runs import new_run_id
from flows.evaluate_publish import evaluate_flow, publish_flow
from flows.ingest import run_ingest
from flows.train import train_flow

DATA_DIR = "data"
RUNS_DIR = "runs"
REGISTRY_DIR = "registry"


@flow(name="pipeline", log_prints=True)
def pipeline_flow(
    source: str,
    work: str,
    config: PipelineConfig | None = None,
    registry: str | None = None,
) -> dict[str, Any]:
    """Ingest ``source`` into ``work/data``, train in ``work/runs/<run-id>``, evaluate and
    publish to ``registry`` (default ``work/registry``)."""
    config = config or PipelineConfig()
    root = Path(work)
    data = str(root / DATA_DIR)
    run_id = new_run_id()
    run = str(root / RUNS_DIR / run_id)
    run_ingest(source, data, config.ingest)
    train_flow(data, run, config.train, run_id)
    metrics = evaluate_flow(run, config.evaluate)
    published = publish_flow(run, registry or str(root / REGISTRY_DIR), config.publish)
    return {"data": data, "run": run, "metrics": metrics, "published": published}
