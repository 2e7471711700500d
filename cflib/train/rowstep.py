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

For ``dot``, ``biased-mf`` and ``svdpp`` (models that declare ``fused_tables``) the whole
step, scores through update, is one op compiled in C++ (``cflib.train.fused``) where the
install step built it: the same update from the same gradients, over both cores.
``svdpp`` has no TensorFlow row step: without the op it trains with Keras' step.

It serves one replica (the default strategy on a CPU). Under ``MirroredStrategy`` and
``MultiWorkerMirroredStrategy`` the gradients of the replicas must be summed before the
update, which Keras' ``apply_gradients`` does: those strategies keep Keras' step.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cflib.train import fused
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
    if dropout:
        return False
    if "fused_tables" in own and "row_gradients" not in own:  # svdpp: the fused op only
        return FusedStep.of(model) is not None
    if "table_inputs" not in own or "row_gradients" not in own:
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
        self.fused = FusedStep.of(model)

    def __call__(self, data: Any) -> dict[str, Any]:
        model = self.model
        optimizer: SparseAdagrad = model.optimizer
        x, y = data[0], data[1]
        step = self.fused if self.fused is not None else self.update
        pred, penalty = step(x, y, optimizer.learning_rate)
        loss = tf.reduce_mean(tf.square(pred - tf.cast(y, pred.dtype))) + penalty
        optimizer.iterations.assign_add(1)
        model._loss_tracker.update_state(loss, sample_weight=tf.shape(pred)[0])
        return model.compute_metrics(x, y, pred, sample_weight=None)  # type: ignore[no-any-return]

    def update(self, x: Any, y: Any, learning_rate: Any) -> tuple[Any, Any]:
        """Score the batch and update the tables' rows in TensorFlow ops; return the
        predictions and the L2 penalty, from the rows before the update."""
        model = self.model
        ids = {name: _ids(x[key]) for name, _, key in self.tables}
        rows = {
            name: tf.gather(_value(layer.embeddings), ids[name]) for name, layer, _ in self.tables
        }
        # Plain TensorFlow ops and the model's own derivative: 13-15% less CPU a step
        # than the XLA-compiled score differentiated by a tape (BENCHMARKS.md).
        pred, penalty = model.score_rows(rows, training=True, compiled=False)
        by_name = model.row_gradients(rows, pred - tf.cast(y, pred.dtype))
        for name, layer, _ in self.tables:
            model.optimizer.update_rows(layer.embeddings, ids[name], by_name[name], learning_rate)
        return pred, penalty


def _ids(ids: Any) -> Any:
    return ids if ids.dtype in (tf.int32, tf.int64) else tf.cast(ids, tf.int32)


def _value(variable: Any) -> Any:
    return variable.value if isinstance(variable, keras.Variable) else variable


class FusedStep:
    """The scores, gradients and row-wise Adagrad of a ``fused_tables`` model in one op
    (``cflib.train.fused``); same update as ``RowStep``'s TensorFlow ops."""

    def __init__(self, model: keras.Model, op: Any) -> None:
        optimizer: SparseAdagrad = model.optimizer
        names, self.global_mean = model.fused_tables()
        layers = [model.get_layer(name) for name in names]
        self.tables = [_value(layer.embeddings) for layer in layers]
        self.accumulators = [_value(optimizer.accumulator(layer.embeddings)) for layer in layers]
        self.l2 = [float(model.l2_weights.get(name, 0.0)) for name in names]
        self.epsilon = optimizer.epsilon
        self.op = op
        keys = model.table_inputs()
        self.user_key, self.item_key = keys[names[0]], keys[names[1]]
        # svdpp: N(u) (``SVDpp.fused_implicit``), its fifth table the implicit one.
        self.implicit = model.fused_implicit() if len(names) == 5 else None

    @classmethod
    def of(cls, model: keras.Model) -> FusedStep | None:
        """The fused step of ``model`` if its own class declares ``fused_tables``, its
        tables are float32 and the op is built (``fused.load``), else None."""
        if "fused_tables" not in type(model).__dict__:
            return None
        if any(v.dtype != "float32" for v in model.trainable_variables):
            return None
        # The op has a CPU kernel only: tables on a GPU keep the TensorFlow row step.
        if any("GPU" in _value(v).device.upper() for v in model.trainable_variables):
            return None
        op = fused.load()
        if op is None:
            return None
        if len(model.fused_tables()[0]) == 5 and model.fused_implicit() is None:
            return None  # svdpp without N(u) attached: nothing to train z_u from
        return cls(model, op)

    def __call__(self, x: Any, y: Any, learning_rate: Any) -> tuple[Any, Any]:
        args = {
            "tables": [t.handle for t in self.tables],
            "accumulators": [a.handle for a in self.accumulators],
            "users": tf.cast(x[self.user_key], tf.int32),
            "items": tf.cast(x[self.item_key], tf.int32),
            "ratings": tf.cast(y, tf.float32),
            "learning_rate": tf.cast(learning_rate, tf.float32),
            "l2": self.l2,
            "global_mean": self.global_mean,
            "epsilon": self.epsilon,
        }
        if self.implicit is None:
            return self.op.cfpipe_mf_adagrad_step(**args)
        offsets, items = self.implicit
        return self.op.cfpipe_svdpp_adagrad_step(offsets=offsets, implicit_items=items, **args)
