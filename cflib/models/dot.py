"""Matrix factorization without biases: the rating is the dot product of two embeddings."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

#: Standard deviation of the embeddings' initial values; small, so that the first
#: predictions are close to the biases (or zero) and Adam's first steps are stable.
INIT_STD = 0.01


def batch_l2(*rows: Any) -> Any:
    """Sum over tensors of the mean, over the batch, of each row's squared L2 norm.

    Only the rows looked up for the batch are penalized, so the cost does not grow with
    the size of the tables, and the mean keeps its weight independent of the batch size.
    """
    # divide_no_nan: under MirroredStrategy a replica can get an empty last batch.
    return sum(
        ops.divide_no_nan(ops.sum(ops.square(r)), ops.cast(ops.shape(r)[0], r.dtype)) for r in rows
    )


def check_positive(**values: Any) -> None:
    """Reject non-positive sizes, naming the argument and its value."""
    for name, value in values.items():
        if not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"`{name}` should be a positive integer. Received: `{name}` = {value}."
            )


@keras.saving.register_keras_serializable(package="cfpipe")
class DotModel(keras.Model):
    """``rating(u, i) = p_u . q_i``.

    Inputs are ``{"user": int[B], "item": int[B]}`` dense indices; the output is a
    float32 tensor of shape ``[B]``. When ``l2 > 0`` each call adds
    ``l2 * (mean_b |p_u|^2 + mean_b |q_i|^2)`` over the batch's rows to ``model.losses``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        l2: float = 0.0,
        init_std: float = INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive(n_users=n_users, n_items=n_items, embedding_dim=embedding_dim)
        if l2 < 0:
            raise ValueError(f"`l2` should be non-negative. Received: `l2` = {l2}.")
        self.n_users = n_users
        self.n_items = n_items
        self.embedding_dim = embedding_dim
        self.l2 = float(l2)
        self.init_std = float(init_std)
        init = keras.initializers.RandomNormal(stddev=init_std)
        self.user_embedding = keras.layers.Embedding(
            n_users, embedding_dim, embeddings_initializer=init, name="user_embedding"
        )
        self.item_embedding = keras.layers.Embedding(
            n_items, embedding_dim, embeddings_initializer=init, name="item_embedding"
        )

    def build(self, input_shape: Any = None) -> None:
        # The tables' shapes do not depend on the inputs: build eagerly so a model can be
        # saved, or its weights set, before it has seen data.
        self.user_embedding.build((None,))
        self.item_embedding.build((None,))
        self.built = True

    def call(self, inputs: dict[str, Any]) -> Any:
        rows = self.lookup(inputs)
        if self.l2:
            self.add_loss(self.l2 * batch_l2(*rows))
        return self.score(*rows)

    def lookup(self, inputs: dict[str, Any]) -> list[Any]:
        """The table rows of the batch; all of them are L2-penalized."""
        return [self.user_embedding(inputs["user"]), self.item_embedding(inputs["item"])]

    def score(self, user: Any, item: Any, *_: Any) -> Any:
        """Predicted ratings from the rows that ``lookup`` returned."""
        return ops.sum(user * item, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            n_users=self.n_users,
            n_items=self.n_items,
            embedding_dim=self.embedding_dim,
            l2=self.l2,
            init_std=self.init_std,
        )
        return config
