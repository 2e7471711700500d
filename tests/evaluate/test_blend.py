"""The blend of compare-models: ridge weights fitted on validation predictions, the
decision to publish it, and a blend of two real runs evaluated, published and scored
from its artifact with numpy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib import schema
from cflib.config import EvaluateConfig, PublishConfig, SynthConfig, TrainConfig
from cflib.data.manifest import load_manifest
from cflib.errors import DatasetError
from cflib.evaluate import blend


def _ratings(n: int, seed: int = 0) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng, np.clip(np.round(rng.normal(3.6, 1.0, n)), 1, 5)


def test_the_better_model_gets_the_larger_weight() -> None:
    rng, y = _ratings(20_000)
    good = y + rng.normal(0, 0.4, y.size)  # error variance 0.16
    bad = y + rng.normal(0, 0.9, y.size)  # 0.81
    intercept, w = blend.fit_weights(np.stack([bad, good], axis=1), y, l2=0.0)
    # Least squares of y on two unbiased noisy copies: weights about proportional to
    # 1 / error variance (0.81 / 0.16 = 5), summing to a little under 1.
    assert w[1] > 3 * w[0] > 0
    assert 0.8 < w.sum() < 1.0
    fitted = intercept + np.stack([bad, good], axis=1) @ w
    assert np.sqrt(np.mean((fitted - y) ** 2)) < np.sqrt(np.mean((good - y) ** 2))


def test_exact_fit_and_the_l2_shrinks_the_weights() -> None:
    _, y = _ratings(1_000)
    intercept, w = blend.fit_weights((2 * y + 1)[:, None], y, l2=0.0)
    assert w == pytest.approx([0.5]) and intercept == pytest.approx(-0.5)
    _, shrunk = blend.fit_weights((2 * y + 1)[:, None], y, l2=1.0)
    var = np.var(2 * y + 1)  # ridge per row on one centered column: cov / (var + l2)
    assert shrunk == pytest.approx([2 * np.var(y) / (var + 1.0)])


@pytest.mark.parametrize("l2", [0.0, 1e-3])
def test_intercept_only_when_the_predictions_carry_nothing(l2: float) -> None:
    _, y = _ratings(500)
    constant = np.full((y.size, 2), 3.0)  # two models that always say 3
    intercept, w = blend.fit_weights(constant, y, l2=l2)
    assert np.allclose(w, 0.0) and intercept == pytest.approx(y.mean())
    intercept, w = blend.fit_weights(np.zeros((y.size, 0)), y, l2=l2)  # no model at all
    assert w.shape == (0,) and intercept == pytest.approx(y.mean())


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="`l2` should be >= 0"):
        blend.fit_weights(np.ones((3, 1)), np.ones(3), l2=-1.0)
    with pytest.raises(ValueError, match=r"Received: shapes \(3, 1\) and \(2,\)"):
        blend.fit_weights(np.ones((3, 1)), np.ones(2), l2=0.0)


def test_a_blend_not_better_than_the_best_model_is_not_published() -> None:
    singles = {"dot": 0.95, "biased-mf": 0.9012}
    assert blend.not_better(0.9011, singles) is None
    reason = blend.not_better(0.9012, singles)
    assert reason == (
        "not published: test RMSE 0.9012 is not better than the best single model's "
        "(biased-mf, 0.9012)"
    )
    assert blend.not_better(float("nan"), singles) is not None


def test_combine_clips_each_component_first() -> None:
    spec = {"intercept": 0.5, "components": [{"weight": 0.5}, {"weight": 0.25}]}
    out = blend.combine(spec, [np.array([7.0, 2.0]), np.array([0.0, 4.0])])
    assert out == pytest.approx([0.5 + 2.5 + 0.25, 0.5 + 1.0 + 1.0])


def test_numpy_blend_scores_and_refuses_a_tampered_spec(tmp_path: Path) -> None:
    from cflib.registry import npscore
    from cflib.registry.artifact import ArtifactError

    rng = np.random.default_rng(1)
    dot = {"user_embedding": rng.normal(0, 1, (5, 3)), "item_embedding": rng.normal(0, 1, (4, 3))}
    dot = {k: v.astype(np.float32) for k, v in dot.items()}
    mean = {**dot, "user_bias": np.zeros(5, np.float32), "item_bias": np.ones(4, np.float32)}
    mean["global_mean"] = np.float32(3.0)
    out = tmp_path / "scoring"
    components = [("dot", "dot", dot), ("biased-mf", "biased-mf", mean)]
    spec = npscore.write_blend(out, components, 0.25, np.array([0.5, 0.75]))
    assert spec["components"] == ["0-dot", "1-biased-mf"]
    users, items = np.array([0, 4, 2], np.int32), np.array([3, 0, 1], np.int32)
    raw = [npscore.Scorer(kind, arrays)(users, items) for _, kind, arrays in components]
    want = 0.25 + 0.5 * np.clip(raw[0], 1, 5) + 0.75 * np.clip(raw[1], 1, 5)
    assert npscore.load(out)(users, items) == pytest.approx(want, abs=1e-6)
    tampered = {**spec, "components": ["../elsewhere", "1-biased-mf"]}
    (out / npscore.SPEC_FILE).write_text(json.dumps(tampered))
    with pytest.raises(ArtifactError, match="a blend with malformed components or weights"):
        npscore.load(out)


# --- two real runs, blended, evaluated, published -----------------------------------

FAST = {"embedding_dim": 8, "learning_rate": 0.1, "batch_size": 512, "epochs": 3, "patience": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A small synthetic dataset (with id maps, so it publishes), and two evaluated runs
    trained with the refit: biased-mf and dot."""
    from cflib.evaluate.scoring import evaluate
    from cflib.train.loop import train
    from tests._artifacts import ingest_synth

    root = tmp_path_factory.mktemp("blend")
    cfg = SynthConfig(movies=40, users=300, ratings=12_000, probe_fraction=0.05, seed=3)
    data = ingest_synth(root, cfg, "blendset")
    runs = []
    for model in ("biased-mf", "dot"):
        run = root / "runs" / model
        train(data, run, TrainConfig(model=model, **FAST), run_id=f"r-{model}")  # type: ignore[arg-type]
        evaluate(run, EvaluateConfig())
        runs.append(run)
    return data, runs


