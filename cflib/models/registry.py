"""Model names -> classes, and the one function that builds a model from a TrainConfig."""

from __future__ import annotations

import keras

from cflib.config import TrainConfig
from cflib.errors import ConfigError
from cflib.models.biased_mf import BiasedMF
from cflib.models.dot import DotModel

#: ``--model`` value -> model class; the keys are ``cflib.config.MODEL_NAMES``.
MODELS: dict[str, type[keras.Model]] = {"dot": DotModel, "biased-mf": BiasedMF}


def build_model(
    name: str, *, n_users: int, n_items: int, global_mean: float, cfg: TrainConfig
) -> keras.Model:
    """Build (with weights) the model ``name`` for a dataset's sizes.

    Call it inside ``strategy.scope()`` to place the variables for distributed training.

    Args:
        name: one of ``MODELS`` (``--model``).
        n_users: rows of the user tables (dense indices ``0..n_users-1``).
        n_items: rows of the item tables.
        global_mean: mean training rating; a constant of models that use it.
        cfg: embedding size and L2 penalty.

    Raises:
        ConfigError: ``name`` is not a known model.
    """
    model: keras.Model
    if name == "biased-mf":
        model = BiasedMF(
            n_users, n_items, cfg.embedding_dim, global_mean, l2=cfg.l2, name="biased_mf"
        )
    elif name == "dot":
        model = DotModel(n_users, n_items, cfg.embedding_dim, l2=cfg.l2, name="dot")
    else:
        raise ConfigError(f"--model {name!r}: unknown model; choose one of {', '.join(MODELS)}")
    model.build({"user": (None,), "item": (None,)})
    return model
