"""The multi-layer perceptron shared by the deep models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

if TYPE_CHECKING:
    from cflib.config import TrainConfig


def check_mlp(hidden: Sequence[int], dropout: float) -> tuple[int, ...]:
    """Validate layer sizes and the dropout rate, naming the argument and its value."""
    sizes = tuple(hidden)
    if not all(isinstance(n, int) and n > 0 for n in sizes):
        raise ValueError(
            f"`hidden` should be positive integers. Received: `hidden` = {list(hidden)}."
        )
    if not 0 <= dropout < 1:
        raise ValueError(f"`dropout` should be in [0, 1). Received: `dropout` = {dropout}.")
    return sizes


def mlp(
    hidden: Sequence[int], dropout: float, *, name: str, zero_output: bool = False
) -> keras.Sequential:
    """ReLU layers of ``hidden`` sizes, each followed by dropout, then one linear output.

    Args:
        hidden: sizes of the hidden layers (may be empty: a linear model).
        dropout: rate of the dropout after each hidden layer (0: none).
        name: the Sequential's name (its weights' path prefix).
        zero_output: start the output layer at zero, so the branch first predicts 0.
    """
    layers: list[keras.layers.Layer] = []
    for k, units in enumerate(hidden):
        layers.append(keras.layers.Dense(units, activation="relu", name=f"{name}_dense_{k}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"{name}_dropout_{k}"))
    init = "zeros" if zero_output else "glorot_uniform"
    layers.append(keras.layers.Dense(1, kernel_initializer=init, name=f"{name}_out"))
    return keras.Sequential(layers, name=name)


#: The activations that ``cflib.registry.npscore`` computes.
NUMPY_ACTIVATIONS = ("linear", "relu")


def dense_arrays(stack: keras.Sequential, name: str) -> dict[str, np.ndarray]:
    """The Dense layers of ``stack`` for ``cflib.registry.npscore.dense_stack``: ``name.k.kernel``,
    ``name.k.bias`` and ``name.activations``; Dropout (off when scoring) is left out.

    Raises:
        NotImplementedError: a layer that npscore cannot compute.
    """
    arrays: dict[str, np.ndarray] = {}
    activations: list[str] = []
    for layer in stack.layers:
        if isinstance(layer, keras.layers.Dropout):
            continue
        activation = layer.get_config().get("activation")
        if not (isinstance(layer, keras.layers.Dense) and layer.use_bias) or (
            activation not in NUMPY_ACTIVATIONS
        ):
            raise NotImplementedError(f"{stack.name}/{layer.name}: no numpy form")
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        arrays[f"{name}.{len(activations)}.kernel"] = kernel
        arrays[f"{name}.{len(activations)}.bias"] = bias
        activations.append(activation)
    arrays[f"{name}.activations"] = np.array(activations, np.str_)
    return arrays


def mlp_args(cfg: TrainConfig) -> dict[str, Any]:
    """The MLP's constructor arguments (``hidden``, ``dropout``) of a resolved config."""
    return {"hidden": cfg.hidden_sizes(), "dropout": float(cfg.dropout or 0.0)}
