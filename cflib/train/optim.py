"""Optimizers that update only the embedding rows a batch looked up, and LR schedules.

With the TensorFlow backend the gradient of an embedding lookup (``tf.gather``) is a
``tf.IndexedSlices``: one row per lookup. ``keras.optimizers.Adam`` turns it into a
dense update of the whole table (its moments decay on every row, every step), which on
a CPU costs far more than the batch itself. ``SparseAdagrad`` keeps it sparse: one
accumulator value per table row, and each step reads and writes only the looked-up rows.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.errors import ConfigError

#: The dense layers' learning rate relative to the tables' (see ``SparseAdagrad``).
DENSE_LR_SCALE = 0.01

#: Name Keras gives the weight of ``keras.layers.Embedding``; such variables are tables.
TABLE_VARIABLE = "embeddings"


def is_table(variable: Any) -> bool:
    """Whether an optimizer treats ``variable`` as an embedding table (row-wise state)."""
    return bool(variable.name == TABLE_VARIABLE and len(variable.shape) == 2)


def _row_adagrad(var: Any, acc: Any, rows: Any, grad: Any, lr: Any, epsilon: float) -> None:
    """Row-wise Adagrad on the looked-up rows of one table (duplicates add up)."""
    square = tf.reduce_mean(tf.square(grad), axis=1, keepdims=True)
    acc.scatter_add(tf.IndexedSlices(square, rows))
    scale = tf.math.rsqrt(tf.gather(acc, rows) + epsilon)
    var.scatter_sub(tf.IndexedSlices(lr * grad * scale, rows))


@keras.saving.register_keras_serializable(package="cfpipe")
class SparseAdagrad(keras.optimizers.Optimizer):
    """Adagrad with one accumulator per table row and sparse updates of the tables.

    For an embedding table (a variable named ``embeddings``) the gradient arrives as
    ``tf.IndexedSlices`` with one row ``g_j`` per lookup ``j`` of row ``r_j``. The step
    scales it to a per-lookup gradient (times the number of lookups, which undoes the
    batch mean of the loss; Adagrad is scale-free except for ``epsilon``), then

    - ``acc[r] += sum over lookups j of r of mean(g_j ** 2)``  (one float per row),
    - ``table[r] -= lr * sum_j g_j / sqrt(acc[r] + epsilon)``,

    both as scatters over the looked-up rows only: the cost is proportional to the batch,
    not to the table. A row's steps shrink as it accumulates evidence, so frequent items
    move slowly and rare ones fast, without tuning per table.

    Other variables (dense layers) get elementwise Adagrad at ``dense_lr_scale`` times
    the learning rate. Adagrad's first steps are about the learning rate per weight
    whatever the gradient's size: right for a table row that a few batches of an epoch
    touch, far too much for an MLP weight that every step moves. At the tables' 0.05 the
    MLP of ``residual`` overfit after one epoch on 10M Netflix-shaped ratings (validation
    RMSE 0.921, 0.928, 0.937, batch 65,536); at 0.0005 it improves as ``biased-mf``
    does (0.929, 0.917, 0.908 against 0.933, 0.918, 0.906).

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules`` schedule.
        epsilon: added to the accumulator before the square root.
        dense_lr_scale: the dense variables' learning rate, relative to the tables'.
        **kwargs: the base ``keras.optimizers.Optimizer`` arguments.
    """

    def __init__(
        self, learning_rate: Any = 0.05, epsilon: float = 1e-8, xla_scatter: bool = True,
        dense_lr_scale: float = DENSE_LR_SCALE, name: str = "sparse_adagrad", **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.xla_scatter = bool(xla_scatter)
        # On CPU, XLA's scatter is 3-4x faster than TensorFlow's (single-threaded)
        # scatter kernel, while TensorFlow's gather is 3-5x faster than XLA's: the
        # model's lookups run as TensorFlow ops and this update is compiled (README,
        # Design). One function per optimizer: a trace holds on to its variables.
        self._row_adagrad_xla = tf.function(_row_adagrad, jit_compile=True)
        if epsilon <= 0:
            raise ValueError(f"`epsilon` should be positive. Received: `epsilon` = {epsilon}.")
        self.epsilon = float(epsilon)
        if dense_lr_scale <= 0:
            raise ValueError(
                f"`dense_lr_scale` should be positive. Received: `dense_lr_scale` = "
                f"{dense_lr_scale}."
            )
        self.dense_lr_scale = float(dense_lr_scale)

    def build(self, variables: list[Any]) -> None:
        if self.built:
            return
        super().build(variables)
        self._accumulators = []
        # By index: update_step sees the backend variable, whose name is not Keras'.
        self._row_wise = [is_table(var) for var in variables]
        for var in variables:
            shape = (var.shape[0], 1) if is_table(var) else tuple(var.shape)
            self._accumulators.append(
                self.add_variable(
                    shape, initializer="zeros", dtype=var.dtype, name=f"{var.name}_accumulator"
                )
            )

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        index = self._get_variable_index(variable)
        acc, row_wise = self._accumulators[index], self._row_wise[index]
        lr = tf.cast(learning_rate, variable.dtype)
        acc_var = acc.value if isinstance(acc, keras.Variable) else acc
        var = variable.value if isinstance(variable, keras.Variable) else variable
        if isinstance(gradient, tf.IndexedSlices) and row_wise:
            self._update_rows(var, acc_var, gradient.indices, gradient.values, lr)
            return
        grad = tf.convert_to_tensor(gradient)
        grad = tf.cast(grad, var.dtype)
        if row_wise:  # a dense gradient of a table (e.g. from tf.distribute): every row
            acc_var.assign_add(tf.reduce_mean(tf.square(grad), axis=1, keepdims=True))
        else:
            acc_var.assign_add(tf.square(grad))
            lr = lr * tf.cast(self.dense_lr_scale, var.dtype)
        var.assign_sub(lr * grad * tf.math.rsqrt(acc_var + self.epsilon))

    def update_rows(self, variable: Any, rows: Any, grad: Any, learning_rate: Any) -> None:
        """The update of ``update_step`` for a table, from the gradient of the batch's
        loss with respect to its looked-up rows: ``grad[j]`` for lookup ``j`` of row
        ``rows[j]`` (``cflib.train.rowstep``). Does not count a step (``iterations``)."""
        index = self._get_variable_index(variable)
        acc = self._accumulators[index]
        acc_var = acc.value if isinstance(acc, keras.Variable) else acc
        var = variable.value if isinstance(variable, keras.Variable) else variable
        self._update_rows(var, acc_var, rows, grad, tf.cast(learning_rate, var.dtype))

    def accumulator(self, variable: Any) -> Any:
        """The accumulator of ``variable`` (one value per row for a table)."""
        return self._accumulators[self._get_variable_index(variable)]

    def _update_rows(self, var: Any, acc: Any, rows: Any, grad: Any, lr: Any) -> None:
        """Row-wise Adagrad on the rows of one table from per-lookup gradients of the
        batch mean."""
        grad = tf.cast(grad, var.dtype)
        grad = grad * tf.cast(tf.shape(rows)[0], var.dtype)
        # XLA cannot reach variables on other logical devices: plain ops with replicas.
        single = self._distribution_strategy.num_replicas_in_sync == 1
        update = self._row_adagrad_xla if single and self.xla_scatter else _row_adagrad
        update(var, acc, rows, grad, lr, self.epsilon)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            epsilon=self.epsilon, xla_scatter=self.xla_scatter, dense_lr_scale=self.dense_lr_scale
        )
        return config


def learning_rate(cfg: TrainConfig, lr: float, steps_per_epoch: int) -> Any:
    """The learning rate or schedule of ``cfg.lr_schedule`` (per optimizer step).

    ``constant``: ``lr`` throughout. ``cosine``: from ``lr`` down to ``lr / 100`` over
    ``cfg.epochs`` epochs. ``exponential``: ``lr`` times ``cfg.lr_decay`` per epoch,
    decayed smoothly every step.
    """
    steps_per_epoch = max(int(steps_per_epoch), 1)
    if cfg.lr_schedule == "constant":
        return lr
    if cfg.lr_schedule == "cosine":
        assert cfg.epochs is not None  # resolved
        return keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=steps_per_epoch * cfg.epochs, alpha=0.01
        )
    if cfg.lr_schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=steps_per_epoch, decay_rate=cfg.lr_decay
        )
    raise ConfigError(f"--lr-schedule {cfg.lr_schedule!r}: unknown schedule")


def make_optimizer(cfg: TrainConfig, lr: float, steps_per_epoch: int) -> keras.Optimizer:
    """The optimizer of ``cfg.optimizer`` at learning rate ``lr`` (resolved per model).

    ``adagrad`` (``SparseAdagrad``) updates only the looked-up table rows; ``adam`` is
    Keras' Adam, which updates every row of every table each step.
    """
    rate = learning_rate(cfg, lr, steps_per_epoch)
    if cfg.optimizer == "adagrad":
        return SparseAdagrad(learning_rate=rate)
    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=rate)
    raise ConfigError(f"--optimizer {cfg.optimizer!r}: unknown optimizer")
