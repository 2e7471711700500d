"""The one model registry: ``--model`` names, their classes, defaults, and ``build_model``."""

from __future__ import annotations

from typing import Any

import keras

from cflib.config import TrainConfig
from cflib.defaults import DEFAULTS, LEARNING_RATES, resolve
from cflib.errors import ConfigError
from cflib.models.biased_mf import BiasedMF
from cflib.models.deep import DeepModel
from cflib.models.dot import DotModel
from cflib.models.residual import ResidualModel
from cflib.models.two_tower import TwoTowerModel

__all__ = ["DEFAULTS", "LEARNING_RATES", "MODELS", "build_model", "resolve"]

#: ``--model`` value -> model class; the keys are ``cflib.config.MODEL_NAMES``.
MODELS: dict[str, type[keras.Model]] = {
    "dot": DotModel,
    "biased-mf": BiasedMF,
    "deep": DeepModel,
    "residual": ResidualModel,
    "two-tower": TwoTowerModel,
}


def build_model(
    cfg: TrainConfig, *, n_users: int, n_items: int, global_mean: float, **extra: Any
) -> keras.Model:
    """Build (with weights) the model of a resolved ``cfg`` for a dataset's sizes.

    Call it inside ``strategy.scope()`` to place the variables for distributed training.

    Args:
        cfg: a config passed through ``resolve``.
        n_users: rows of the user tables (dense indices ``0..n_users-1``).
        n_items: rows of the item tables.
        global_mean: mean training rating; a constant of models that use it.
        **extra: model-specific inputs (``two-tower``: ``side``, its side features).

    Raises:
        ConfigError: ``cfg.model`` is not a known model.
    """
    cfg = resolve(cfg)
    dropout, l2_bias = float(cfg.dropout or 0.0), float(cfg.l2_bias or 0.0)
    sizes: dict[str, Any] = {
        "n_users": n_users,
        "n_items": n_items,
        "embedding_dim": cfg.embedding_dim,
        "l2_user": cfg.l2_user,
        "l2_item": cfg.l2_item,
    }
    model: keras.Model
    side = None
    name = cfg.model.replace("-", "_")
    if cfg.model == "dot":
        model = DotModel(**sizes, name=name)
    elif cfg.model == "biased-mf":
        model = BiasedMF(**sizes, global_mean=global_mean, l2_bias=l2_bias, name=name)
    elif cfg.model == "deep":
        model = DeepModel(
            **sizes, global_mean=global_mean, hidden=cfg.hidden_sizes(), dropout=dropout,
            name=name,
        )  # fmt: skip
    elif cfg.model == "residual":
        model = ResidualModel(
            **sizes, global_mean=global_mean, hidden=cfg.hidden_sizes(), dropout=dropout,
            l2_bias=l2_bias, name=name,
        )  # fmt: skip
    else:
        side = extra.get("side")
        if side is None:
            raise ConfigError("--model two-tower needs the dataset's side features")
        model = TwoTowerModel(
            **sizes, global_mean=global_mean, hidden=cfg.hidden_sizes(), dropout=dropout,
            l2_bias=l2_bias, text_encoder=cfg.text_encoder,
            title_tokens=side.title.shape[1], **side.sizes(), name=name,
        )  # fmt: skip
    model.build({"user": (None,), "item": (None,)})
    if side is not None and cfg.model == "two-tower":
        model.set_side_features(side)
    return model
