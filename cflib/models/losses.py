"""Training losses, registered so that saved models compile again when loaded."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="cfpipe")
def squared_error(y_true: Any, y_pred: Any) -> Any:
    """Per-rating squared error, shape ``[B]``; Keras averages it over the batch.

    Use it instead of ``keras.losses.MeanSquaredError`` for rank-1 ratings: that one
    reduces the last axis to a scalar before Keras' reduction, and a scalar skips the
    division by the number of replicas, so under ``MirroredStrategy`` the loss and the
    gradients came out multiplied by the replica count (Keras 3.15).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.square(y_pred - y_true)
