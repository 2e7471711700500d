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
from cflib.fields import optional
from cflib.models.catalog import resolve_for
from cflib.train import runs
from flows.evaluate_publish import run_evaluate, run_publish
from flows.ingest import run_ingest
from flows.runtime import tensorflow_worker
from flows.train import run_train
from tasks.summary import summarize_pipeline

DATA_DIR = "data"
RUNS_DIR = "runs"
REGISTRY_DIR = "registry"


class WhereParams(BaseModel):
    """Where a run reads and writes: the first fields of the pipeline's and the
    comparison's run forms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        title="Source directory",
        description="A Netflix Prize or MovieLens directory on the machine that runs the flow.",
    )
    work: str = Field(
        title="Work directory",
        description="Where the dataset (data/), the runs (runs/) and, by default, the "
        "registry (registry/) go.",
    )
    registry: str | None = optional(
        "Model registry",
        "A directory or a URL such as s3://bucket/models. Default: registry/ in the work "
        "directory.",
    )


class PipelineParams(WhereParams):
    """Where the pipeline reads and writes, and the options of each stage."""

    # The Prefect UI renders this model as the run form (titles and descriptions included).
    model_config = ConfigDict(frozen=True, extra="forbid", title="Pipeline")

    config: PipelineConfig = Field(default_factory=PipelineConfig, title="Options")


@flow(name="pipeline", log_prints=True)
def pipeline_flow(params: PipelineParams) -> dict[str, Any]:
    """Ingest ``source`` into ``work/data``, train in ``work/runs/<run-id>``, evaluate and
    publish to ``registry`` (default ``work/registry``), skipping completed stages.

    Args:
        params: What to run on and where to write; every option shows its default.
    """
    with tensorflow_worker():  # one TensorFlow process for every stage; it loads now
        return _pipeline(params)


def _pipeline(params: PipelineParams) -> dict[str, Any]:
    config, root = params.config, Path(params.work)
    logger = get_run_logger()
    data = str(root / DATA_DIR)
    ingested = run_ingest(params.source, data, config.ingest)
    manifest = load_manifest(data)
    fingerprint = manifest.fingerprint
    # What train.json records as its request: the options resolved for this data (the
    # defaults depend on it), before the validation search chooses any.
    train_cfg = resolve_for(config.train, manifest)
    done = runs.find_trained(root / RUNS_DIR, fingerprint, train_cfg.identity())
    if done is None:
        # An interrupted training of the same data and config resumes from its checkpoint.
        interrupted = runs.find_interrupted(root / RUNS_DIR, fingerprint, train_cfg.identity())
        run_id = runs.new_run_id() if interrupted is None else interrupted.name
        run = str(root / RUNS_DIR / run_id)
        if interrupted is not None:
            logger.info("training resumes %s, interrupted before it finished", run)
        run_train(data, run, config.train, run_id)  # as given: the search needs to know
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
