"""Per-model defaults of the training options, and the checks ``cfpipe train`` makes
before anything starts. No TensorFlow here: the CLI imports it before a flow runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cflib.config import TrainConfig
from cflib.errors import ConfigError, DatasetError

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
    if cfg.model not in DEFAULTS:
        raise ConfigError(
            f"--model {cfg.model!r}: unknown model; choose one of {', '.join(DEFAULTS)}"
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


def check_inputs(data_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """Fail fast on what training would refuse about the data and options.

    Returns:
        ``cfg`` resolved (``resolve``).

    Raises:
        DatasetError: no manifest, or an empty train or validation split.
        ConfigError: an option the model does not read, or a model that does not fit
            the dataset (``two-tower`` without side features).
    """
    from cflib.data.side import load_side_features
    from cflib.dataset import load_manifest

    manifest = load_manifest(data_dir)
    for split in ("train", "validation"):
        if split not in manifest.splits or manifest.splits[split].rows == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty; nothing to train on")
    cfg = resolve(cfg)
    if cfg.model == "two-tower":
        load_side_features(data_dir, n_users=manifest.n_users, n_items=manifest.n_items)
    return cfg
