"""Metrics on hand-computed arrays and baselines on a tiny dataset with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib.config import IngestConfig
from cflib.data.manifest import load_manifest
from cflib.evaluate import metrics, report
from cflib.evaluate import scoring as evaluate
from cflib.ingest.parallel import ingest_local


def test_error_sums_match_hand_computed() -> None:
    sums = evaluate.ErrorSums()
    sums.add(np.array([3.0, 4.0]), np.array([1.0, 4.0]))
    sums.add(np.array([5.0]), np.array([4.0]))
    result = sums.result()
    assert result["rmse"] == pytest.approx(np.sqrt((4 + 0 + 1) / 3))
    assert result["mae"] == pytest.approx((2 + 0 + 1) / 3)
    assert evaluate.rmse(np.array([1.0, 2.0]), np.array([2.0, 4.0])) == pytest.approx(np.sqrt(2.5))
    assert np.isnan(evaluate.ErrorSums().result()["rmse"])


def test_baselines_on_tiny_dataset(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig(validation_fraction=0.01))
    manifest = load_manifest(out)
    train = pq.read_table(manifest.split_paths(out, "train")[0]).to_pylist()
    base = evaluate.Baselines(manifest, out, seed=0, batch_size=2)

    ratings = [r["rating"] for r in train]
    mu = sum(ratings) / len(ratings)
    assert base.mu == pytest.approx(mu)
    values, counts = np.unique(ratings, return_counts=True)
    assert base.values.tolist() == values.tolist()
    assert base.majority == values[np.argmax(counts)]
    for item in range(manifest.n_items):
        resid = [r["rating"] - mu for r in train if r["item"] == item]
        expected = sum(resid) / (len(resid) + evaluate.ITEM_DAMPING)
        assert base.item_bias[item] == pytest.approx(expected)
    for user in range(manifest.n_users):
        resid = [r["rating"] - mu - base.item_bias[r["item"]] for r in train if r["user"] == user]
        expected = sum(resid) / (len(resid) + evaluate.USER_DAMPING)
        assert base.user_bias[user] == pytest.approx(expected)

    user, item = np.array([0, 1]), np.array([2, 0])
    assert base.predict("global_mean", user, item).tolist() == [mu, mu]
    pred = base.predict("user_item_bias", user, item)
    assert pred[0] == pytest.approx(mu + base.user_bias[0] + base.item_bias[2])
    sampled = base.predict("weighted_sampling", np.zeros(500, int), np.zeros(500, int))
    assert set(sampled.tolist()) <= set(values.tolist())
    with pytest.raises(ValueError, match="`name`"):
        base.predict("nope", user, item)


def test_results_table_orders_baselines() -> None:
    metrics = {
        "model": "biased-mf",
        "rmse": 0.85,
        "mae": 0.66,
        "oracle_rmse": 0.8,
        "baselines": {
            "random": {"rmse": 1.9, "mae": 1.5},
            "global_mean": {"rmse": 1.1, "mae": 0.9},
        },
    }
    rows = report.results_table(metrics)
    assert [r[0] for r in rows] == ["biased-mf (this run)", "global mean", "random (uniform stars)"]
    text = report.format_table(metrics)
    assert "0.8500" in text and "oracle" in text


def test_oracle_is_reported_only_against_the_probe_split(netflix_dir: Path, tmp_path: Path) -> None:
    (netflix_dir / "truth.json").write_text('{"oracle_rmse_probe": 0.79}')
    ingest_local(netflix_dir, tmp_path / "probe", IngestConfig())
    ingest_local(netflix_dir, tmp_path / "random", IngestConfig(split="random"))
    assert evaluate._oracle(load_manifest(tmp_path / "probe")) == 0.79
    assert evaluate._oracle(load_manifest(tmp_path / "random")) is None


def test_block_bootstrap_interval_brackets_the_rmse() -> None:
    rng = np.random.default_rng(1)
    true = rng.integers(1, 6, 20_000).astype(np.float64)
    pred = true + rng.normal(0, 0.9, true.size)
    boot = metrics.BlockBootstrap(seed=0)
    for lo in range(0, true.size, 3000):
        boot.add(pred[lo : lo + 3000], true[lo : lo + 3000])
    lo, hi = boot.interval()
    value = evaluate.rmse(pred, true)
    assert lo < value < hi
    # A row bootstrap's standard error is about value / sqrt(2n) for normal errors.
    assert hi - lo == pytest.approx(2 * 1.96 * value / np.sqrt(2 * true.size), rel=0.25)
    assert np.isnan(metrics.BlockBootstrap(seed=0).interval()).all()


def test_segments_and_distribution_hand_computed() -> None:
    assert metrics.bucket_labels((1, 11, 51)) == ["0", "1-10", "11-50", "51+"]
    seg = metrics.Segments((1, 11), ["model"])
    activity = np.array([0, 3, 10, 11, 400])
    true = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    seg.add(activity, true, {"model": np.array([2.0, 2.0, 5.0, 4.0, 4.0])})
    assert seg.result() == [
        {"bucket": "0", "rows": 1, "model": 1.0},
        {"bucket": "1-10", "rows": 2, "model": pytest.approx(np.sqrt(2.0))},
        {"bucket": "11+", "rows": 2, "model": pytest.approx(np.sqrt(0.5))},
    ]
    dist = metrics.Distribution([1.0, 2.0, 3.0])
    dist.add(np.array([0.2, 1.49, 1.51, 2.9, 7.0]), np.array([1.0, 1.0, 2.0, 3.0, 3.0]))
    assert dist.result() == {"values": [1.0, 2.0, 3.0], "true": [2, 1, 2], "predicted": [2, 1, 2]}


def _netflix_with_unknowns(root: Path) -> Path:
    from tests.conftest import MOVIES, write_netflix

    src = write_netflix(root, MOVIES)
    # Movie 2: a known user, then user 99 and movie 9, which no rating mentions.
    (src / "qualifying.txt").write_text("2:\n20,2005-10-01\n99,2005-10-02\n9:\n10,2005-01-02\n")
    return src


@pytest.mark.slow
def test_evaluate_writes_every_metric_and_the_submission(tmp_path: Path) -> None:
    from cflib.config import EvaluateConfig, TrainConfig
    from cflib.train.loop import train

    src = _netflix_with_unknowns(tmp_path / "src")
    data = tmp_path / "data"
    ingest_local(src, data, IngestConfig(validation_fraction=0.2))
    run = tmp_path / "run"
    train(data, run, TrainConfig(epochs=1, batch_size=4, embedding_dim=2), run_id="r")
    result = evaluate.evaluate(run, EvaluateConfig(batch_size=2))

    manifest = load_manifest(data)
    assert result["n_test"] == manifest.splits["test"].rows == 3
    lo, hi = result["rmse_ci95"]
    assert lo <= result["rmse"] <= hi
    for kind in ("user_activity", "item_popularity"):
        rows = result["segments"][kind]
        assert sum(r["rows"] for r in rows) == 3 and rows[0]["bucket"] == "0"
    assert sum(result["distribution"]["true"]) == sum(result["distribution"]["predicted"]) == 3
    assert result["cinematch_rmse"] == evaluate.CINEMATCH_PROBE_RMSE
    assert result["qualifying"] == {"rows": 3, "file": evaluate.SUBMISSION_FILE}

    lines = (run / evaluate.SUBMISSION_FILE).read_text().splitlines()
    assert [line for line in lines if line.endswith(":")] == ["2:", "9:"]
    assert [lines.index("2:"), lines.index("9:")] == [0, 3] and len(lines) == 5
    values = [float(line) for line in lines if not line.endswith(":")]
    assert all(1.0 <= v <= 5.0 for v in values)
    base = evaluate.Baselines(manifest, data, seed=0, batch_size=2)
    # Movie 9 is unknown: its user's bias over the global mean.
    user10 = int(
        np.flatnonzero(
            pq.read_table(data / "user_map.parquet").column("raw_user").to_numpy() == 10
        )[0]
    )
    assert values[2] == pytest.approx(np.clip(base.mu + base.user_bias[user10], 1, 5), abs=5e-4)
    metrics_file = (run / "metrics.json").read_text()
    assert '"segments"' in metrics_file


def _report_inputs(netflix_dir: Path, tmp_path: Path) -> tuple[dict, dict, object]:
    ingest_local(netflix_dir, tmp_path / "data", IngestConfig())
    manifest = load_manifest(tmp_path / "data")
    rows = [{"bucket": "0", "rows": 1, "model": 1.2, "user_item_bias": None}]
    metrics_ = {
        "run_id": "r1",
        "model": "biased-mf",
        "dataset": "tiny",
        "rmse": 0.85,
        "mae": 0.66,
        "rmse_ci95": [0.84, 0.86],
        "n_test": 3,
        "cold": {"rows": 1, "rmse": 1.2, "mae": 1.2},
        "oracle_rmse": None,
        "cinematch_rmse": 0.9514,
        "baselines": {
            "global_mean": {"rmse": 1.1, "mae": 0.9},
            "user_item_bias": {"rmse": 0.95, "mae": 0.75},
        },
        "segments": {"user_activity": rows, "item_popularity": rows},
        "distribution": {"values": [1.0, 2.0], "true": [1, 2], "predicted": [0, 3]},
        "qualifying": {"rows": 3, "file": "qualifying_predictions.txt"},
        "rating_range": [0.5, 5.0],
    }
    summary = {
        "epochs_run": 2,
        "best_epoch": 2,
        "val_rmse": 0.9,
        "seconds": 1.5,
        "ratings_per_second": 1000.0,
        "strategy": "default",
        "replicas": 1,
        "history": {"rmse": [1.0, 0.9], "val_rmse": [1.0, 0.95], "loss": [1.0, 0.8]},
        "config": {"model": "biased-mf", "note": "<b>not html</b>"},
    }
    return metrics_, summary, manifest


def test_report_renders_every_section(netflix_dir: Path, tmp_path: Path) -> None:
    import base64
    import re

    metrics_, summary, manifest = _report_inputs(netflix_dir, tmp_path)
    md = report.render_markdown(metrics_, summary, manifest)  # type: ignore[arg-type]
    for heading in ("Test metrics", "Training", "Errors by segment", "Data", "Configuration"):
        assert f"\n## {heading}\n" in md
    assert "| biased-mf (this run) | 0.8500 | 0.6600 | 22.7% lower |" in md
    assert "| global mean | 1.1000 | 0.9000 | the same |" in md
    assert "Cinematch (Netflix, on the real probe set) | 0.9514" in md
    assert "0.8400 .. 0.8600" in md and "1 test ratings have a user or item" in md
    assert "| 0 | 1 | 1.2000 |  |" in md  # a bucket without bias RMSE stays empty
    assert "Predictions are clipped to 0.5..5, the range of the training ratings." in md
    # The loss is named for what it includes; the RMSEs come first; no val_loss column.
    header = "| epoch | training RMSE | validation RMSE | loss (squared error + L2 penalty) |"
    assert header in md and "| 2 | 0.9000 | 0.9500 | 0.8000 |" in md
    assert "val_loss" not in md and "the squared error plus the L2 penalty" in md

    page = report.render_html(metrics_, summary, manifest)  # type: ignore[arg-type]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # learning curves, two segment charts, the distribution
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)
    assert "&lt;b&gt;not html&lt;/b&gt;" in page and "<b>0.8500</b>" in page
    assert "src=" not in md


def test_markdown_with_figures_inlines_the_same_pngs(netflix_dir: Path, tmp_path: Path) -> None:
    """The Prefect UI's report: the Markdown with each figure as a PNG data: image (the
    UI renders them; tests/app/test_browser.py checks that in Chromium)."""
    import re

    metrics_, summary, manifest = _report_inputs(netflix_dir, tmp_path)
    md = report.render_markdown(metrics_, summary, manifest, figures=True)  # type: ignore[arg-type]
    found = re.findall(r"^!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)$", md, re.M)
    assert [title for title, _ in found] == [
        "Learning curves",
        "RMSE by user activity",
        "RMSE by item popularity",
        "Predicted vs true ratings",
    ]
    page = report.render_html(metrics_, summary, manifest)  # type: ignore[arg-type]
    assert all(f'src="data:image/png;base64,{png}"' in page for _, png in found)
    plain = report.render_markdown(metrics_, summary, manifest)  # type: ignore[arg-type]
    assert re.sub(r"\n\n!\[[^\n]+", "", md) == plain


def test_html_location_prefers_the_published_copy(tmp_path: Path) -> None:
    run, artifact = tmp_path / "run", tmp_path / "reg" / "d" / "m" / "r1"
    run.mkdir()
    artifact.mkdir(parents=True)
    assert report.html_location(run, None) == str(run / "report.html")
    assert report.html_location(run, str(artifact)) == str(run / "report.html")  # no copy
    (artifact / "report.html").write_text("<p>r</p>")
    assert report.html_location(run, str(artifact)) == str(artifact / "report.html")
    assert report.html_location(run, "s3://b/d/m/r1/") == "s3://b/d/m/r1/report.html"
    assert "file://" not in report.html_location(run, str(artifact))
