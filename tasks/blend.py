"""Prefect tasks of the comparison's blend: fit it, and summarize the comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from cflib.evaluate import blend
from cflib.evaluate.blocks import Table, md_table


@task(name="fit-blend")
def fit_blend(runs: list[str], out: str, run_id: str, l2: float) -> dict[str, Any]:
    """Fit a linear blend of the trained runs on their validation predictions; the blend
    becomes the run directory ``out``. Returns ``blend.json``'s content."""
    spec = blend.fit_blend([Path(r) for r in runs], Path(out), run_id, l2)
    get_run_logger().info(
        "blend %s: %s (validation RMSE %.4f)", run_id, blend.describe(spec), spec["val_rmse"]
    )
    return spec


_COLUMNS = ("model", "test_rmse", "test_mae", "val_rmse", "epochs", "run_id", "weights", "note")


@task(name="summarize-comparison")
def summarize_comparison(rows: list[dict[str, Any]], source: str) -> None:
    """The comparison as a table artifact (``model-comparison``) and a Markdown one
    (``model-comparison-report``): each model and the blend, best test RMSE first."""
    create_table_artifact(rows, key="model-comparison", description=f"Every model on {source}")
    cells = [["" if r.get(c) is None else str(r[c]) for c in _COLUMNS] for r in rows]
    text = "\n".join(
        [
            f"# Model comparison on `{source}`",
            "",
            *md_table(Table(list(_COLUMNS), cells, align="lrrrrlll")),
            "",
            *(f"- {r['model']}: {r['note']}" for r in rows if r.get("note")),
        ]
    )
    create_markdown_artifact(
        text + "\n", key="model-comparison-report", description=f"Every model on {source}"
    )
    best = rows[0]
    get_run_logger().info("best: %s (test RMSE %.4f)", best["model"], best["test_rmse"])
