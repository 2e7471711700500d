"""SVD++ against numpy: the segment sums over N(u), the folded table, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cflib.config import TrainConfig
from cflib.data.implicit import ImplicitSets
from cflib.models import svdpp
from cflib.models.catalog import build_model, spec_of
from cflib.models.io import load_model, save_model
from cflib.registry.export import export_scoring
from cflib.registry.npscore import load as load_scorer

N_USERS, N_ITEMS, DIM = 5, 7, 3
# N(u): user 3 rated nothing (a qualifying-only user would look the same to the model).
SETS = [[0, 2, 5], [1], [6, 0, 3, 4], [], [2, 2, 5]]
BATCH = {
    "user": np.array([2, 0, 2, 3, 4, 1, 0], np.int32),
    "item": np.array([1, 6, 0, 2, 3, 5, 0], np.int32),
}


def csr() -> ImplicitSets:
    offsets = np.cumsum([0, *map(len, SETS)]).astype(np.int64)
    return ImplicitSets(offsets, np.concatenate(SETS).astype(np.int32), N_ITEMS)


def make(l2: float = 0.0, implicit: bool = True) -> svdpp.SVDpp:
    cfg = TrainConfig(model="svdpp", embedding_dim=DIM, l2=l2, l2_bias=l2)
    model = build_model(
        cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.5,
        implicit=csr() if implicit else None,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    for layer in (model.user_embedding, model.item_embedding, model.implicit_embedding):
        layer.set_weights([rng.normal(0, 1, layer.embeddings.shape).astype(np.float32)])
    model.user_bias.set_weights([rng.normal(0, 1, (N_USERS, 1)).astype(np.float32)])
    model.item_bias.set_weights([rng.normal(0, 1, (N_ITEMS, 1)).astype(np.float32)])
    assert isinstance(model, svdpp.SVDpp)
    return model


def expected(model: svdpp.SVDpp, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The formula in float64, one rating at a time."""
    p, q, y, b_u, b_i = (
        np.asarray(getattr(model, name).embeddings, np.float64)
        for name in (
            "user_embedding",
            "item_embedding",
            "implicit_embedding",
            "user_bias",
            "item_bias",
        )
    )
    out = []
    for u, i in zip(users, items, strict=True):
        z = sum((y[j] for j in SETS[u]), np.zeros(DIM)) / np.sqrt(max(len(SETS[u]), 1))
        out.append(3.5 + b_u[u, 0] + b_i[i, 0] + q[i] @ (p[u] + z))
    return np.array(out)


def test_segment_sums_give_the_formula() -> None:
    model = make()
    got = model.predict_on_batch(BATCH)
    assert got.shape == (7,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected(model, BATCH["user"], BATCH["item"]), atol=1e-5)
    assert spec_of("svdpp").implicit and model.scoring_kind == "svdpp"


def test_l2_on_the_implicit_rows_of_each_rating() -> None:
    plain, penalized = make(), make(l2=0.1)
    plain(BATCH)
    assert plain.losses == []
    penalized(BATCH)
    (penalty,) = penalized.losses
    names = ("user_embedding", "item_embedding", "implicit_embedding", "user_bias", "item_bias")
    rows = {k: np.asarray(getattr(penalized, k).embeddings) for k in names}
    users, items = BATCH["user"], BATCH["item"]
    want = sum(np.mean(np.sum(rows[k][ids] ** 2, axis=1)) for k, ids in [
        ("user_embedding", users), ("item_embedding", items), ("user_bias", users),
        ("item_bias", items),
    ])  # fmt: skip
    y2 = np.sum(rows["implicit_embedding"] ** 2, axis=1)
    want += np.mean([np.mean(y2[SETS[u]]) if SETS[u] else 0.0 for u in users])
    assert float(penalty) == pytest.approx(0.1 * want, rel=1e-5)