@pytest.mark.slow
def test_a_blend_of_two_runs_scores_the_same_from_its_artifact(
    trained: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    from cflib.evaluate.report import write_report
    from cflib.evaluate.scoring import evaluate, iter_columns, predictor
    from cflib.registry import listing, publish
    from cflib.registry.serving import open_artifact

    data, runs = trained
    out = tmp_path / "runs" / "b1"
    spec = blend.fit_blend(runs, out, "b1", l2=1e-3)
    # The weights reproduce from the validation files, as fit_weights fits them.
    vals = [pq.read_table(r / schema.VAL_PREDICTIONS_FILE) for r in runs]
    x = np.stack([np.clip(v.column("prediction").to_numpy(), 1, 5) for v in vals], axis=1)
    intercept, w = blend.fit_weights(x, vals[0].column("rating").to_numpy(), 1e-3)
    assert [c["weight"] for c in spec["components"]] == pytest.approx(w.tolist())
    assert spec["intercept"] == pytest.approx(intercept)
    assert [c["model"] for c in spec["components"]] == ["biased-mf", "dot"]
    assert spec["n_validation"] == load_manifest(data).splits["validation"].rows
    assert spec["val_rmse"] <= min(c["val_rmse"] for c in spec["components"]) + 1e-9

    metrics = evaluate(out, EvaluateConfig())
    assert metrics["model"] == "blend" and metrics["val_rmse"] == spec["val_rmse"]
    report = write_report(out).read_text()
    assert "## Blend" in report and f"{spec['components'][1]['weight']:.4f}" in report

    result = publish(out, tmp_path / "reg", PublishConfig())
    artifact = Path(result["artifact"])
    assert artifact == tmp_path / "reg" / "blendset" / "blend" / "b1"
    info = json.loads((artifact / "artifact.json").read_text())
    assert info["model"] == "blend" and info["serving"] is None
    assert info["scoring"]["kind"] == "blend" and info["scoring"]["max_abs_diff"] < 1e-4
    assert not (artifact / schema.MODEL_FILE).exists()
    [row] = listing.list_artifacts(tmp_path / "reg")
    assert (row["model"], row["run_id"], row["rmse"]) == ("blend", "b1", metrics["rmse"])

    # The artifact's numpy scoring is the evaluation's blend, row for row on the test split.
    predict = predictor(out, load_manifest(data).rating_range)
    manifest = load_manifest(data)
    cols = ("user", "item", "rating")
    [test] = list(iter_columns(manifest.split_paths(data, "test"), cols, 1 << 20))
    with open_artifact(artifact) as opened:
        scored = opened.score(test["user"], test["item"])
        assert np.max(np.abs(scored - predict(test["user"], test["item"]))) < 1e-4
        rmse = float(np.sqrt(np.mean((scored.astype(np.float64) - test["rating"]) ** 2)))
        assert rmse == pytest.approx(metrics["rmse"], abs=1e-5)
        raw_user = int(opened.raw_users[test["user"][0]])
        raw_item = int(opened.raw_items[test["item"][0]])
        assert opened.predict(raw_user, raw_item) == pytest.approx(float(scored[0]), abs=1e-6)
        unseen = len(opened.raw_items) - len(opened.seen(int(test["user"][0])))
        assert len(opened.recommend(raw_user, 3)) == min(3, unseen) > 0


@pytest.mark.slow
def test_runs_that_cannot_be_blended(trained: tuple[Path, list[Path]], tmp_path: Path) -> None:
    _, runs = trained
    with pytest.raises(DatasetError, match="a blend needs at least two trained runs; got 1"):
        blend.fit_blend(runs[:1], tmp_path / "b", "b", l2=0.0)
    old = tmp_path / "old"
    old.mkdir()
    (old / schema.TRAIN_SUMMARY_FILE).write_bytes(
        (runs[1] / schema.TRAIN_SUMMARY_FILE).read_bytes()
    )
    with pytest.raises(DatasetError, match=r"old/val_predictions.parquet: missing; .* train it"):
        blend.fit_blend([runs[0], old], tmp_path / "b", "b", l2=0.0)
    assert not (tmp_path / "b").exists()
