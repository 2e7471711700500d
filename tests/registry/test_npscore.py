"""The numpy form of every catalogue model: the same scores as Keras, without TensorFlow.

Each model is trained briefly on a tiny MovieLens 100K directory that has every side
feature (user gender, age and occupation; item genres, titles and years) and published;
the artifact's ``scoring/`` must score every (user, item) pair, the first and last dense
ids included, as the Keras model does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cflib import registry, schema
from cflib.config import IngestConfig, PublishConfig, TrainConfig
from cflib.data.manifest import load_manifest
from cflib.ingest.parallel import ingest_local
from cflib.models.catalog import MODELS
from cflib.registry import npscore
from cflib.registry.artifact import SCORING_DIR, ArtifactError
from cflib.registry.serving import open_artifact

N_USERS, N_ITEMS = 40, 24
WORDS = ["red", "planet", "night", "story", "dark", "city", "love", "war"]
GENRES_100K = 19


def _write_ml100k(root: Path) -> Path:
    """A MovieLens 100K directory: 40 users with every feature, 24 items, ~480 ratings."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    lines = []
    for u in range(1, N_USERS + 1):
        for i in sorted(rng.choice(N_ITEMS, 12, replace=False) + 1):
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{881250949 + len(lines) * 60}\n")
    (root / "u.data").write_text("".join(lines))
    items = []
    for i in range(1, N_ITEMS + 1):
        # Some titles of one token, some of four; one item with no genre, two with no year.
        title = " ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 1 + i % 4 + 1))
        date = "" if i in (5, 17) else f"01-Jan-{1980 + i % 9}"
        year = "" if i in (5, 17) else f" ({1980 + i % 9})"
        flags = ["1" if i != 9 and g in (i % 5, i % 7 + 5) else "0" for g in range(GENRES_100K)]
        items.append(f"{i}|{title.title()}{year}|{date}||http://x|{'|'.join(flags)}")
    (root / "u.item").write_text("\n".join(items) + "\n")
    jobs = ["technician", "writer", "other", "student"]
    users = [
        f"{u}|{18 + u % 50}|{'MF'[u % 2]}|{jobs[u % 4]}|0{u:04d}" for u in range(1, N_USERS + 1)
    ]
    (root / "u.user").write_text("\n".join(users) + "\n")
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One artifact per catalogue model, trained for one epoch and published."""
    from cflib.train.loop import train

    root = tmp_path_factory.mktemp("npscore")
    data = root / "data"
    ingest_local(_write_ml100k(root / "ml-100k"), data, IngestConfig(name="tiny-ml"))
    manifest = load_manifest(data)
    assert (manifest.n_users, manifest.n_items) == (N_USERS, N_ITEMS)
    out = {}
    for name in MODELS:
        run = root / "runs" / name
        options = {"embedding_dim": 8, "batch_size": 64, "epochs": 1, "learning_rate": 0.1}
        cfg = TrainConfig.model_validate({"model": name, **options})
        train(data, run, cfg, run_id=f"r-{name}")
        # Stand-ins for `cfpipe evaluate`'s files; publish only copies them.
        (run / schema.METRICS_FILE).write_text(json.dumps({"rmse": 0.9, "n_test": 1}))
        (run / schema.REPORT_FILE).write_text("# report\n")
        out[name] = Path(registry.publish(run, root / "reg", PublishConfig())["artifact"])
    return out


def _all_pairs() -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(N_USERS), N_ITEMS).astype(np.int32)
    return users, np.tile(np.arange(N_ITEMS), N_USERS).astype(np.int32)


def _without_scoring(artifact: Path, to: Path) -> Path:
    """A copy of ``artifact`` as a cfpipe before ``scoring/`` published it."""
    shutil.copytree(artifact, to)
    shutil.rmtree(to / SCORING_DIR)
    info = json.loads((to / registry.ARTIFACT_FILE).read_text())
    info["files"] = {k: v for k, v in info["files"].items() if not k.startswith("scoring/")}
    del info["scoring"]
    (to / registry.ARTIFACT_FILE).write_text(json.dumps(info))
    return to


@pytest.mark.parametrize("name", list(MODELS))
def test_numpy_scores_equal_the_keras_model(published: dict[str, Path], name: str) -> None:
    art = open_artifact(published[name])
    assert isinstance(art.scorer, npscore.Scorer) and art.scorer.kind == name
    users, items = _all_pairs()
    expected = np.asarray(art.model.predict_on_batch({"user": users, "item": items}))
    got = art.raw_score(users, items)
    assert got.dtype == np.float32 and got.shape == (N_USERS * N_ITEMS,)
    np.testing.assert_allclose(got, expected.reshape(-1), rtol=0, atol=1e-5)
    assert expected.std() > 1e-3  # trained: the pairs' scores differ
    # The corners of the id ranges, one pair at a time as `cfpipe predict` scores them.
    for u, i in [(0, 0), (0, N_ITEMS - 1), (N_USERS - 1, 0), (N_USERS - 1, N_ITEMS - 1)]:
        one = art.raw_score(np.array([u]), np.array([i]))
        assert one[0] == pytest.approx(float(expected.reshape(-1)[u * N_ITEMS + i]), abs=1e-5)
    assert art.info["scoring"]["max_abs_diff"] <= 1e-5


def test_the_two_tower_form_reads_every_side_feature(published: dict[str, Path]) -> None:
    spec = json.loads((published["two-tower"] / SCORING_DIR / npscore.SPEC_FILE).read_text())
    assert spec["kind"] == "two-tower" and spec["format"] == npscore.FORMAT
    for feature in ("gender", "age", "occupation"):
        assert {f"side_{feature}", f"{feature}_embedding"} <= set(spec["arrays"])
    for side, table in [("genres", "genre"), ("title", "token"), ("year", "year")]:
        assert {f"side_{side}", f"{table}_embedding"} <= set(spec["arrays"])
    scorer = npscore.load(published["two-tower"] / SCORING_DIR)
    assert scorer.arrays["user_features"].tolist() == ["gender", "age", "occupation"]
    title = np.asarray(scorer.arrays["side_title"])
    assert (title == 0).any() and (title[:, 1:] != 0).any()  # padding and long titles


@pytest.mark.parametrize("name", list(MODELS))
def test_recommend_ranks_as_the_keras_model(
    published: dict[str, Path], name: str, tmp_path: Path
) -> None:
    art = open_artifact(published[name])
    old = open_artifact(_without_scoring(published[name], tmp_path / "old"))
    assert not isinstance(old.scorer, npscore.Scorer)  # an older artifact: Keras scores it
    for user in (art.raw_users[0], art.raw_users[17], art.raw_users[-1]):
        rows, keras_rows = art.recommend(int(user), k=10), old.recommend(int(user), k=10)
        assert [r["item"] for r in rows] == [r["item"] for r in keras_rows]
        for row, keras_row in zip(rows, keras_rows, strict=True):
            assert row["rating"] == pytest.approx(keras_row["rating"], abs=1e-5)
    raw_u, raw_i = int(art.raw_users[-1]), int(art.raw_items[-1])
    assert art.predict(raw_u, raw_i) == pytest.approx(old.predict(raw_u, raw_i), abs=1e-5)


def test_a_tampered_scoring_file_is_refused(published: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(published["biased-mf"], copy)
    bias = copy / SCORING_DIR / "item_bias.npy"
    array = np.load(bias)
    array[0] += 1.0
    np.save(bias, array)
    with pytest.raises(ArtifactError, match="scoring/item_bias.npy: checksum mismatch"):
        open_artifact(copy)

    shutil.copytree(published["biased-mf"], tmp_path / "extra")
    np.save(tmp_path / "extra" / SCORING_DIR / "item_bias_2.npy", array)
    with pytest.raises(ArtifactError, match="item_bias_2.npy: not listed"):
        open_artifact(tmp_path / "extra")


def test_load_refuses_another_format_or_kind(tmp_path: Path) -> None:
    npscore.write(tmp_path / "s", "dot", {"user_embedding": np.ones((2, 3), np.float32)})
    spec = json.loads((tmp_path / "s" / npscore.SPEC_FILE).read_text())
    for change in ({"kind": "wide-and-deep"}, {"format": npscore.FORMAT + 1}):
        (tmp_path / "s" / npscore.SPEC_FILE).write_text(json.dumps({**spec, **change}))
        with pytest.raises(ArtifactError, match="written by another cfpipe"):
            npscore.load(tmp_path / "s")
    with pytest.raises(ValueError, match="`kind` should be one of"):
        npscore.write(tmp_path / "t", "wide-and-deep", {})


def test_layers_against_hand_computed_arrays() -> None:
    from cflib.models.mlp import NUMPY_ACTIVATIONS

    assert sorted(NUMPY_ACTIVATIONS) == sorted(npscore._ACTIVATIONS)  # what models export
    a = {
        "mlp.0.kernel": np.array([[1.0, -1.0], [2.0, 0.5]], np.float32),
        "mlp.0.bias": np.array([0.0, 0.25], np.float32),
        "mlp.1.kernel": np.array([[2.0], [4.0]], np.float32),
        "mlp.1.bias": np.array([1.0], np.float32),
        "mlp.activations": np.array(["relu", "linear"]),
    }
    x = np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    # [1, 1] -> relu([3, -0.25]) = [3, 0] -> 7; [1, -1] -> relu([-1, -1.25]) = 0 -> 1
    assert npscore.dense_stack(a, "mlp", x)[:, 0].tolist() == [7.0, 1.0]
    table = np.array([[9.0, 9.0], [1.0, 2.0], [3.0, 6.0]], np.float32)  # row 0: padding
    tokens = np.array([[1, 2, 0], [0, 0, 0], [2, 0, 0]])
    assert npscore._mean_tokens(tokens, table).tolist() == [[2.0, 4.0], [0.0, 0.0], [3.0, 6.0]]


def test_publishing_refuses_a_numpy_form_that_does_not_match(tmp_path: Path) -> None:
    """A subclass that changes ``score`` but not ``scoring_kind``: export_scoring says so."""
    from cflib.models.biased_mf import BiasedMF
    from cflib.registry.export import export_scoring

    class Shifted(BiasedMF):
        def score(self, rows: dict, training: bool = False):  # type: ignore[no-untyped-def, type-arg]
            return super().score(rows, training) + 0.5

    model = Shifted(5, 4, 2, 3.5, name="shifted")
    model.build({"user": (None,), "item": (None,)})
    with pytest.raises(RuntimeError, match=r"differs from the Keras model by 0\.5"):
        export_scoring(model, tmp_path / "scoring")

    class NoNumpy(BiasedMF):
        def scoring_arrays(self) -> dict[str, np.ndarray]:
            raise NotImplementedError

    model = NoNumpy(5, 4, 2, 3.5, name="no_numpy")
    model.build({"user": (None,), "item": (None,)})
    assert export_scoring(model, tmp_path / "none") is None
    assert not (tmp_path / "none").exists()