def test_gradients_reach_only_the_rated_items_y_rows() -> None:
    import tensorflow as tf

    model = make()
    one = {"user": np.array([0], np.int32), "item": np.array([1], np.int32)}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(one))
    (grad,) = tape.gradient(loss, [model.implicit_embedding.embeddings])
    dense = np.asarray(tf.convert_to_tensor(grad))
    assert sorted(np.flatnonzero(np.abs(dense).sum(1))) == sorted(set(SETS[0]))


def test_folded_saved_model_scores_as_the_trained_one(tmp_path: Path) -> None:
    model = make()
    users = np.repeat(np.arange(N_USERS), N_ITEMS).astype(np.int32)
    items = np.tile(np.arange(N_ITEMS), N_USERS).astype(np.int32)
    live = model.predict_on_batch({"user": users, "item": items})
    model.before_save()
    save_model(model, tmp_path / "model.keras")
    loaded = load_model(tmp_path / "model.keras")
    assert isinstance(loaded, svdpp.SVDpp) and loaded._csr is None
    assert loaded.get_config() == model.get_config()
    reloaded = loaded.predict_on_batch({"user": users, "item": items})
    np.testing.assert_allclose(reloaded, live, atol=1e-5)
    # The numpy form: biased-mf's forward pass over p_u + z_u.
    info = export_scoring(loaded, tmp_path / "scoring")
    assert info is not None and info["kind"] == "svdpp" and info["max_abs_diff"] <= 1e-5
    np.testing.assert_allclose(load_scorer(tmp_path / "scoring")(users, items), live, atol=1e-5)


def test_an_unfolded_model_scores_without_the_implicit_term() -> None:
    bare = make(implicit=False)  # no N(u), nothing folded: z_u is 0, biased MF remains
    p, q = np.asarray(bare.user_embedding.embeddings), np.asarray(bare.item_embedding.embeddings)
    b_u, b_i = np.asarray(bare.user_bias.embeddings), np.asarray(bare.item_bias.embeddings)
    u, i = BATCH["user"], BATCH["item"]
    want = 3.5 + b_u[u, 0] + b_i[i, 0] + np.sum(p[u] * q[i], axis=1)
    np.testing.assert_allclose(bare.predict_on_batch(BATCH), want, atol=1e-5)
    assert not np.allclose(want, expected(make(), u, i), atol=1e-2)


def test_fold_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    y = np.random.default_rng(0).normal(0, 1, (N_ITEMS, DIM)).astype(np.float32)
    whole = svdpp.fold(csr(), y)
    monkeypatch.setattr(svdpp, "FOLD_PAIRS", 2)  # a chunk per user or two
    np.testing.assert_allclose(svdpp.fold(csr(), y), whole, rtol=1e-6)
    for u, items in enumerate(SETS):
        want = y[items].sum(0) / np.sqrt(len(items)) if items else np.zeros(DIM)
        np.testing.assert_allclose(whole[u], want, rtol=1e-5, atol=1e-6)


def test_n_u_of_another_dataset_is_refused() -> None:
    sets = ImplicitSets(np.array([0, 1], np.int64), np.array([0], np.int32), N_ITEMS)
    with pytest.raises(ValueError, match="N\\(u\\) is for 1 users and 7 items; the model has 5"):
        make().set_implicit(sets)


def test_lookups_are_padded_to_four_sizes_an_octave() -> None:
    sizes = [int(svdpp.padded_size(n)) for n in (0, 1, 3, 4, 5, 17, 1000, 16_385, 20_481)]
    assert sizes == [1, 1, 3, 4, 5, 20, 1024, 20_480, 24_576]
    many = {int(svdpp.padded_size(n)) for n in range(16_384, 32_768, 97)}
    assert many == {16_384, 20_480, 24_576, 28_672, 32_768}


def test_an_empty_batch_scores_nothing() -> None:
    empty = {"user": np.zeros(0, np.int32), "item": np.zeros(0, np.int32)}
    assert make(l2=0.1)(empty).shape == (0,)
