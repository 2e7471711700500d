"""The model catalogue: every ``--model`` name, its defaults and its Keras class.

The one source of model names: ``cflib.config.ModelName`` (and with it the CLI's
``--model`` choices and the Prefect form) derives from ``MODELS``. No TensorFlow here:
the configuration, the CLI and the flows import this module in processes that never
load Keras. Each entry names its class as ``"module:Class"``, imported only when a model
is built or loaded; the class builds itself from a resolved config
(``DotModel.from_train_config``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from cflib.errors import ConfigError
from cflib.models import sizing

if TYPE_CHECKING:
    import keras

    from cflib.config import TrainConfig
    from cflib.data.implicit import ImplicitSets
    from cflib.data.manifest import Manifest
    from cflib.data.side import SideFeatures
    from cflib.models.dot import DotModel

#: Options that only some models read; setting one for another model is an error.
_MLP_OPTIONS = ("hidden", "dropout")


@dataclass(frozen=True)
class ModelSpec:
    """One ``--model``: its Keras class and the defaults of the options it leaves unset.

    Attributes:
        name: the ``--model`` value.
        cls: the Keras class as ``"module:Class"``, imported on demand.
        defaults: values of the ``TrainConfig`` fields left at ``None`` that reach good
            accuracy on Netflix-shaped data without tuning (see BENCHMARKS.md).
        side_features: the model reads the dataset's side features (titles, genres, ...).
        implicit: the model reads N(u), the items each user rated in any split
            (``cflib.data.implicit``), and trains on batches grouped by user.
    """

    name: str
    cls: str
    defaults: Mapping[str, Any]
    side_features: bool = False
    implicit: bool = False

    def model_class(self) -> type[DotModel]:
        """The Keras class (importing it registers it with Keras for loading)."""
        module, _, name = self.cls.partition(":")
        model_class: type[DotModel] = getattr(importlib.import_module(module), name)
        return model_class


#: ``--model`` value -> its spec, in the order the CLI lists them.
MODELS: Mapping[str, ModelSpec] = MappingProxyType({spec.name: spec for spec in (
    ModelSpec("dot", "cflib.models.dot:DotModel", {
        "embedding_dim": 32, "l2": 0.05, "batch_size": 16384,
    }),
    ModelSpec("biased-mf", "cflib.models.biased_mf:BiasedMF", {
        "embedding_dim": 32, "l2": 0.05, "l2_bias": 0.005, "batch_size": 16384,
    }),
    ModelSpec("deep", "cflib.models.deep:DeepModel", {
        "embedding_dim": 32, "l2": 0.0, "batch_size": 16384, "hidden": "128,64", "dropout": 0.1,
    }),
    ModelSpec("residual", "cflib.models.residual:ResidualModel", {
        "embedding_dim": 32, "l2": 0.05, "l2_bias": 0.005, "batch_size": 16384, "hidden": "64",
        "dropout": 0.1,
    }),
    ModelSpec("two-tower", "cflib.models.two_tower:TwoTowerModel", {
        "embedding_dim": 32, "l2": 0.02, "l2_bias": 0.005, "batch_size": 16384, "hidden": "64",
        "dropout": 0.1,
    }, side_features=True),
    ModelSpec("svdpp", "cflib.models.svdpp:SVDpp", {
        "embedding_dim": 32, "l2": 0.05, "l2_bias": 0.005, "batch_size": 16384,
    }, implicit=True),
)})  # fmt: skip

#: The ``--model`` values.
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: Each model's defaults by name (a view of ``MODELS``).
DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {name: spec.defaults for name, spec in MODELS.items()}
)

#: Default learning rate of each optimizer.
LEARNING_RATES = {"adagrad": 0.05, "adam": 0.002}

#: The default batch holds at most this many ratings per user or per item of the smaller
#: table, on average. A table row looked up n times in one step moves about
#: ``lr * sqrt(n)`` per coordinate when its gradients agree (``SparseAdagrad``); with 10
#: items and a batch of 16,384 the most rated movie was looked up ~6,000 times per step
#: and training diverged (README, Design: "Divergence").
ROW_LOOKUPS_PER_BATCH = 64


def spec_of(name: str) -> ModelSpec:
    """The catalogue entry of ``--model name``.

    Raises:
        ConfigError: no such model; the message lists the known ones.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"--model {name!r}: unknown model; choose one of {', '.join(MODELS)}"
        ) from None


