"""The run report: metrics against the baselines, learning curves, errors by segment, the
rating distribution, the data and the exact config.

The report is built once as a list of blocks (paragraphs, tables, code, figures) and
rendered twice: ``report.md`` (figures left out) and a self-contained ``report.html``
with the figures embedded as PNG. The Prefect UI gets the Markdown with the figures
inline (``ui_markdown``): its Markdown artifacts render ``data:`` images.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from cflib import schema
from cflib.data.manifest import Manifest, load_manifest
from cflib.evaluate.blocks import (
    CSS,
    Figure,
    Section,
    Table,
    data_uri,
    html_table,
    inline,
    md_table,
)
from cflib.train import runs

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


def table_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The results table as rows for a table artifact: model, rmse, mae (4 decimals)."""
    return [
        {"model": name, "rmse": round(rmse, 4), "mae": round(mae, 4)}
        for name, rmse, mae in results_table(metrics)
    ]


def _references(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    refs = []
    if metrics.get("oracle_rmse") is not None:
        refs.append(("oracle (planted model, noise floor)", metrics["oracle_rmse"]))
    if metrics.get("cinematch_rmse") is not None:
        refs.append(("Cinematch (Netflix, on the real probe set)", metrics["cinematch_rmse"]))
    return refs


def format_table(metrics: dict[str, Any]) -> str:
    """The results table as aligned plain text, for the terminal."""
    rows = results_table(metrics)
    refs = _references(metrics)
    width = max(len(name) for name in [*(r[0] for r in rows), *(r[0] for r in refs)])
    lines = [f"{'model':<{width}}  {'RMSE':>7}  {'MAE':>7}"]
    lines += [f"{name:<{width}}  {r:7.4f}  {a:7.4f}" for name, r, a in rows]
    lines += [f"{name:<{width}}  {r:7.4f}" for name, r in refs]
    if metrics.get("rmse_ci95"):
        lo, hi = metrics["rmse_ci95"]
        lines.append(f"95% bootstrap interval of the model's RMSE: {lo:.4f} .. {hi:.4f}")
    return "\n".join(lines)


def _pct(value: float, ref: float) -> str:
    """How much lower (better) or higher (worse) than the global mean's RMSE, in words."""
    change = (1 - value / ref) * 100
    if abs(change) < 0.05:
        return "the same"
    return f"{abs(change):.1f}% {'lower' if change > 0 else 'higher'}"


def _metrics_section(metrics: dict[str, Any]) -> Section:
    gm = metrics["baselines"]["global_mean"]["rmse"]
    rows = [[name, f"{r:.4f}", f"{a:.4f}", _pct(r, gm)] for name, r, a in results_table(metrics)]
    rows += [[name, f"{r:.4f}", "", ""] for name, r in _references(metrics)]
    blocks: list[str | Table | Figure] = [
        Table(["model", "RMSE", "MAE", "RMSE against the global mean's"], rows)
    ]
    if metrics.get("rmse_ci95"):
        lo, hi = metrics["rmse_ci95"]
        blocks.append(f"95% bootstrap interval of the model's RMSE: {lo:.4f} .. {hi:.4f}.")
    if metrics.get("rating_range"):
        low, high = metrics["rating_range"]
        blocks.append(
            f"Predictions are clipped to {low:g}..{high:g}, the range of the training ratings."
        )
    cold = metrics.get("cold")
    if cold and cold["rows"]:
        blocks.append(
            f"{cold['rows']:,} test ratings have a user or item with no training rating; the "
            f"model scores them all the same (RMSE {cold['rmse']:.4f} on those alone)."
        )
    if metrics.get("qualifying"):
        q = metrics["qualifying"]
        blocks.append(f"Predictions for {q['rows']:,} qualifying ratings: `{q['file']}`.")
    return Section("Test metrics", blocks)


def _replicas(n: int) -> str:
    """A run trained by an older cfpipe, without ``placement``."""
    return "one device" if n == 1 else f"{n} replicas"


#: The per-epoch history in the report, by ``train.json`` key: the RMSEs a user compares,
#: then the training loss, named for what it includes. ``val_loss`` is left out: it is the
#: validation loss with the penalty (plain squared error under multi-worker training).
HISTORY_COLUMNS = {
    "rmse": "training RMSE",
    "val_rmse": "validation RMSE",
    "loss": "loss (squared error + L2 penalty)",
}


def _training_section(summary: dict[str, Any]) -> Section:
    blocks: list[str | Table | Figure] = [
        f"{summary['epochs_run']} epochs (best: {summary['best_epoch']}, validation RMSE "
        f"{summary['val_rmse']:.4f}), {summary['seconds']:.1f} s, "
        f"{summary['ratings_per_second']:,.0f} ratings/s, on "
        f"{summary.get('placement') or _replicas(summary['replicas'])}."
    ]
    refit = summary.get("refit")
    if refit:
        rmse = "" if refit.get("rmse") is None else f", training RMSE {refit['rmse']:.4f}"
        joined = refit.get("averaged")
        scored = "that model" + (
            ", averaged with the early-stopped one (one model of embedding size "
            f"{joined['embedding_dim']})," if joined else ""
        ) + " is the one scored here"  # fmt: skip
        blocks.append(
            f"Then refit from the initial weights on train + validation ({refit['ratings']:,} "
            f"ratings) for {refit['epochs']} epochs{rmse}: {scored} (the validation RMSE is "
            "the early-stopped model's, before the refit)."
        )
    for d in summary.get("divergences") or []:
        blocks.append(
            f"Diverged at epoch {d['epoch']}, batch {d['batch']} ({d['reason']}): restarted "
            f"from the epoch's start with the learning rate halved to {d['learning_rate']:g}."
        )
    history = summary.get("history", {})
    keys = [k for k in HISTORY_COLUMNS if k in history]
    if keys:
        rows = [
            [str(i + 1), *(f"{history[k][i]:.4f}" for k in keys)]
            for i in range(len(history[keys[0]]))
        ]
        blocks.append(Table(["epoch", *(HISTORY_COLUMNS[k] for k in keys)], rows))
        if "loss" in keys:
            blocks.append(
                "The loss is what training minimizes: the squared error plus the L2 "
                "penalty on the embeddings, so it can rise while the RMSEs fall."
            )
    from cflib.evaluate import plots

    png = plots.learning_curves(history)
    if png is not None:
        blocks.append(Figure("Learning curves", png))
    return Section("Training", blocks)


def _blend_section(summary: dict[str, Any]) -> Section:
    """A blend's weights, in place of a trained model's epochs."""
    spec = summary["blend"]
    rows = [
        [f"`{c['model']}` (run `{c['run_id']}`)", f"{c['weight']:.4f}", f"{c['val_rmse']:.4f}"]
        for c in spec["components"]
    ]
    rows.append(["intercept", f"{spec['intercept']:.4f}", ""])
    rows.append(["the blend", "", f"{spec['val_rmse']:.4f}"])
    return Section(
        "Blend",
        [
            f"A linear blend of {len(spec['components'])} models, fitted by ridge regression "
            f"(L2 {spec['l2']:g} per row) on the {spec['n_validation']:,} validation ratings "
            "with the early-stopped models' predictions (before any refit); applied here "
            "to the runs' final models.",
            Table(["component", "weight", "validation RMSE"], rows),
        ],
    )


def _segments_section(metrics: dict[str, Any]) -> Section | None:
    segments = metrics.get("segments")
    if not segments:
        return None
    from cflib.evaluate import plots

    blocks: list[str | Table | Figure] = [
        "Test RMSE by the number of training ratings of the rating's user, then of its item "
        "(bucket 0: none; the model still scores them)."
    ]
    for key, title in (("user_activity", "user activity"), ("item_popularity", "item popularity")):
        rows = segments[key]
        blocks.append(
            Table(
                [title, "test ratings", "model RMSE", "user + item bias RMSE"],
                [
                    [r["bucket"], f"{r['rows']:,}", _opt(r["model"]), _opt(r["user_item_bias"])]
                    for r in rows
                ],
            )
        )
        blocks.append(Figure(f"RMSE by {title}", plots.segments(rows, f"RMSE by {title}")))
    dist = metrics["distribution"]
    blocks.append(
        Table(
            ["rating", "true", "predicted (rounded)"],
            [
                [f"{v:g}", f"{t:,}", f"{p:,}"]
                for v, t, p in zip(dist["values"], dist["true"], dist["predicted"], strict=True)
            ],
        )
    )
    blocks.append(Figure("Predicted vs true ratings", plots.distribution(dist)))
    return Section("Errors by segment", blocks)


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _data_section(manifest: Manifest) -> Section:
    blocks: list[str | Table | Figure] = [
        f"Source `{manifest.source.path}` ({manifest.source.format}, {manifest.source.files:,} "
        f"files, {manifest.source.bytes / 1e6:,.1f} MB), dataset fingerprint "
        f"`{manifest.fingerprint[:16]}`: {manifest.n_users:,} users, {manifest.n_items:,} "
        f"items, test split: {manifest.split}."
    ]
    rows = []
    for split, info in manifest.splits.items():
        mean = info.rating_sum / info.rows if info.rows else float("nan")
        rows.append([split, f"{info.rows:,}", f"{mean:.4f}"])
    blocks.append(Table(["split", "ratings", "mean rating"], rows))
    if manifest.quarantined:
        blocks.append(
            f"{manifest.quarantined:,} malformed source lines were quarantined at ingest "
            "(`quarantine.parquet` in the dataset)."
        )
    return Section("Data", blocks)


def _tuning_section(tuning: dict[str, Any] | None) -> Section | None:
    """The validation search's trials and choice (``train.json``'s ``tuning``)."""
    if not tuning or (tuning["skipped"] == "--no-tune"):
        return None
    if tuning["skipped"]:
        return Section("Validation search", [f"No search: {tuning['skipped']}."])
    fields = tuning["searched"]
    rows = [
        [str(i), *(f"{t['values'][f]:g}" for f in fields), f"{t['val_rmse']:.4f}",
         str(t["epochs"]), f"{t['seconds']:.1f}"]
        for i, t in enumerate(tuning["trials"], 1)
    ]  # fmt: skip
    chosen = ", ".join(f"{k} {v:g}" for k, v in tuning["chosen"].items())
    return Section(
        "Validation search",
        [
            f"{len(rows)} trials of at most {tuning['planned_trials']} (`--tune-budget "
            f"{tuning['budget']:g}`), each trained on the train split and scored on the "
            f"validation split; chosen: {chosen}.",
            Table(["trial", *fields, "validation RMSE", "epochs", "seconds"], rows),
        ],
    )


def build(metrics: dict[str, Any], summary: dict[str, Any], manifest: Manifest) -> list[Section]:
    """The report's sections, in order."""
    trained = _blend_section(summary) if "blend" in summary else _training_section(summary)
    sections = [_metrics_section(metrics), trained]
    segments = _segments_section(metrics)
    if segments is not None:
        sections.append(segments)
    sections.append(_data_section(manifest))
    tuning = _tuning_section(summary.get("tuning"))
    if tuning is not None:
        sections.append(tuning)
    sections.append(Section("Configuration", code=json.dumps(summary["config"], indent=2)))
    return sections


def _headline(metrics: dict[str, Any]) -> str:
    gm = metrics["baselines"]["global_mean"]["rmse"]
    return (
        f"Model `{metrics['model']}` on dataset `{metrics['dataset']}`: test RMSE "
        f"**{metrics['rmse']:.4f}** over {metrics['n_test']:,} ratings "
        f"({_pct(metrics['rmse'], gm)} vs the global mean)."
    )


def render_markdown(
    metrics: dict[str, Any],
    summary: dict[str, Any],
    manifest: Manifest,
    *,
    figures: bool = False,
) -> str:
    """The whole report as Markdown; with ``figures``, each figure inline as a PNG
    ``data:`` image (else they are in the HTML report only)."""
    out = [f"# cfpipe run {metrics['run_id']}", "", _headline(metrics)]
    for section in build(metrics, summary, manifest):
        out += ["", f"## {section.title}"]
        for block in section.blocks:
            if isinstance(block, Table):
                out += ["", *md_table(block)]
            elif isinstance(block, Figure):
                if figures:
                    out += ["", f"![{block.title}]({data_uri(block)})"]
            else:
                out += ["", block]
        if section.code is not None:
            out += ["", "```json", section.code, "```"]
    return "\n".join(out) + "\n"


def render_html(metrics: dict[str, Any], summary: dict[str, Any], manifest: Manifest) -> str:
    """The whole report as one self-contained HTML page, figures embedded as PNG."""
    title = html.escape(f"cfpipe run {metrics['run_id']}")
    out = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>{inline(_headline(metrics))}</p>",
    ]
    for section in build(metrics, summary, manifest):
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(html_table(block))
            elif isinstance(block, Figure):
                alt = html.escape(block.title)
                out.append(
                    f'<figure><img alt="{alt}" src="{data_uri(block)}">'
                    f"<figcaption>{alt}</figcaption></figure>"
                )
            else:
                out.append(f"<p>{inline(block)}</p>")
        if section.code is not None:
            out.append(f"<pre>{html.escape(section.code)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _inputs(run: Path) -> tuple[dict[str, Any], dict[str, Any], Manifest]:
    summary = runs.train_summary(run)
    return runs.metrics(run), summary, load_manifest(summary["data_dir"])


def ui_markdown(run: Path, *, html_report: str | None = None) -> str:
    """The report of an evaluated run as Markdown with its figures inline (the Prefect
    UI's artifacts), headed by where the HTML report is (``html_report``, default
    ``RUN/report.html``) as a path: a browser refuses a ``file://`` link from a page."""
    run = Path(run)
    where = html_report or str((run / schema.REPORT_HTML_FILE).resolve())
    text = render_markdown(*_inputs(run), figures=True)
    title, _, rest = text.partition("\n")
    return f"{title}\n\nHTML report (the same, self-contained): `{where}`\n{rest}"


def html_location(run: Path, artifact: str | None) -> str:
    """Where a run's HTML report is: in its published artifact when that holds one (a
    local registry), else in the run directory; an absolute path (or the artifact's URL)."""
    if artifact is not None:
        if "://" in artifact:
            return f"{artifact.rstrip('/')}/{schema.REPORT_HTML_FILE}"
        published = Path(artifact) / schema.REPORT_HTML_FILE
        if published.is_file():
            return str(published.resolve())
    return str((Path(run) / schema.REPORT_HTML_FILE).resolve())


def write_report(run: Path) -> Path:
    """Write ``RUN/report.md`` and ``RUN/report.html``; return the Markdown report's path."""
    run = Path(run)
    metrics, summary, manifest = _inputs(run)
    _write(run / schema.REPORT_HTML_FILE, render_html(metrics, summary, manifest))
    path = run / schema.REPORT_FILE
    _write(path, render_markdown(metrics, summary, manifest))
    return path
