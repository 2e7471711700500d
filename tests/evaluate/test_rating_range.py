"""Predictions are clipped to the training ratings' range: 0.5..5 on half-star data (not
Netflix's 1..5), in the metrics, the SavedModel and ``predict``/``recommend`` alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib import registry, schema
from cflib.config import EvaluateConfig, IngestConfig, PublishConfig
from cflib.data.manifest import load_manifest
from cflib.evaluate.scoring import evaluate
from cflib.ingest.parallel import ingest_local
from cflib.registry.serving import open_artifact
from tests._artifacts import make_run

N_USERS, N_ITEMS = 30, 20


def _half_stars(root: Path) -> Path:
    """A MovieLens ``ratings.csv`` with half stars 0.5..5, every user rating 12 items."""
    rng = np.random.default_rng(5)
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, N_USERS + 1):
        for item in rng.choice(np.arange(1, N_ITEMS + 1), 12, replace=False):
            lines.append(f"{user},{item},{rng.integers(1, 11) / 2},{964982703 + item}")
    root.mkdir(parents=True)
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("half-stars")
    data = root / "data"
    ingest_local(_half_stars(root / "ml-half"), data, IngestConfig(name="half"))
    # Random weights (std 0.6, 4 factors) push many scores past both ends of the range.
    return make_run(root / "runs", data, "half-1", seed=2)


def test_the_manifest_records_the_training_range(run: Path) -> None:
    train = pq.read_table(run.parent.parent / "data" / schema.split_dir("train"))
    ratings = train.column("rating").to_numpy()
    assert load_manifest(run.parent.parent / "data").rating_range == (0.5, 5.0)
    assert (ratings.min(), ratings.max()) == (0.5, 5.0)


def test_metrics_clip_to_the_training_range(run: Path) -> None:
    from cflib.models.io import load_model

    metrics = evaluate(run, EvaluateConfig())
    assert metrics["rating_range"] == [0.5, 5.0]
    data = run.parent.parent / "data"
    test = pq.read_table(data / schema.split_dir("test")).to_pandas()
    model = load_model(run / schema.MODEL_FILE)
    users, items = test["user"].to_numpy(), test["item"].to_numpy()
    raw = np.asarray(model.predict_on_batch({"user": users, "item": items})).reshape(-1)
    assert (raw < 0.5).any()  # the clipping is part of the number
    pred = np.clip(raw.astype(np.float64), 0.5, 5.0)
    truth = test["rating"].astype(np.float64).to_numpy()
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - truth) ** 2))), abs=1e-5)
    # 1..5 would give another number: predictions of 0.5..1 are real on this scale.
    one_to_five = np.clip(raw.astype(np.float64), 1.0, 5.0)
    assert abs(float(np.sqrt(np.mean((one_to_five - truth) ** 2))) - metrics["rmse"]) > 1e-3


def test_serving_clips_to_the_training_range(run: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    if not (run / schema.METRICS_FILE).read_text().count("rating_range"):
        evaluate(run, EvaluateConfig())
    artifact = Path(registry.publish(run, tmp_path / "reg", PublishConfig())["artifact"])
    with open_artifact(str(artifact)) as opened:
        assert opened.rating_range == (0.5, 5.0)
        users = np.repeat(np.arange(N_USERS, dtype=np.int32), N_ITEMS)
        items = np.tile(np.arange(N_ITEMS, dtype=np.int32), N_USERS)
        scores = opened.score(users, items)
        raw = opened.raw_score(users, items)
        assert scores.min() == 0.5 and (raw < 0.5).any()
        np.testing.assert_array_equal(scores, np.clip(raw, 0.5, 5.0))
        raw_users, raw_items = opened.raw_users[users], opened.raw_items[items]
    serve = tf.saved_model.load(str(artifact / "saved_model")).signatures["serving_default"]
    out = serve(user=tf.constant(raw_users), item=tf.constant(raw_items))["rating"].numpy()
    assert out.min() == 0.5 and out.max() <= 5.0
    np.testing.assert_allclose(out, scores, atol=1e-5)
