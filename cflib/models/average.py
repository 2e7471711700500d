"""Two trained factor models as one: the mean of their scores, exactly, in one model.

After the refit (``cflib.train.epochs``), a run has two models of one configuration:
the early-stopped one (the train split) and the refit one (train + validation). Their
mean scores better than either (BENCHMARKS.md, "Refit average"): they are two draws of
the same estimator, on different rows. For the factor models the mean is itself a model
of the same class, twice as wide:

    (p1.q1 + p2.q2) / 2 = [p1, p2]/sqrt(2) . [q1, q2]/sqrt(2)

so each factor table of the two is put side by side and scaled by 1/sqrt(2) (``svdpp``'s
implicit tables too: z_u is linear in y), and each bias table is averaged. Models with a
layer that does not join so (an MLP, side-feature tables) have no such form.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

#: How each table joins: ``side`` by side (times 1/sqrt(2)), or their ``mean``.
JOIN = {
    "user_embedding": "side",
    "item_embedding": "side",
    "implicit_embedding": "side",
    "user_implicit": "side",
    "user_bias": "mean",
    "item_bias": "mean",
}


def table_names(model: keras.Model) -> list[str]:
    """The layer name of each of ``model.weights``, in order."""
    return [w.path.split("/")[-2] for w in model.weights]


def joinable(model: keras.Model) -> bool:
    """Whether ``averaged`` has a form for ``model``'s class."""
    names = table_names(model)
    return hasattr(model, "embedding_dim") and bool(names) and all(n in JOIN for n in names)


def averaged(
    model: keras.Model, first: list[np.ndarray], second: list[np.ndarray]
) -> keras.Model | None:
    """A new model, built as ``model`` with twice its embedding size, whose score is the
    mean of ``model``'s with the weights ``first`` and with ``second`` (``get_weights``
    order); None where ``model`` has no such form (``joinable``)."""
    if not joinable(model):
        return None
    if len(first) != len(model.weights) or len(second) != len(model.weights):
        raise ValueError(
            f"{len(first)} and {len(second)} weights for a model of {len(model.weights)}"
        )
    config: dict[str, Any] = model.get_config()
    config["embedding_dim"] = 2 * model.embedding_dim
    joined = type(model).from_config(config)
    joined.build()
    half = np.float32(math.sqrt(0.5))
    weights = []
    for name, a, b in zip(table_names(model), first, second, strict=True):
        if JOIN[name] == "side":
            weights.append(np.concatenate([a, b], axis=-1) * half)
        else:
            weights.append((a + b) / np.float32(2))
    joined.set_weights(weights)
    return joined


def refit_average(model: keras.Model, best_weights: Path) -> keras.Model | None:
    """The refit ``model`` averaged with the early-stopped model whose weights are in the
    file ``best_weights`` (each with ``before_save`` applied); None where ``model`` has no
    joined form (it is left with its own weights)."""
    if not joinable(model):
        return None
    model.before_save()
    refit = model.get_weights()
    model.load_weights(best_weights)
    model.before_save()
    best = model.get_weights()
    model.set_weights(refit)
    return averaged(model, best, refit)
