"""Two factor models as one (cflib.models.average): the joined model scores the mean of
the two, exactly, and is of the same class; models with an MLP have no such form."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cflib.config import TrainConfig
from cflib.models.average import averaged, joinable
from cflib.models.catalog import build_model, resolve

N_USERS, N_ITEMS = 30, 20


def _weights(model: keras.Model, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()]


def _scores(model: keras.Model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_on_batch({"user": users, "item": items})).reshape(-1)


@pytest.mark.parametrize("name", ["dot", "biased-mf", "svdpp"])
def test_the_joined_model_scores_the_mean_of_the_two(name: str) -> None:
    cfg = resolve(TrainConfig(model=name, embedding_dim=3, l2=0.05))
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.4)
    assert joinable(model)
    first, second = _weights(model, 1), _weights(model, 2)
    users = np.arange(N_USERS, dtype=np.int32).repeat(N_ITEMS)
    items = np.tile(np.arange(N_ITEMS, dtype=np.int32), N_USERS)
    model.set_weights(first)
    a = _scores(model, users, items)
    model.set_weights(second)
    b = _scores(model, users, items)
    joined = averaged(model, first, second)
    assert joined is not None and type(joined) is type(model)
    assert joined.embedding_dim == 6
    assert getattr(joined, "global_mean", 3.4) == pytest.approx(3.4)
    assert not np.allclose(a, b)  # two models that differ
    np.testing.assert_allclose(_scores(joined, users, items), (a + b) / 2, rtol=1e-5, atol=1e-5)
    # numpy scoring (what a published model is served by) reads the joined tables too
    assert joined.scoring_arrays()["user_embedding"].shape == (N_USERS, 6)


@pytest.mark.parametrize("name", ["deep", "residual"])
def test_models_with_an_mlp_have_no_joined_form(name: str) -> None:
    model = build_model(
        resolve(TrainConfig(model=name, embedding_dim=3)),
        n_users=N_USERS, n_items=N_ITEMS, global_mean=3.4,
    )  # fmt: skip
    assert not joinable(model)
    assert averaged(model, model.get_weights(), model.get_weights()) is None


def test_weights_of_another_model_are_refused() -> None:
    model = build_model(
        resolve(TrainConfig(model="dot", embedding_dim=3)), n_users=N_USERS, n_items=N_ITEMS,
        global_mean=3.4,
    )  # fmt: skip
    with pytest.raises(ValueError, match="1 and 2 weights for a model of 2"):
        averaged(model, model.get_weights()[:1], model.get_weights())
