"""Saving and loading models: a ``model.keras`` file, loaded in Keras' safe mode.

Evaluation, publishing and serving load a trained model from here to score with it,
without importing the training code: the file's training configuration (the optimizer,
``cflib.train.optim.SparseAdagrad``, and the loss) is left unread.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from cflib.errors import DatasetError
from cflib.models.catalog import MODELS


def register_models() -> None:
    """Import every catalogue class, which registers it with Keras for loading."""
    for spec in MODELS.values():
        spec.model_class()


def save_model(model: keras.Model, path: Path) -> None:
    """Write ``model`` to ``path`` atomically: never a half-written file at ``path``."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save(tmp)
    os.replace(tmp, path)


def load_model(path: Path) -> keras.Model:
    """Load a saved ``model.keras`` in safe mode (no arbitrary code), for scoring.

    The model comes back uncompiled (see above): the weights and the architecture, not
    the optimizer's state, which only a training resumed from its checkpoints reads. The
    loaded model's ``predict_on_batch({"user": int32[B], "item": int32[B]})``
    returns a float32 array of shape ``[B]``, not clipped to the rating scale.

    Raises:
        DatasetError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no saved model; is it the --out of `cfpipe train`?")
    register_models()
    return keras.saving.load_model(path, compile=False, safe_mode=True)
