"""Matrix factorization without biases: the rating is the dot product of two embeddings.

``DotModel`` is also the base of the other models: it owns the user and item tables,
the L2 penalty on the rows of each batch and the ``get_config`` of the shared sizes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import keras
import numpy as np
import tensorflow as tf
from keras import ops

if TYPE_CHECKING:
    from cflib.config import TrainConfig

#: Standard deviation of the embeddings' initial values; small, so that the first
#: predictions are close to the biases (or zero) and the first steps are stable.
INIT_STD = 0.01


def batch_l2(rows: Any) -> Any:
    """The mean, over the batch, of each row's squared L2 norm.

    Only the rows looked up for the batch are penalized, so the cost does not grow with
    the size of the tables, and the mean keeps its weight independent of the batch size.
    """
    # divide_no_nan: under MirroredStrategy a replica can get an empty last batch.
    return ops.divide_no_nan(ops.sum(ops.square(rows)), ops.cast(ops.shape(rows)[0], rows.dtype))


def check_positive(**values: Any) -> None:
    """Reject non-positive sizes, naming the argument and its value."""
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"`{name}` should be a positive integer. Received: `{name}` = {value}."
            )


def check_l2(**values: float) -> None:
    """Reject negative L2 weights, naming the argument and its value."""
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"`{name}` should be non-negative. Received: `{name}` = {value}.")


@keras.saving.register_keras_serializable(package="cfpipe")
class Table(keras.layers.Embedding):
    """``keras.layers.Embedding`` that gathers from the variable itself.

    Keras' ``Embedding`` reads the whole table into a tensor and gathers from that; once
    the optimizer has written to the table, the read copies it (hundreds of MB for
    Netflix's users) every step. ``tf.gather`` on the variable reads only the rows.
    """

    def call(self, inputs: Any) -> Any:
        ids = tf.cast(inputs, tf.int32) if inputs.dtype not in (tf.int32, tf.int64) else inputs
        table = (
            self.embeddings.value
            if isinstance(self.embeddings, keras.Variable)
            else self.embeddings
        )
        return tf.gather(table, ids)


def weights_array(weights: Any) -> np.ndarray:
    """A layer's table or a model's weight as a numpy array (float32 or the codes' int32)."""
    return np.asarray(keras.ops.convert_to_numpy(weights))


def embedding(rows: int, dim: int, name: str, init_std: float = INIT_STD) -> keras.layers.Layer:
    """An embedding table with small normal initial values (zeros when ``init_std`` is 0)."""
    init: Any = keras.initializers.RandomNormal(stddev=init_std) if init_std else "zeros"
    return Table(rows, dim, embeddings_initializer=init, name=name)


@keras.saving.register_keras_serializable(package="cfpipe")
class DotModel(keras.Model):
    """``rating(u, i) = p_u . q_i``.

    Inputs are ``{"user": int[B], "item": int[B]}`` dense indices; the output is a
    float32 tensor of shape ``[B]``. Each call adds ``l2_user * mean_b |p_u|^2 +
    l2_item * mean_b |q_i|^2`` over the batch's rows to ``model.losses`` (when not 0).

    Subclasses add tables in ``__init__`` and list them in ``self.l2_weights`` (layer
    name -> L2 weight), return their rows from ``lookup`` and combine rows in ``score``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        l2_user: float = 0.0,
        l2_item: float = 0.0,
        init_std: float = INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive(n_users=n_users, n_items=n_items, embedding_dim=embedding_dim)
        check_l2(l2_user=l2_user, l2_item=l2_item)
        self.n_users = n_users
        self.n_items = n_items
        self.embedding_dim = embedding_dim
        self.l2_user = float(l2_user)
        self.l2_item = float(l2_item)
        self.init_std = float(init_std)
        self.user_embedding = embedding(n_users, embedding_dim, "user_embedding", init_std)
        self.item_embedding = embedding(n_items, embedding_dim, "item_embedding", init_std)
        self.l2_weights: dict[str, float] = {
            "user_embedding": self.l2_user,
            "item_embedding": self.l2_item,
        }
        #: Compile the arithmetic on the looked-up rows with XLA (see ``call``). The
        #: trainer turns it off across logical CPU replicas, where XLA cannot run.
        self.xla = True
        self._score_xla = tf.function(self._score_and_penalty, jit_compile=True)

    #: The forward pass in ``cflib.registry.npscore.KINDS`` that scores ``scoring_arrays``
    #: without TensorFlow. A subclass that changes ``lookup`` or ``score`` names its own
    #: (publishing checks the numpy scores against the model's, and refuses a mismatch).
    scoring_kind = "dot"

    #: Return the training logs with shape ``[1]``: Keras 3.15 reduces them across the
    #: workers of a ``MultiWorkerMirroredStrategy`` along axis 0, which scalars lack.
    vector_logs = False

    @classmethod
    def from_train_config(
        cls,
        cfg: TrainConfig,
        *,
        n_users: int,
        n_items: int,
        global_mean: float,
        side: Any = None,
        implicit: Any = None,
    ) -> Self:
        """The built model of a resolved ``cfg`` for a dataset's sizes.

        ``cflib.models.catalog.build_model`` calls it; not ``from_config``, which is
        Keras' own constructor from a saved ``get_config``.
        """
        model = cls(
            n_users=n_users,
            n_items=n_items,
            name=cfg.model.replace("-", "_"),
            **cls.train_config_args(cfg, global_mean=global_mean, side=side),
        )
        model.build({"user": (None,), "item": (None,)})
        if side is not None:
            model.set_side_features(side)
        if implicit is not None:
            model.set_implicit(implicit)
        return model

    @classmethod
    def train_config_args(
        cls, cfg: TrainConfig, *, global_mean: float, side: Any
    ) -> dict[str, Any]:
        """The constructor's arguments that a resolved ``cfg`` (and the data) sets."""
        return {"embedding_dim": cfg.embedding_dim, "l2_user": cfg.l2_user, "l2_item": cfg.l2_item}

    def set_side_features(self, side: Any) -> None:
        """Copy the dataset's side features into the model (models that read them)."""

    #: The trainer's own step for table-only models (``cflib.train.rowstep``), or None
    #: for Keras' ``train_step``.
    row_step: Any = None

    def set_implicit(self, sets: Any) -> None:
        """Attach who rated what (``cflib.data.implicit``), for models that read it."""

    def before_save(self) -> None:
        """Bring into the saved weights what training computes on the fly (``svdpp``'s
        implicit user vectors); called before the run's model is saved."""

    def train_step(self, data: Any) -> Any:
        if self.row_step is not None:
            return self.row_step(data)
        logs = super().train_step(data)
        if self.vector_logs:
            logs = {k: tf.reshape(v, [1]) for k, v in logs.items()}
        return logs

    def build(self, input_shape: Any = None) -> None:
        # The tables' shapes do not depend on the inputs: build eagerly so a model can be
        # saved, or its weights set, before it has seen data.
        for layer in self.layers:
            if isinstance(layer, keras.layers.Embedding) and not layer.built:
                layer.build((None,))
        self.build_dense()
        self.built = True

    def build_dense(self) -> None:
        """Build the layers that are not tables (subclasses with an MLP)."""

    def call(self, inputs: dict[str, Any], training: bool = False) -> Any:
        # The lookups run as TensorFlow ops and the rest under XLA: on CPU, TensorFlow's
        # gather is several times faster than XLA's, and XLA fuses the arithmetic on the
        # rows (forward and backward) into a few loops (see README, Design).
        # Keras' symbolic build under a strategy feeds a batch averaged over replicas: floats.
        inputs = {k: v if v.dtype.is_integer else tf.cast(v, tf.int32) for k, v in inputs.items()}
        rows = self.lookup(inputs)
        pred, penalty = self.score_rows(rows, training=bool(training))
        if any(self.l2_weights.get(k) for k in rows):
            self.add_loss(penalty)
        return pred

    def score_rows(
        self, rows: dict[str, Any], training: bool = False, compiled: bool = True
    ) -> Any:
        """Predictions and the weighted L2 penalty of the batch's rows, under XLA where
        it runs (see ``call``) unless not ``compiled``."""
        # XLA's random numbers on CPU are ~100x slower than TensorFlow's: no XLA while
        # dropout is active.
        xla = compiled and self.xla and not (training and bool(getattr(self, "dropout", 0.0)))
        score = self._score_xla if xla else self._score_and_penalty
        return score(rows, training=training)

    def table_inputs(self) -> dict[str, str]:
        """The tables ``lookup`` reads, by layer name, and the input each is indexed by."""
        return {"user_embedding": "user", "item_embedding": "item"}

    def fused_tables(self) -> tuple[list[str], float]:
        """The tables of the fused training step (``cflib.train.fused``), in its order
        (user factors, item factors, then user and item biases if any), and the constant
        added to every score."""
        return ["user_embedding", "item_embedding"], 0.0

    def _score_and_penalty(self, rows: dict[str, Any], training: bool = False) -> Any:
        """Predictions and the weighted L2 penalty of the batch's rows."""
        terms = [
            self.l2_weights[k] * batch_l2(v) for k, v in rows.items() if self.l2_weights.get(k)
        ]
        penalty = sum(terms) if terms else ops.zeros(())
        return self.score(rows, training=training), penalty

    def row_gradients(self, rows: dict[str, Any], err: Any) -> dict[str, Any]:
        """The gradient of the batch's loss (mean squared error plus the L2 penalty) with
        respect to each looked-up row, from ``err = prediction - rating`` (``[B]``)."""
        n = tf.cast(tf.shape(err)[0], err.dtype)
        e = err[:, None]
        p, q = rows["user_embedding"], rows["item_embedding"]
        return {
            "user_embedding": 2.0 * (e * q + self.l2_user * p) / n,
            "item_embedding": 2.0 * (e * p + self.l2_item * q) / n,
        }

    def lookup(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The table rows of the batch, by layer name (L2-penalized per ``l2_weights``)."""
        return {
            "user_embedding": self.user_embedding(inputs["user"]),
            "item_embedding": self.item_embedding(inputs["item"]),
        }

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        """Predicted ratings, shape ``[B]``, from the rows that ``lookup`` returned."""
        return ops.sum(rows["user_embedding"] * rows["item_embedding"], axis=-1)

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        """The weights of the ``scoring_kind`` forward pass, by the names that
        ``cflib.registry.npscore`` reads (``cflib.registry.export.export_scoring``).

        Raises:
            NotImplementedError: the model has no numpy form (it is served by Keras).
        """
        return {
            "user_embedding": weights_array(self.user_embedding.embeddings),
            "item_embedding": weights_array(self.item_embedding.embeddings),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            n_users=self.n_users,
            n_items=self.n_items,
            embedding_dim=self.embedding_dim,
            l2_user=self.l2_user,
            l2_item=self.l2_item,
            init_std=self.init_std,
        )
        return config
