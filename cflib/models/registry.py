"""The one model registry: ``--model`` names, their classes, defaults, and ``build_model``."""

from __future__ import annotations

from typing import Any

import keras

from cflib.config import TrainConfig
from cflib.errors import ConfigError
from cflib.models.biased_mf import BiasedMF
from cflib.models.deep import DeepModel
from cflib.models.dot import DotModel
from cflib.models.residual import ResidualModel
from cflib.models.two_tower import TwoTowerModel

#: ``--model`` value -> model class; the keys are ``cflib.config.MODEL_NAMES``.
MODELS: dict[str, type[keras.Model]] = {
    "dot": DotModel,
    "biased-mf": BiasedMF,
    "deep": DeepModel,
    "residual": ResidualModel,
    "two-tower": TwoTowerModel,
}

#: Per-model defaults of the ``TrainConfig`` fields left at ``None``: values that reach
#: good accuracy on Netflix-shaped data without tuning (see BENCHMARKS.md).
DEFAULTS: dict[str, dict[str, Any]] = {
    "dot": {"embedding_dim": 32, "l2": 0.05, "batch_size": 16384},
    "biased-mf": {"embedding_dim": 32, "l2": 0.05, "l2_bias": 0.005, "batch_size": 16384},
    "deep": {
        "embedding_dim": 32, "l2": 0.0, "batch_size": 16384, "hidden": "128,64", "dropout": 0.1,
    },
    "residual": {
        "embedding_dim": 32, "l2": 0.05, "l2_bias": 0.005, "batch_size": 16384, "hidden": "64",
        "dropout": 0.1,
    },
    "two-tower": {
        "embedding_dim": 32, "l2": 0.02, "l2_bias": 0.005, "batch_size": 16384, "hidden": "64",
        "dropout": 0.1,
    },
}  # fmt: skip

#: Default learning rate of each optimizer.
LEARNING_RATES = {"adagrad": 0.05, "adam": 0.002}

#: Options that only some models read; setting one for another model is an error.
_MLP_OPTIONS = ("hidden", "dropout")


def resolve(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every ``None`` replaced by the model's default.

    ``l2_user``, ``l2_item`` and ``l2_bias`` default to ``l2``; the learning rate to the
    optimizer's default (``LEARNING_RATES``).

    Raises:
        ConfigError: an option is set that the model does not use (``--hidden`` or
            ``--dropout`` for ``dot`` or ``biased-mf``).
    """
    if cfg.model not in MODELS:
        raise ConfigError(
            f"--model {cfg.model!r}: unknown model; choose one of {', '.join(MODELS)}"
        )
    defaults = DEFAULTS[cfg.model]
    for option in _MLP_OPTIONS:
        if getattr(cfg, option) is not None and option not in defaults:
            users = ", ".join(k for k, v in DEFAULTS.items() if option in v)
            raise ConfigError(
                f"--{option} does not apply to --model {cfg.model}; it applies to {users}"
            )
    values = cfg.model_dump()
    for key, value in defaults.items():
        if values[key] is None:
            values[key] = value
    for key in ("l2_user", "l2_item", "l2_bias"):
        if values[key] is None:
            values[key] = values["l2"]
    if values["learning_rate"] is None:
        values["learning_rate"] = LEARNING_RATES[cfg.optimizer]
    return TrainConfig(**values)


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
