"""The Keras models against hand-computed numbers, and their save/load round trip."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from cflib.config import MODEL_NAMES, TrainConfig
from cflib.errors import ConfigError
from cflib.models.biased_mf import BiasedMF
from cflib.models.catalog import MODELS, build_model
from cflib.models.dot import DotModel

P = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 1.0]], np.float32)  # 3 users, dim 2
Q = np.array([[1.0, 0.0], [0.5, 2.0]], np.float32)  # 2 items
BU = np.array([[0.1], [0.2], [0.3]], np.float32)
BI = np.array([[-0.5], [0.5]], np.float32)
MF_NAMES = ("dot", "biased-mf")
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
    cfg = TrainConfig(model=name, embedding_dim=2, l2=l2, l2_bias=l2)
    return hand_set(build_model(cfg, n_users=3, n_items=2, global_mean=3.5))


def test_registry_matches_config() -> None:
    assert tuple(MODELS) == MODEL_NAMES
    assert isinstance(make("dot"), DotModel) and isinstance(make("biased-mf"), BiasedMF)


def test_unknown_model_names_the_option() -> None:
    cfg = TrainConfig.model_construct(**{**TrainConfig().model_dump(), "model": "svd"})
    with pytest.raises(ConfigError, match="--model 'svd'.*dot, biased-mf"):
        build_model(cfg, n_users=3, n_items=2, global_mean=3.5)


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
    model = build_model(cfg, n_users=3, n_items=2, global_mean=3.6)
    np.testing.assert_allclose(model.predict_on_batch(BATCH), 3.6, atol=1e-2)
    assert model.count_params() == (3 + 2) * (8 + 1)
    assert len(model.non_trainable_weights) == 0  # the mean is a constant, not a weight


@pytest.mark.parametrize("name", MF_NAMES)
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


@pytest.mark.parametrize("name", MF_NAMES)
def test_l2_of_an_empty_batch_is_zero(name: str) -> None:
    # Under MirroredStrategy a replica can get an empty last batch: no NaN.
    model = make(name, l2=0.1)
    model({"user": np.zeros(0, np.int32), "item": np.zeros(0, np.int32)})
    assert float(model.losses[0]) == 0.0


@pytest.mark.parametrize("name", MF_NAMES)
def test_config_round_trip(name: str) -> None:
    model = make(name, l2=0.25)
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    assert config["l2_user"] == config["l2_item"] == 0.25 and config["n_users"] == 3
    clone.build({"user": (None,), "item": (None,)})  # from_config builds lazily, like Keras
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict_on_batch(BATCH), model.predict_on_batch(BATCH))


@pytest.mark.parametrize("name", MF_NAMES)
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
    model = build_model(cfg, n_users=3, n_items=2, global_mean=float(y.mean()))
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    x = {"user": user, "item": item}
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=30, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.1 * before


# --- the deep models, the registry's defaults, side features and SparseAdagrad ---


def deep_model(name: str, **extra: object) -> keras.Model:
    cfg = TrainConfig(model=name, embedding_dim=4, hidden="8", dropout=0.5)
    return build_model(cfg, n_users=3, n_items=2, global_mean=3.5, **extra)


def side_features() -> object:
    from cflib.data.side import SideFeatures

    return SideFeatures(
        genres=np.array([[1, 0, 1], [0, 1, 0]], np.float32),
        genre_names=["Action", "Drama", "War"],
        title=np.array([[1, 2, 0], [3, 0, 0]], np.int32),
        vocab=["the", "red", "planet"],
        year=np.array([1, 0], np.int32),
        year_min=1999,
        user_codes={"gender": np.array([1, 2, 0], np.int32)},
        user_values={"gender": ["F", "M"]},
    )


def test_residual_starts_as_biased_mf() -> None:
    residual = deep_model("residual")
    mf = build_model(TrainConfig(embedding_dim=4, l2=0.0), n_users=3, n_items=2, global_mean=3.5)
    for layer in ("user_embedding", "item_embedding", "user_bias", "item_bias"):
        getattr(mf, layer).set_weights(getattr(residual, layer).get_weights())
    np.testing.assert_allclose(
        residual.predict_on_batch(BATCH), mf.predict_on_batch(BATCH), rtol=1e-6
    )


def test_deep_is_the_mean_plus_the_mlp_of_both_embeddings() -> None:
    keras.utils.set_random_seed(0)  # the dropout masks below, whatever ran before
    model = deep_model("deep")
    both = np.concatenate(
        [model.user_embedding.get_weights()[0][BATCH["user"]],
         model.item_embedding.get_weights()[0][BATCH["item"]]], axis=1,
    )  # fmt: skip
    expected = 3.5 + model.mlp.predict_on_batch(both)[:, 0]
    np.testing.assert_allclose(model.predict_on_batch(BATCH), expected, rtol=1e-5)
    # Dropout is active in training only: two training calls differ, inference does not.
    a, b = model(BATCH, training=True), model(BATCH, training=True)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model(BATCH), model(BATCH))


@pytest.mark.parametrize("name", ["deep", "residual", "two-tower"])
def test_deep_models_save_and_load_in_safe_mode(name: str, tmp_path: Path) -> None:
    extra = {"side": side_features()} if name == "two-tower" else {}
    model = deep_model(name, **extra)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(
        loaded.predict_on_batch(BATCH), model.predict_on_batch(BATCH), rtol=1e-6
    )


def test_two_tower_reads_its_side_features() -> None:
    keras.utils.set_random_seed(0)  # not the order tests ran in: a ReLU may start dead
    model = deep_model("two-tower", side=side_features())
    config = model.get_config()
    assert (config["n_genres"], config["title_vocab"], config["n_years"]) == (3, 3, 1)
    assert config["n_gender"] == 2
    assert config["n_age"] == config["n_occupation"] == 0  # the side table has no such column
    np.testing.assert_array_equal(model.side_title.numpy(), [[1, 2, 0], [3, 0, 0]])
    np.testing.assert_array_equal(model.side_user["gender"].numpy(), [1, 2, 0])
    # A different title for item 1 changes its predictions, and only its predictions.
    before = model.predict_on_batch(BATCH)
    model.side_title.assign(np.array([[1, 2, 0], [1, 1, 2]], np.int32))
    after = model.predict_on_batch(BATCH)
    items = BATCH["item"]
    np.testing.assert_allclose(after[items == 0], before[items == 0], rtol=1e-6)
    # Small init: a tiny but real change, to every prediction of item 1.
    assert np.all(after[items == 1] != before[items == 1])


def test_mean_tokens_ignores_padding() -> None:
    from cflib.models.text import MeanTokens

    layer = MeanTokens(3, 2)
    layer.build()
    table = np.array([[9, 9], [1, 2], [3, 4], [5, 6]], np.float32)
    layer.tokens.set_weights([table])
    ids = np.array([[1, 2, 0], [0, 0, 0], [3, 0, 0]], np.int32)
    out = layer(ids, layer.lookup(ids))
    np.testing.assert_allclose(out, [[2, 3], [0, 0], [5, 6]])


def test_tokenize_counts_and_pads() -> None:
    from cflib.data.side import tokenize

    ids, vocab = tokenize(["The Red Planet", "the red", None, "Über"], max_tokens=2)
    assert vocab == ["red", "the", "planet", "über"]
    np.testing.assert_array_equal(ids, [[2, 1], [2, 1], [0, 0], [4, 0]])


def test_resolve_fills_the_model_defaults() -> None:
    from cflib.models.catalog import DEFAULTS, resolve

    cfg = resolve(TrainConfig(model="deep", l2=0.3))
    assert cfg.embedding_dim == DEFAULTS["deep"]["embedding_dim"]
    assert cfg.hidden == DEFAULTS["deep"]["hidden"] and cfg.dropout == 0.1
    assert (cfg.l2, cfg.l2_user, cfg.l2_item, cfg.l2_bias) == (0.3, 0.3, 0.3, 0.3)
    assert cfg.learning_rate == 0.05 and cfg.batch_size == 16384
    mf = resolve(TrainConfig(l2_item=0.5, optimizer="adam"))
    assert (mf.l2_user, mf.l2_item, mf.l2_bias) == (0.05, 0.5, 0.005)
    assert mf.learning_rate == 0.002
    assert resolve(mf) == mf  # idempotent: a run's stored config resolves to itself


def test_mlp_options_for_a_model_without_mlp() -> None:
    from cflib.models.catalog import resolve

    with pytest.raises(ConfigError, match="--dropout does not apply to --model biased-mf"):
        resolve(TrainConfig(dropout=0.2))


@pytest.mark.parametrize("value", ["0", "12,x", "", "64,-1"])
def test_hidden_sizes_are_validated(value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hidden"):
        TrainConfig(model="deep", hidden=value)


def test_sparse_adagrad_touches_only_the_looked_up_rows() -> None:
    import tensorflow as tf

    from cflib.train.optim import SparseAdagrad

    table = keras.Variable(np.ones((4, 2), np.float32), name="embeddings")
    dense = keras.Variable(np.ones(3, np.float32), name="kernel")
    opt = SparseAdagrad(learning_rate=0.5, xla_scatter=False, dense_lr_scale=0.2)
    opt.build([table, dense])
    # Rows 1 (twice) and 3 looked up: the batch-mean gradient has one row per lookup.
    values = np.array([[0.3, 0.0], [0.3, 0.4], [0.0, 0.6]], np.float32) / 3
    grad = tf.IndexedSlices(tf.constant(values), tf.constant([1, 1, 3]), tf.constant([4, 2]))
    opt.apply([grad, tf.constant([0.1, 0.0, -0.2])], [table, dense])
    per_lookup = values * 3  # times the number of lookups
    acc1 = (per_lookup[0] ** 2).mean() + (per_lookup[1] ** 2).mean()
    acc3 = (per_lookup[2] ** 2).mean()
    expected = np.ones((4, 2), np.float32)
    expected[1] -= 0.5 * (per_lookup[0] + per_lookup[1]) / np.sqrt(acc1 + 1e-8)
    expected[3] -= 0.5 * per_lookup[2] / np.sqrt(acc3 + 1e-8)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-5)
    assert (table.numpy()[[0, 2]] == 1).all()  # rows outside the batch untouched
    # Dense variables: elementwise Adagrad at lr * dense_lr_scale, so a first step of
    # 0.1 * sign(g) (0 where g = 0).
    np.testing.assert_allclose(dense.numpy(), [0.9, 1.0, 1.1], rtol=1e-5)


@pytest.mark.parametrize(
    ("schedule", "after_one_epoch", "at_the_end"),
    [("constant", 0.1, 0.1), ("cosine", None, 0.001), ("exponential", 0.05, 0.1 * 0.5**4)],
)
def test_learning_rate_schedules(
    schedule: str, after_one_epoch: float | None, at_the_end: float
) -> None:
    from cflib.train.optim import SparseAdagrad, learning_rate, make_optimizer

    cfg = TrainConfig(epochs=4, lr_schedule=schedule, lr_decay=0.5)
    rate = learning_rate(cfg, 0.1, steps_per_epoch=10)
    value = (lambda step: rate) if isinstance(rate, float) else (lambda step: float(rate(step)))
    assert value(0) == pytest.approx(0.1)
    if after_one_epoch is not None:
        assert value(10) == pytest.approx(after_one_epoch, rel=1e-5)
    assert value(40) == pytest.approx(at_the_end, rel=1e-4)
    assert isinstance(make_optimizer(cfg, 0.1, 10), SparseAdagrad)
    adam = make_optimizer(cfg.model_copy(update={"optimizer": "adam"}), 0.1, 10)
    assert isinstance(adam, keras.optimizers.Adam)
