"""The model comparison flow: every model trained on one dataset, side by side, and a
linear blend of them (README, "compare-models")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import ConfigDict, Field

from cflib.config import MODEL_NAMES, ModelName, PipelineConfig
from cflib.evaluate.blend import BLEND_MODEL, DEFAULT_L2, not_better, weights_text
from cflib.train.runs import new_run_id
from flows.evaluate_publish import run_evaluate, run_publish
from flows.ingest import run_ingest
from flows.pipeline import DATA_DIR, REGISTRY_DIR, RUNS_DIR, WhereParams
from flows.train import run_train
from tasks.blend import fit_blend, summarize_comparison


class CompareParams(WhereParams):
    """Where the comparison reads and writes, the models it trains and their options."""

    # The Prefect UI renders this model as the run form (titles and descriptions included).
    model_config = ConfigDict(frozen=True, extra="forbid", title="Model comparison")

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
    blend: bool = Field(
        True,
        description="Fit a linear blend of the models on the validation split (two or more "
        "models); publish it when its test RMSE beats the best single model's.",
    )
    blend_l2: float = Field(
        DEFAULT_L2, ge=0, description="Ridge penalty of the blend's weights, per validation row."
    )


def _note(promotion: dict[str, Any]) -> str:
    """The publish decision in a few words."""
    if promotion["promoted"]:
        return f"published, latest ({promotion['reason']})"
    return f"published, not promoted: {promotion['reason']}"


@flow(name="compare-models", log_prints=True)
def compare_flow(params: CompareParams) -> list[dict[str, Any]]:
    """Ingest once, then train, evaluate and publish each model; then blend them; publish
    the comparison as table and Markdown artifacts (best test RMSE first).

    Args:
        params: What to run on, where to write and which models; every option shows its
            default.
    """
    work = Path(params.work)
    data = str(work / DATA_DIR)
    registry = params.registry or str(work / REGISTRY_DIR)
    run_ingest(params.source, data, params.config.ingest)
    rows, trained, test_rmse = [], [], {}
    for model in params.models:
        run_id = new_run_id()
        run = str(work / RUNS_DIR / run_id)
        train_cfg = params.config.train.model_copy(update={"model": model})
        summary = run_train(data, run, train_cfg, run_id)
        metrics = run_evaluate(run, params.config.evaluate)
        published = run_publish(run, registry, params.config.publish)
        trained.append(run)
        test_rmse[model] = metrics["rmse"]
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
                "weights": None,
                "note": _note(published["promotion"]),
            }
        )
    if params.blend and len(trained) >= 2:
        rows.append(_blend(params, work, registry, trained, test_rmse))
    elif params.blend:
        get_run_logger().info("no blend: it needs at least two models")
    rows.sort(key=lambda r: r["test_rmse"])
    summarize_comparison(rows, params.source)
    return rows


def _blend(
    params: CompareParams,
    work: Path,
    registry: str,
    trained: list[str],
    test_rmse: dict[str, float],
) -> dict[str, Any]:
    """Fit, evaluate and (when it beats the best single model) publish the blend; its row."""
    run_id = new_run_id()
    run = str(work / RUNS_DIR / run_id)
    spec = fit_blend(trained, run, run_id, params.blend_l2)
    metrics = run_evaluate(run, params.config.evaluate)
    artifact, note = None, not_better(metrics["rmse"], test_rmse)
    if note is None:
        published = run_publish(run, registry, params.config.publish)
        artifact, note = published["artifact"], _note(published["promotion"])
    get_run_logger().info("blend %s: %s", run_id, note)
    return {
        "model": BLEND_MODEL,
        "test_rmse": round(metrics["rmse"], 4),
        "test_mae": round(metrics["mae"], 4),
        "val_rmse": round(spec["val_rmse"], 4),
        "epochs": None,
        "ratings_per_s": None,
        "run_id": run_id,
        "artifact": artifact,
        "weights": weights_text(spec),
        "note": note,
    }
