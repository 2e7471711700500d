"""The Keras models against hand-computed numbers, and their save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cflib.config import MODEL_NAMES, TrainConfig  # noqa: E402
from cflib.errors import ConfigError  # noqa: E402
from cflib.models import MODELS, BiasedMF, DotModel, build_model  # noqa: E402

P = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]], np.float32)  # 3 users, dim 2
Q = np.array([[1.0, 0.0], [0.5, 2.0]], np.float32)  # 2 items
BU = np.array([[0.1], [0.2], [0.3]], np.float32)
BI = np.array([[-0.5], [0.5]], np.float32)
BATCH = {"user": np.array([0, 2, 2], np.int32), "item": np.array([1, 0, 1], np.int32)}
# p0.q1 = 0.5 + 4 = 4.5, p2.q0 = 1, p2.q1 = 2.5
DOT = [4.5, 1.0, 2.5]
# 3.5 + b_u + b_i + dot
BIASED = [3.5 + 0.1 + 0.5 + 4.5, 3.5 + 0.3 - 0.5 + 1.0, 3.5 + 0.3 + 0.5 + 2.5]


def hand_set(model: keras.Model) -> keras.Model:
    model.user_embedding.set_weights([P])
    model.item_embedding.set_weights([Q])
    if isinstance(model, BiasedMF):
        model.user_bias.set_weights([BU])
        model.item_bias.set_weights([BI])
    return model


def make(name: str, l2: float = 0.0) -> keras.Model:
    cfg = TrainConfig(model=name, embedding_dim=2, l2=l2)
    return hand_set(build_model(name, n_users=3, n_items=2, global_mean=3.5, cfg=cfg))


def test_registry_matches_config() -> None:
    assert tuple(MODELS) == MODEL_NAMES
    assert isinstance(make("dot"), DotModel) and isinstance(make("biased-mf"), BiasedMF)


def test_unknown_model_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--model 'svd'.*dot, biased-mf"):
        build_model("svd", n_users=3, n_items=2, global_mean=3.5, cfg=TrainConfig())


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="`n_users` should be a positive integer"):
        DotModel(n_users=0, n_items=2, embedding_dim=2)


@pytest.mark.parametrize(("name", "expected"), [("dot", DOT), ("biased-mf", BIASED)])
def test_hand_computed_predictions(name: str, expected: list[float]) -> None:
    out = make(name).predict_on_batch(BATCH)
    assert out.shape == (3,) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_untrained_biased_mf_predicts_the_global_mean() -> None:
    cfg = TrainConfig(embedding_dim=8)
    model = build_model("biased-mf", n_users=3, n_items=2, global_mean=3.6, cfg=cfg)
    np.testing.assert_allclose(model.predict_on_batch(BATCH), 3.6, atol=1e-2)
    assert model.count_params() == (3 + 2) * (8 + 1)
    assert len(model.non_trainable_weights) == 0  # the mean is a constant, not a weight


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_l2_penalizes_only_the_batch_rows(name: str) -> None:
    model = make(name, l2=0.1)
    model(BATCH)
    (penalty,) = model.losses
    # Batch mean of squared row norms: users 0, 2, 2 and items 1, 0, 1.
    expected = (5 + 2 + 2) / 3 + (4.25 + 1 + 4.25) / 3
    if name == "biased-mf":
        expected += (0.01 + 0.09 + 0.09) / 3 + (0.25 + 0.25 + 0.25) / 3
    np.testing.assert_allclose(float(penalty), 0.1 * expected, rtol=1e-6)
    # Rows outside the batch do not count: user 1 and its bias are not in it.
    model.user_embedding.set_weights([P + np.array([[0], [100], [0]], np.float32)])
    model(BATCH)
    np.testing.assert_allclose(float(model.losses[0]), 0.1 * expected, rtol=1e-6)
    plain = make(name, l2=0.0)
    plain(BATCH)
    assert plain.losses == []


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_l2_of_an_empty_batch_is_zero(name: str) -> None:
    # Under MirroredStrategy a replica can get an empty last batch: no NaN.
    model = make(name, l2=0.1)
    model({"user": np.zeros(0, np.int32), "item": np.zeros(0, np.int32)})
    assert float(model.losses[0]) == 0.0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_round_trip(name: str) -> None:
    model = make(name, l2=0.25)
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert config["l2"] == 0.25 and config["n_users"] == 3
    clone.build({"user": (None,), "item": (None,)})  # from_config builds lazily, like Keras
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict_on_batch(BATCH), model.predict_on_batch(BATCH))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_and_load_in_safe_mode(name: str, tmp_path: Path) -> None:
    model = make(name, l2=0.01)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_on_batch(BATCH), model.predict_on_batch(BATCH))


def test_fit_and_evaluate_reduce_the_error() -> None:
    # Ratings from the hand-set weights; a fresh model fits them.
    rng = np.random.default_rng(0)
    user = rng.integers(0, 3, 256).astype(np.int32)
    item = rng.integers(0, 2, 256).astype(np.int32)
    y = make("biased-mf").predict_on_batch({"user": user, "item": item})
    cfg = TrainConfig(embedding_dim=2)
    model = build_model("biased-mf", n_users=3, n_items=2, global_mean=float(y.mean()), cfg=cfg)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x = {"user": user, "item": item}
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=30, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.1 * before
