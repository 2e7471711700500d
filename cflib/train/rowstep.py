"""A training step for models made only of tables: the model's own gradient of each
looked-up row, then row-wise Adagrad on those rows, without Keras' optimizer machinery.

Keras' ``train_step`` differentiates the loss with respect to the table variables (each
gradient an ``IndexedSlices`` through ``ResourceGather``) with a tape and hands them to
``optimizer.apply_gradients``, which wraps every variable's update in its distribution
and bookkeeping layers. The step here gathers each table's rows once, scores them with
plain TensorFlow ops, takes the gradient of the same loss (``squared_error`` plus the
model's L2 penalty on the batch's rows) from the model's closed form
(``row_gradients``), and applies ``SparseAdagrad.update_rows`` to each table: the same
update that ``SparseAdagrad.update_step`` makes from Keras' gradients (tested, to float
rounding). The loss and RMSE metrics are updated as Keras would, so ``fit``'s logs,
callbacks, checkpoints and the divergence guard see the same values. What it saves, and
what it does not, is measured in BENCHMARKS.md ("Training throughput").

It serves one replica (the default strategy on a CPU). Under ``MirroredStrategy`` and
``MultiWorkerMirroredStrategy`` the gradients of the replicas must be summed before the
update, which Keras' ``apply_gradients`` does: those strategies keep Keras' step.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cflib.train.optim import SparseAdagrad, is_table


def supports(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    """Whether ``model`` can train with the row step under ``strategy``: one replica,
    ``SparseAdagrad``, every trainable variable a table that ``model.table_inputs`` maps
    to an input, ``row_gradients`` from the model's own class, and no dropout."""
    distributed = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    if strategy.num_replicas_in_sync != 1 or isinstance(strategy, distributed):
        return False
    if not isinstance(getattr(model, "optimizer", None), SparseAdagrad):
        return False
    # The class itself declares its tables and their gradients: a subclass that looks up
    # more, or scores otherwise, keeps Keras' step until it declares its own.
    own = type(model).__dict__
    dropout: float = getattr(model, "dropout", 0.0)
    if "table_inputs" not in own or "row_gradients" not in own or dropout:
        return False
    names = model.table_inputs()
    layers = [layer for layer in model.layers if layer.name in names]
    tables = {id(layer.embeddings) for layer in layers}
    trainable = {id(v) for v in model.trainable_variables}
    return (
        len(layers) == len(names)
        and tables == trainable
        and all(is_table(v) for v in model.trainable_variables)
    )


def install(model: keras.Model, strategy: tf.distribute.Strategy) -> bool:
    """Make ``model.fit`` train with the row step if ``supports`` allows; return whether
    it does. Called after every ``compile`` (which resets Keras' train function)."""
    use = supports(model, strategy)
    model.row_step = RowStep(model) if use else None
    model.train_function = None  # traced again, with or without the row step
    return use


class RowStep:
    """``model.train_step`` for a table-only model (see the module's docstring)."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        names = model.table_inputs()
        self.tables = [(name, model.get_layer(name), key) for name, key in names.items()]

    def __call__(self, data: Any) -> dict[str, Any]:
        model = self.model
        optimizer: SparseAdagrad = model.optimizer
        x, y = data[0], data[1]
        ids = {name: _ids(x[key]) for name, _, key in self.tables}
        rows = {
            name: tf.gather(_value(layer.embeddings), ids[name]) for name, layer, _ in self.tables
        }
        # Plain TensorFlow ops and the model's own derivative: 13-15% less CPU a step
        # than the XLA-compiled score differentiated by a tape (BENCHMARKS.md).
        pred, penalty = model.score_rows(rows, training=True, compiled=False)
        err = pred - tf.cast(y, pred.dtype)
        loss = tf.reduce_mean(tf.square(err)) + penalty
        by_name = model.row_gradients(rows, err)
        grads = [by_name[name] for name, _, _ in self.tables]
        lr = optimizer.learning_rate
        for (name, layer, _), grad in zip(self.tables, grads, strict=True):
            optimizer.update_rows(layer.embeddings, ids[name], grad, lr)
        optimizer.iterations.assign_add(1)
        model._loss_tracker.update_state(loss, sample_weight=tf.shape(pred)[0])
        return model.compute_metrics(x, y, pred, sample_weight=None)  # type: ignore[no-any-return]


def _ids(ids: Any) -> Any:
    return ids if ids.dtype in (tf.int32, tf.int64) else tf.cast(ids, tf.int32)


def _value(variable: Any) -> Any:
    return variable.value if isinstance(variable, keras.Variable) else variable
