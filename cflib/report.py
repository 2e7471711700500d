"""The run report: the metrics table against the baselines, training and data summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cflib import runs, schema
from cflib.dataset import Manifest, load_manifest

_LABELS = {
    "global_mean": "global mean",
    "random": "random (uniform stars)",
    "weighted_sampling": "weighted sampling",
    "majority_class": "majority class",
    "user_item_bias": "user + item bias",
}


def results_table(metrics: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(name, RMSE, MAE) rows: the model first, then the baselines from best to worst."""
    rows = [(f"{metrics['model']} (this run)", metrics["rmse"], metrics["mae"])]
    base = sorted(metrics["baselines"].items(), key=lambda kv: kv[1]["rmse"])
    rows += [(_LABELS.get(name, name), m["rmse"], m["mae"]) for name, m in base]
    return rows


def format_table(metrics: dict[str, Any]) -> str:
    """The results table as aligned plain text, for the terminal."""
    rows = results_table(metrics)
    width = max(len(r[0]) for r in rows)
    lines = [f"{'model':<{width}}  {'RMSE':>7}  {'MAE':>7}"]
    lines += [f"{name:<{width}}  {r:7.4f}  {a:7.4f}" for name, r, a in rows]
    if metrics.get("oracle_rmse") is not None:
        lines.append(f"{'oracle (planted model)':<{width}}  {metrics['oracle_rmse']:7.4f}")
    return "\n".join(lines)


def render_markdown(metrics: dict[str, Any], summary: dict[str, Any], manifest: Manifest) -> str:
    """The whole report as Markdown."""
    gm = metrics["baselines"]["global_mean"]["rmse"]
    out = [
        f"# cfpipe run {metrics['run_id']}",
        "",
        f"Model `{metrics['model']}` on dataset `{metrics['dataset']}`: test RMSE "
        f"**{metrics['rmse']:.4f}** over {metrics['n_test']:,} ratings "
        f"({(1 - metrics['rmse'] / gm) * 100:+.1f}% vs the global mean).",
        "",
        "## Test metrics",
        "",
        "| model | RMSE | MAE | RMSE vs global mean |",
        "|---|---:|---:|---:|",
    ]
    for name, r, a in results_table(metrics):
        out.append(f"| {name} | {r:.4f} | {a:.4f} | {(1 - r / gm) * 100:+.1f}% |")
    if metrics.get("oracle_rmse") is not None:
        out.append(f"| oracle (planted model, noise floor) | {metrics['oracle_rmse']:.4f} | | |")
    out += ["", "## Training", ""]
    out.append(
        f"{summary['epochs_run']} epochs (best: {summary['best_epoch']}, validation RMSE "
        f"{summary['val_rmse']:.4f}), {summary['seconds']:.1f} s, "
        f"{summary['ratings_per_second']:,.0f} ratings/s, {summary['strategy']} with "
        f"{summary['replicas']} replica(s)."
    )
    history = summary.get("history", {})
    keys = [k for k in ("loss", "rmse", "val_loss", "val_rmse") if k in history]
    if keys:
        out += ["", "| epoch | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for i in range(len(history[keys[0]])):
            out.append(f"| {i + 1} | " + " | ".join(f"{history[k][i]:.4f}" for k in keys) + " |")
    out += ["", "## Data", ""]
    out.append(
        f"Source `{manifest.source.path}` ({manifest.source.format}), dataset fingerprint "
        f"`{manifest.fingerprint[:16]}`: {manifest.n_users:,} users, {manifest.n_items:,} items."
    )
    out += ["", "| split | ratings | mean rating |", "|---|---:|---:|"]
    for split, info in manifest.splits.items():
        mean = info.rating_sum / info.rows if info.rows else float("nan")
        out.append(f"| {split} | {info.rows:,} | {mean:.4f} |")
    out += [
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(summary["config"], indent=2),
        "```",
        "",
    ]
    return "\n".join(out)


def write_report(run: Path) -> Path:
    """Write ``RUN/report.md`` from the run's train summary and metrics."""
    run = Path(run)
    summary = runs.train_summary(run)
    metrics = runs.metrics(run)
    manifest = load_manifest(summary["data_dir"])
    path = run / schema.REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_markdown(metrics, summary, manifest))
    tmp.replace(path)
    return path
