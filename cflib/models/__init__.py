"""Rating models: one Keras 3 class per file, built by ``registry.build_model``.

Importing this package registers every class with Keras under the ``cfpipe`` package,
so ``keras.saving.load_model(path, safe_mode=True)`` can rebuild saved models.
"""

from cflib.models.biased_mf import BiasedMF
from cflib.models.dot import DotModel
from cflib.models.losses import squared_error
from cflib.models.registry import MODELS, build_model

__all__ = ["MODELS", "BiasedMF", "DotModel", "build_model", "squared_error"]
