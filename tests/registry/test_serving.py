"""Scoring from an artifact alone: the SavedModel signature, predict, recommend, seen pairs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cflib import registry, schema
from cflib.config import PublishConfig
from cflib.registry import ArtifactError
from cflib.registry.export import load_signature
from cflib.registry.seen import SEEN, row_groups_of, seen_items, write_seen
from cflib.registry.serving import UnknownIdError, open_artifact
from tests._artifacts import ingest_tiny, make_run
from tests.conftest import write_netflix

RAW_USERS = [10, 20, 30, 40, 50, 60]
RAW_ITEMS = [1, 2, 3]
# Train and validation pairs of the conftest data (probe.txt's three are the test split).
SEEN_BY = {10: {1, 2}, 20: {3}, 30: {1, 2}, 40: {1, 3}, 50: {2}, 60: set()}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One artifact per model class, published from the conftest Netflix data."""
    root = tmp_path_factory.mktemp("serving")
    data = ingest_tiny(write_netflix(root / "netflix"), root / "data")
    out = {}
    for model in ("biased-mf", "dot"):
        run = make_run(root / "runs", data, f"run-{model}", model=model, seed=3)
        out[model] = Path(registry.publish(run, root / "reg", PublishConfig())["artifact"])
    return out


@pytest.fixture
def biased(published: dict[str, Path]) -> Path:
    return published["biased-mf"]


@pytest.mark.parametrize("model", ["biased-mf", "dot"])
def test_saved_model_signature_matches_the_keras_model(
    published: dict[str, Path], model: str
) -> None:
    art = open_artifact(published[model])
    users = np.repeat(RAW_USERS, len(RAW_ITEMS)).astype(np.int64)
    items = np.tile(RAW_ITEMS, len(RAW_USERS)).astype(np.int64)
    out = load_signature(published[model] / registry.SAVED_MODEL_DIR)(user=users, item=items)
    assert out["rating"].dtype.name == "float32" and out["known"].numpy().all()

    dense = {"user": np.repeat(np.arange(6), 3), "item": np.tile(np.arange(3), 6)}
    keras_pred = art.model.predict_on_batch({k: v.astype(np.int32) for k, v in dense.items()})
    expected = np.clip(np.asarray(keras_pred).reshape(-1), 1.0, 5.0)
    np.testing.assert_allclose(out["rating"].numpy(), expected, rtol=0, atol=1e-5)
    assert expected.std() > 0.05  # the weights are random: the ratings differ


@pytest.mark.parametrize("model", ["biased-mf", "dot"])
def test_saved_model_falls_back_for_unknown_ids(published: dict[str, Path], model: str) -> None:
    art = open_artifact(published[model])
    mean = art.info["global_mean"]
    sig = load_signature(published[model] / registry.SAVED_MODEL_DIR)
    users = np.array([999, 10, 999, 30], np.int64)
    items = np.array([2, 999, 999, 3], np.int64)
    out = sig(user=users, item=items)
    if model == "biased-mf":
        b_u = art.model.user_bias.embeddings.numpy()[:, 0]
        b_i = art.model.item_bias.embeddings.numpy()[:, 0]
        fallback = [mean + b_i[1], mean + b_u[0], mean]
    else:
        fallback = [mean, mean, mean]
    np.testing.assert_allclose(out["rating"].numpy()[:3], np.clip(fallback, 1, 5), atol=1e-5)
    assert out["known"].numpy().tolist() == [False, False, False, True]


def test_predict_scores_raw_ids_with_the_keras_model(biased: Path) -> None:
    art = open_artifact(biased)
    keras_pred = art.model.predict_on_batch(
        {"user": np.array([2], np.int32), "item": np.array([1], np.int32)}
    )
    assert art.predict(30, 2) == pytest.approx(float(np.clip(keras_pred[0], 1, 5)), abs=1e-6)


@pytest.mark.parametrize(("user", "item", "needle"), [(11, 1, "user 11"), (10, 4, "item 4")])
def test_predict_refuses_unknown_ids(biased: Path, user: int, item: int, needle: str) -> None:
    with pytest.raises(UnknownIdError, match=f"{needle}: not in the model's"):
        open_artifact(biased).predict(user, item)