#: Without the data's sizes: the epoch cap and patience (``sizing.shape_defaults`` sets
#: them from the data).
EPOCHS, PATIENCE = 20, 2
#: The options the validation search chooses when the user leaves them unset
#: (``cflib.train.tune``).
SEARCHED = ("embedding_dim", "l2")


def resolve(
    cfg: TrainConfig,
    *,
    n_users: int | None = None,
    n_items: int | None = None,
    n_ratings: int | None = None,
    n_validation: int | None = None,
) -> TrainConfig:
    """``cfg`` with every ``None`` replaced by the model's default.

    ``l2_user``, ``l2_item`` and ``l2_bias`` default to ``l2``; the learning rate to the
    optimizer's default (``LEARNING_RATES``). Given the dataset's sizes, the default batch
    is at most ``ROW_LOOKUPS_PER_BATCH`` times the smaller of ``n_users`` and ``n_items``
    (a multiple of 64, so it splits over replicas); given the train split's ratings too,
    the embedding size, epoch cap and patience follow the data's shape
    (``sizing.shape_defaults``), and with the validation split's ratings the search's
    budget (``sizing.default_budget``). A resolved config resolves to itself, so a run's
    stored config can be passed back in.

    Raises:
        ConfigError: an unknown model, or an option set that the model does not use
            (``--hidden`` or ``--dropout`` for ``dot`` or ``biased-mf``).
    """
    defaults = dict(spec_of(cfg.model).defaults)
    for option in _MLP_OPTIONS:
        if getattr(cfg, option) is not None and option not in defaults:
            users = ", ".join(k for k, v in DEFAULTS.items() if option in v)
            raise ConfigError(
                f"--{option} does not apply to --model {cfg.model}; it applies to {users}"
            )
    defaults.update(epochs=EPOCHS, patience=PATIENCE)
    shape = None
    if n_users and n_items and n_ratings:
        shape = sizing.Shape(n_ratings, n_users, n_items)
        defaults.update(sizing.shape_defaults(shape, defaults["embedding_dim"]))
    values = cfg.model_dump()
    for key, value in defaults.items():
        if values[key] is None:
            values[key] = value
            if key == "batch_size" and n_users and n_items:
                values[key] = min(value, ROW_LOOKUPS_PER_BATCH * min(n_users, n_items))
    for key in ("l2_user", "l2_item", "l2_bias"):
        if values[key] is None:
            values[key] = values["l2"]
    if values["learning_rate"] is None:
        values["learning_rate"] = LEARNING_RATES[cfg.optimizer]
    if values["tune_budget"] is None and shape is not None and n_validation is not None:
        values["tune_budget"] = sizing.default_budget(shape, n_validation, values["epochs"])
    return type(cfg)(**values)


def resolve_for(cfg: TrainConfig, manifest: Manifest) -> TrainConfig:
    """``resolve`` with a dataset's sizes: its users and items, its train and validation
    ratings."""
    return resolve(
        cfg,
        n_users=manifest.n_users,
        n_items=manifest.n_items,
        n_ratings=manifest.splits["train"].rows,
        n_validation=manifest.splits["validation"].rows,
    )


def build_model(
    cfg: TrainConfig,
    *,
    n_users: int,
    n_items: int,
    global_mean: float,
    side: SideFeatures | None = None,
    implicit: ImplicitSets | None = None,
) -> keras.Model:
    """Build (with weights) the model of ``cfg`` for a dataset's sizes.

    Call it inside ``strategy.scope()`` to place the variables for distributed training.

    Args:
        cfg: training options; resolved here if they are not yet (``resolve``).
        n_users: rows of the user tables (dense indices ``0..n_users-1``).
        n_items: rows of the item tables.
        global_mean: mean training rating; a constant of models that use it.
        side: the dataset's side features, for models that read them (``two-tower``).
        implicit: N(u) of every user, for models that read it (``svdpp``); a model
            built without it scores from its saved implicit vectors.

    Raises:
        ConfigError: ``cfg.model`` is not a known model, or it needs side features and
            ``side`` is None.
    """
    cfg = resolve(cfg)
    return (
        spec_of(cfg.model)
        .model_class()
        .from_train_config(
            cfg,
            n_users=n_users,
            n_items=n_items,
            global_mean=global_mean,
            side=side,
            implicit=implicit,
        )
    )
