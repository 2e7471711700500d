"""The model comparison flow: every model trained on one dataset, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, Field

from cflib.config import MODEL_NAMES, ModelName, PipelineConfig, optional
from cflib.train.runs import new_run_id
from flows.evaluate_publish import run_evaluate, run_publish
from flows.ingest import run_ingest
from flows.pipeline import DATA_DIR, REGISTRY_DIR, RUNS_DIR
from flows.train import run_train


class CompareParams(BaseModel):
    """Where the comparison reads and writes, the models it trains and their options."""

    # The Prefect UI renders this model as the run form (titles and descriptions included).
    model_config = ConfigDict(frozen=True, extra="forbid", title="Model comparison")

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
    # A plain default (pydantic copies it per instance), so the form shows every model
    # selected; a default_factory has no default in the JSON schema.
    models: list[ModelName] = Field(
        list(MODEL_NAMES),
        min_length=1,
        title="Models",
        description="The models to train, one run each. Default: every model.",
    )
    config: PipelineConfig = Field(
        default_factory=PipelineConfig,
        title="Options",
        description="The same for every model, except the training's model.",
    )


@flow(name="compare-models", log_prints=True)
def compare_flow(params: CompareParams) -> list[dict[str, Any]]:
    """Ingest once, then train, evaluate and publish each model; publish the comparison
    as a table artifact (best test RMSE first).

    Args:
        params: What to run on, where to write and which models; every option shows its
            default.
    """
    work = Path(params.work)
    data = str(work / DATA_DIR)
    run_ingest(params.source, data, params.config.ingest)
    rows = []
    for model in params.models:
        run_id = new_run_id()
        run = str(work / RUNS_DIR / run_id)
        train_cfg = params.config.train.model_copy(update={"model": model})
        summary = run_train(data, run, train_cfg, run_id)
        metrics = run_evaluate(run, params.config.evaluate)
        published = run_publish(
            run, params.registry or str(work / REGISTRY_DIR), params.config.publish
        )
        rows.append(
            {
                "model": model,
                "test_rmse": round(metrics["rmse"], 4),
                "test_mae": round(metrics["mae"], 4),
                "val_rmse": round(summary["val_rmse"], 4),
                "epochs": summary["epochs_run"],
                "ratings_per_s": round(summary["ratings_per_second"]),
                "run_id": run_id,
                "artifact": published["artifact"],
            }
        )
    rows.sort(key=lambda r: r["test_rmse"])
    create_table_artifact(
        rows, key="model-comparison", description=f"Every model on {params.source}"
    )
    get_run_logger().info("best: %s (test RMSE %.4f)", rows[0]["model"], rows[0]["test_rmse"])
    return rows
