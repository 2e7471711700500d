"""Rating models: one Keras 3 class per file, built by ``registry.build_model``.

Importing this package registers every class with Keras under the ``cfpipe`` package,
so ``keras.saving.load_model(path, safe_mode=True)`` can rebuild saved models.
"""

from cflib.models.biased_mf import BiasedMF
from cflib.models.deep import DeepModel
from cflib.models.dot import DotModel
from cflib.models.losses import squared_error
from cflib.models.registry import DEFAULTS, MODELS, build_model, resolve
from cflib.models.residual import ResidualModel
from cflib.models.text import TEXT_ENCODERS, MeanTokens
from cflib.models.two_tower import TwoTowerModel

__all__ = [
    "DEFAULTS",
    "MODELS",
    "TEXT_ENCODERS",
    "BiasedMF",
    "DeepModel",
    "DotModel",
    "MeanTokens",
    "ResidualModel",
    "TwoTowerModel",
    "build_model",
    "resolve",
    "squared_error",
]
