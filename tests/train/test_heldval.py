"""Validation in numpy (cflib.train.valpred.HeldValidation) gives Keras' figures, and is
used by small runs, where Keras would validate otherwise."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.models import sizing
from cflib.models.catalog import build_model, resolve
from cflib.train import tune
from cflib.train.epochs import compile_model
from cflib.train.loop import train
from cflib.train.valpred import HeldValidation
from tests._planted import write_planted
from tests._training import random_batches

N_USERS, N_ITEMS, ROWS = 70, 40, 600


def _rows(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, N_USERS, ROWS).astype(np.int32),
        rng.integers(0, N_ITEMS, ROWS).astype(np.int32),
        rng.integers(1, 6, ROWS).astype(np.float32),
    )


def _trained(model_name: str) -> keras.Model:
    cfg = resolve(
        TrainConfig(model=model_name, embedding_dim=6, batch_size=64, l2=0.05, l2_bias=0.02)
    )
    keras.utils.set_random_seed(3)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=3.2)
    compile_model(model, cfg, tf.distribute.get_strategy(), train_batches=4)
    model.fit(random_batches(N_USERS, N_ITEMS, 64, 4, seed=1), epochs=2, verbose=0)
    return model


@pytest.mark.parametrize("model_name", ["biased-mf", "dot", "deep", "residual"])
def test_numpy_validation_gives_keras_figures(model_name: str) -> None:
    model = _trained(model_name)
    rows = _rows(seed=5)
    held = HeldValidation.of(model, rows)
    assert held is not None
    ours = held.scores(model)
    theirs = model.evaluate(
        {"user": rows[0], "item": rows[1]}, rows[2], batch_size=128, verbose=0, return_dict=True
    )
    # L2-penalized models: the loss is more than the squared error, and Keras agrees.
    if model.l2_weights and any(model.l2_weights.values()):
        assert ours["val_loss"] > ours["val_rmse"] ** 2 + 1e-6
    np.testing.assert_allclose(ours["val_rmse"], theirs["rmse"], rtol=1e-5)
    np.testing.assert_allclose(ours["val_loss"], theirs["loss"], rtol=1e-5)


def test_logs_get_the_figures_for_the_callbacks_after_it() -> None:
    model = _trained("biased-mf")
    held = HeldValidation.of(model, _rows(seed=6))
    assert held is not None
    held.set_model(model)
    logs: dict[str, float] = {"loss": 1.0}
    held.on_epoch_end(0, logs)
    assert set(logs) == {"loss", "val_loss", "val_rmse"}
    assert logs == {"loss": 1.0, **held.scores(model)}


def test_keras_validates_without_held_rows_or_numpy_form() -> None:
    model = _trained("biased-mf")
    assert HeldValidation.of(model, None) is None
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32))
    assert HeldValidation.of(model, empty) is None

    class NoNumpyForm:
        l2_weights: dict[str, float] = {}

        def scoring_arrays(self) -> dict[str, np.ndarray]:
            raise NotImplementedError

    assert HeldValidation.of(NoNumpyForm(), _rows(seed=7)) is None


def test_a_small_run_validates_in_numpy_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials and the fit phase of a run on a held split: every epoch's validation RMSE is
    ``HeldValidation``'s, and Keras' evaluation never runs; the refit does not validate."""
    data = write_planted(tmp_path / "planted")
    monkeypatch.setattr(sizing, "MIN_VALIDATION_ROWS", 0)  # the planted set is small
    monkeypatch.setattr(tune, "MOVES", (("l2", 2.0),))
    scored: list[float] = []
    scores = HeldValidation.scores

    def counted(self: HeldValidation, model: keras.Model) -> dict[str, float]:
        out = scores(self, model)
        scored.append(out["val_rmse"])
        return out

    def no_keras_evaluation(*args: object, **kwargs: object) -> None:
        raise AssertionError("Keras evaluated the validation split")

    monkeypatch.setattr(HeldValidation, "scores", counted)
    monkeypatch.setattr(keras.Model, "evaluate", no_keras_evaluation)
    cfg = TrainConfig(learning_rate=0.1, batch_size=2000, epochs=4, embedding_dim=4)
    summary = train(data, tmp_path / "run", cfg)
    trials = summary["tuning"]["trials"]
    assert len(trials) == 2 and summary["refit"]["epochs"] > 0
    fit_epochs = summary["history"]["val_rmse"]
    # The chosen trial's epochs are the fit phase's first (cflib.train.kept): scored once.
    chosen = min(range(len(trials)), key=lambda k: (trials[k]["val_rmse"], k))
    assert (
        len(scored) == sum(t["epochs"] for t in trials) + len(fit_epochs) - trials[chosen]["epochs"]
    )
    assert set(fit_epochs) <= set(scored)
    assert min(fit_epochs) == summary["val_rmse"] < fit_epochs[0]