@pytest.mark.parametrize("user", RAW_USERS)
def test_recommend_lists_unrated_items_best_first(biased: Path, user: int) -> None:
    art = open_artifact(biased)
    rows = art.recommend(user, k=10)
    unrated = set(RAW_ITEMS) - SEEN_BY[user]
    assert {r["item"] for r in rows} == unrated
    dense = np.array([art.dense_item(r["item"]) for r in rows], np.int32)
    raw = art.raw_score(np.full(len(rows), art.dense_user(user), np.int32), dense).tolist()
    assert raw == sorted(raw, reverse=True)  # ranked on the unclipped score
    for row in rows:
        assert row["rating"] == pytest.approx(art.predict(user, row["item"]), abs=1e-6)
    titles = {1: ("Dinosaur Planet", 2003), 2: ("Isle of Man TT, 2004 Review", None)}
    titles[3] = ("Caf\xe9 Noir", 1997)
    assert [(r["title"], r["year"]) for r in rows] == [titles[r["item"]] for r in rows]
    assert len(art.recommend(60, k=2)) == 2


def test_recommend_refuses_an_unknown_user(biased: Path) -> None:
    with pytest.raises(UnknownIdError, match="user 70"):
        open_artifact(biased).recommend(70, k=3)


def test_a_tampered_artifact_is_not_opened(biased: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(biased, copy)
    with pq.ParquetWriter(copy / schema.ITEM_MAP_FILE, pa.schema([("raw_item", pa.int64())])) as w:
        w.write_table(pa.table({"raw_item": pa.array([1, 2, 3], pa.int64())}))
    with pytest.raises(ArtifactError, match="item_map.parquet: checksum mismatch"):
        open_artifact(copy)


def test_seen_pairs_in_the_artifact(biased: Path) -> None:
    table = pq.read_table(biased / registry.SEEN_FILE)
    users, items = table.column("user").to_pylist(), table.column("item").to_pylist()
    pairs = set(zip(users, items, strict=True))
    expected = {
        (RAW_USERS.index(u), RAW_ITEMS.index(i)) for u, items in SEEN_BY.items() for i in items
    }
    assert pairs == expected and table.schema == SEEN


def _write_parts(root: Path, user: np.ndarray, item: np.ndarray, n_parts: int) -> list[Path]:
    paths = []
    for k, rows in enumerate(np.array_split(np.arange(len(user)), n_parts)):
        path = root / f"part-{k}.parquet"
        pq.write_table(pa.table({"user": user[rows], "item": item[rows]}), path)
        paths.append(path)
    return paths


def test_write_seen_sorts_across_buckets_and_row_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n_users, n_items, n = 500, 300, 20_000
    flat = rng.choice(n_users * n_items, n, replace=False)
    user, item = (flat // n_items).astype(np.int32), (flat % n_items).astype(np.int32)
    parts = _write_parts(tmp_path, user, item, 3)
    out = tmp_path / "seen.parquet"
    rows = write_seen(parts, n_users, out, bucket_rows=3_000, row_group_rows=1_000)
    assert rows == n
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    table = pq.read_table(out)
    order = np.lexsort((item, user))
    assert table.column("user").to_numpy().tolist() == user[order].tolist()
    assert table.column("item").to_numpy().tolist() == item[order].tolist()
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups >= n // 1_000
    ranges = [
        (meta.row_group(g).column(0).statistics.min, meta.row_group(g).column(0).statistics.max)
        for g in range(meta.num_row_groups)
    ]
    assert all(lo <= hi for lo, hi in ranges)
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    reader = pq.ParquetFile(out)
    for u in (0, 137, 499):
        assert seen_items(out, u).tolist() == sorted(item[user == u].tolist())
        assert 1 <= len(row_groups_of(reader, u)) <= 2  # of about 20


def test_write_seen_of_nothing_is_an_empty_file(tmp_path: Path) -> None:
    empty = np.zeros(0, np.int32)
    parts = _write_parts(tmp_path, empty, empty, 1)
    assert write_seen(parts, 10, tmp_path / "seen.parquet") == 0
    assert pq.read_table(tmp_path / "seen.parquet").schema == SEEN
    assert seen_items(tmp_path / "seen.parquet", 3).tolist() == []


@pytest.mark.slow
def test_trained_model_end_to_end(tmp_path: Path) -> None:
    """A model trained on synthetic data: the SavedModel agrees with Keras on the test
    pairs, predict beats the global mean there, and recommend skips rated items."""
    import json

    from cflib.config import IngestConfig, SynthConfig, TrainConfig
    from cflib.data.manifest import load_manifest
    from cflib.ingest.parallel import ingest_local
    from cflib.synth import generate_netflix
    from cflib.train.loop import train
    from tests._planted import fit_biases

    src = tmp_path / "src"
    # Little noise and a low rank, so that a few epochs learn the factors as well.
    synth = SynthConfig(movies=150, users=400, ratings=20_000, seed=3, rank=2, noise=0.3)
    generate_netflix(src, synth)
    data = tmp_path / "data"
    ingest_local(src, data, IngestConfig(name="synth"))
    run = tmp_path / "run"
    cfg = TrainConfig(epochs=3, batch_size=1024, learning_rate=0.1, embedding_dim=8)
    train(data, run, cfg, run_id="trained")
    test = pq.read_table(load_manifest(data).split_paths(data, "test"))
    # Stand-ins for `cfpipe evaluate`'s files; publish only copies them.
    (run / schema.METRICS_FILE).write_text(json.dumps({"rmse": 0.9, "n_test": test.num_rows}))
    (run / schema.REPORT_FILE).write_text("# report\n")
    art = open_artifact(registry.publish(run, tmp_path / "reg", PublishConfig())["artifact"])

    raw_u = test.column("raw_user").to_numpy()
    raw_i = test.column("raw_item").to_numpy()
    served = load_signature(art.path / registry.SAVED_MODEL_DIR)(user=raw_u, item=raw_i)
    dense_u = test.column("user").to_numpy()
    dense_i = test.column("item").to_numpy()
    keras_pred = art.score(dense_u, dense_i)
    np.testing.assert_allclose(served["rating"].numpy(), keras_pred, atol=1e-5)
    rating = test.column("rating").to_numpy().astype(np.float64)
    rmse = float(np.sqrt(np.mean((keras_pred - rating) ** 2)))
    # Near the planted model (the noise floor), well below what biases alone reach
    # (fitted here by least squares on the train split).
    oracle = json.loads((src / "truth.json").read_text())["oracle_rmse_probe"]
    manifest = load_manifest(data)
    train_split = pq.read_table(manifest.split_paths(data, "train"))
    mu, b_u, b_i = fit_biases(
        *(train_split.column(c).to_numpy() for c in ("user", "item")),
        train_split.column("rating").to_numpy().astype(np.float64),
        manifest.n_users, manifest.n_items,
    )  # fmt: skip
    biases = np.clip(mu + b_u[dense_u] + b_i[dense_i], 1, 5)
    biases_rmse = float(np.sqrt(np.mean((biases - rating) ** 2)))
    assert rmse < oracle + 0.5 * (biases_rmse - oracle)
    assert rmse < 1.15 * oracle
    assert art.predict(int(raw_u[0]), int(raw_i[0])) == pytest.approx(keras_pred[0], abs=1e-6)

    user = int(raw_u[0])
    rows = art.recommend(user, k=5)
    rated = set(art.raw_items[art.seen(art.dense_user(user))].tolist())
    assert len(rows) == min(5, 150 - len(rated)) and rated
    assert not rated & {r["item"] for r in rows}


@pytest.mark.slow
def test_saved_model_loads_without_cfpipe_in_a_fresh_process(biased: Path) -> None:
    """What a TensorFlow server does: only TensorFlow, no cflib, no Keras classes."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, tensorflow as tf\n"
        f"model = tf.saved_model.load({str(biased / 'saved_model')!r})\n"
        "sig = model.signatures['serving_default']\n"
        "user, item = tf.constant([10, 20, 999], tf.int64), tf.constant([1, 3, 2], tf.int64)\n"
        "out = sig(user=user, item=item)\n"
        "print(json.dumps([out['rating'].numpy().tolist(), 'cflib' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratings, imported_cflib = json.loads(proc.stdout.strip().splitlines()[-1])
    art = open_artifact(biased)
    assert not imported_cflib
    assert ratings[:2] == pytest.approx([art.predict(10, 1), art.predict(20, 3)], abs=1e-5)
    item_bias = float(art.model.item_bias.embeddings.numpy()[1, 0])
    assert ratings[2] == pytest.approx(np.clip(art.info["global_mean"] + item_bias, 1, 5), abs=1e-5)


def test_an_artifact_without_seen_pairs_is_shown_but_not_scored(
    biased: Path, tmp_path: Path
) -> None:
    import json

    old = tmp_path / "old"
    shutil.copytree(biased, old)
    (old / registry.SEEN_FILE).unlink()
    info = json.loads((old / registry.ARTIFACT_FILE).read_text())
    del info["files"][registry.SEEN_FILE]
    info["format_version"] = 1
    (old / registry.ARTIFACT_FILE).write_text(json.dumps(info))
    assert open_artifact(old, for_scoring=False).info["format_version"] == 1
    with pytest.raises(ArtifactError, match="older cfpipe without seen.parquet"):
        open_artifact(old)
