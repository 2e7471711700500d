"""The whole pipeline as one parent flow: ingest, train, evaluate, publish.

A rerun skips what is done and unchanged, keyed on fingerprints and configs rather than
on code: ingest when the dataset's fingerprint (source files and options) matches,
training when a run under ``WORK/runs`` was trained on the same data fingerprint with
the same config, evaluation when that run has metrics from the same evaluate config,
and publishing when the registry already holds the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from cflib import registry
from cflib.config import PipelineConfig
from cflib.data.manifest import load_manifest
from cflib.evaluate.summary import stage_lines
from cflib.models.catalog import resolve
from cflib.train import runs
from flows.evaluate_publish import run_evaluate, run_publish
from flows.ingest import run_ingest
from flows.runtime import tensorflow_worker
from flows.train import run_train
from tasks.summary import summarize_pipeline

DATA_DIR = "data"
RUNS_DIR = "runs"
REGISTRY_DIR = "registry"


class PipelineParams(BaseModel):
    """What the pipeline runs on; the Prefect UI renders this as the run form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Source directory (Netflix Prize or MovieLens).")
    work: str = Field(description="Work directory: data/, runs/, registry/.")
    registry: str | None = Field(None, description="Model registry (default: WORK/registry).")
    config: PipelineConfig = Field(default_factory=PipelineConfig, description="Every stage.")


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params: PipelineParams) -> dict[str, Any]:
    """Ingest ``source`` into ``work/data``, train in ``work/runs/<run-id>``, evaluate and
    publish to ``registry`` (default ``work/registry``), skipping completed stages."""
    with tensorflow_worker():  # one TensorFlow process for every stage; it loads now
        return _pipeline(params)


def _pipeline(params: PipelineParams) -> dict[str, Any]:
    config, root = params.config, Path(params.work)
    logger = get_run_logger()
    data = str(root / DATA_DIR)
    ingested = run_ingest(params.source, data, config.ingest)
    manifest = load_manifest(data)
    fingerprint = manifest.fingerprint
    # Once: train.json records the resolved config (the default batch depends on the data).
    train_cfg = resolve(config.train, n_users=manifest.n_users, n_items=manifest.n_items)
    done = runs.find_trained(root / RUNS_DIR, fingerprint, train_cfg.identity())
    if done is None:
        # An interrupted training of the same data and config resumes from its checkpoint.
        interrupted = runs.find_interrupted(root / RUNS_DIR, fingerprint, train_cfg.identity())
        run_id = runs.new_run_id() if interrupted is None else interrupted.name
        run = str(root / RUNS_DIR / run_id)
        if interrupted is not None:
            logger.info("training resumes %s, interrupted before it finished", run)
        run_train(data, run, train_cfg, run_id)
    else:
        run = str(done)
        logger.info("training skipped: %s was trained on the same data and config", run)
    if runs.is_evaluated(Path(run), config.evaluate.identity()):
        logger.info("evaluation skipped: %s is evaluated with the same config", run)
        metrics = runs.metrics(Path(run))
    else:
        metrics = run_evaluate(run, config.evaluate)
    registry_root = params.registry or str(root / REGISTRY_DIR)  # A path or an fsspec URL.
    summary = runs.train_summary(Path(run))
    found = registry.find_published(
        registry_root, summary["dataset"], summary["model"], summary["run_id"]
    )
    if found is not None:
        logger.info("publishing skipped: %s is already in the registry", found["artifact"])
        published = {**found, "skipped": True}
    else:
        published = run_publish(run, registry_root, config.publish)
    lines = stage_lines(ingested, summary, done is not None, metrics, published)
    summarize_pipeline(lines, run, published["artifact"])  # the parent run's own logs, artifacts
    return {"data": data, "run": run, "metrics": metrics, "published": published}
