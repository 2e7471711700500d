"""The model comparison flow: every model trained on one dataset, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, ConfigDict, Field

from cflib.config import MODEL_NAMES, ModelName, PipelineConfig
from cflib.train.runs import new_run_id
from flows.evaluate_publish import run_evaluate, run_publish
from flows.ingest import run_ingest
from flows.pipeline import DATA_DIR, REGISTRY_DIR, RUNS_DIR
from flows.train import run_train


class CompareParams(BaseModel):
    """What the comparison runs on; the Prefect UI renders this as the run form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Source directory (Netflix Prize or MovieLens).")
    work: str = Field(description="Work directory: data/, runs/, registry/.")
    registry: str | None = Field(None, description="Model registry (default: WORK/registry).")
    models: list[ModelName] = Field(
        default_factory=lambda: list(MODEL_NAMES), min_length=1, description="Models to train."
    )
    config: PipelineConfig = Field(
        default_factory=PipelineConfig,
        description="Options of every stage; train.model is replaced by each of `models`.",
    )


@flow(name="compare-models", log_prints=True)
def compare_flow(params: CompareParams) -> list[dict[str, Any]]:
    """Ingest once, then train, evaluate and publish each model; publish the comparison
    as a table artifact (best test RMSE first)."""
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
