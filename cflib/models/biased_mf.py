"""Biased matrix factorization: global mean + user bias + item bias + dot product."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from cflib.models.dot import INIT_STD, batch_l2, check_positive


@keras.saving.register_keras_serializable(package="cfpipe")
class BiasedMF(keras.Model):
    """``rating(u, i) = mu + b_u + b_i + p_u . q_i`` (Koren, Bell & Volinsky 2009).

    ``mu`` is the training mean from the manifest, a constant stored in the config and
    never trained. Biases start at zero and factors near zero, so the untrained model
    predicts the global mean. Inputs are ``{"user": int[B], "item": int[B]}``; the
    output is float32 ``[B]``. When ``l2 > 0`` each call adds ``l2`` times the batch
    mean of ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2`` to ``model.losses``.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
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
        self.global_mean = float(global_mean)
        self.l2 = float(l2)
        self.init_std = float(init_std)
        init = keras.initializers.RandomNormal(stddev=init_std)
        self.user_embedding = keras.layers.Embedding(
            n_users, embedding_dim, embeddings_initializer=init, name="user_embedding"
        )
        self.item_embedding = keras.layers.Embedding(
            n_items, embedding_dim, embeddings_initializer=init, name="item_embedding"
        )
        self.user_bias = keras.layers.Embedding(
            n_users, 1, embeddings_initializer="zeros", name="user_bias"
        )
        self.item_bias = keras.layers.Embedding(
            n_items, 1, embeddings_initializer="zeros", name="item_bias"
        )

    def build(self, input_shape: Any = None) -> None:
        # Shapes do not depend on the inputs; see DotModel.build.
        for layer in (self.user_embedding, self.item_embedding, self.user_bias, self.item_bias):
            layer.build((None,))
        self.built = True

    def call(self, inputs: dict[str, Any]) -> Any:
        user = self.user_embedding(inputs["user"])
        item = self.item_embedding(inputs["item"])
        user_bias = self.user_bias(inputs["user"])
        item_bias = self.item_bias(inputs["item"])
        if self.l2:
            self.add_loss(self.l2 * batch_l2(user, item, user_bias, item_bias))
        dot = ops.sum(user * item, axis=-1)
        return dot + ops.squeeze(user_bias + item_bias, axis=-1) + self.global_mean

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            n_users=self.n_users,
            n_items=self.n_items,
            embedding_dim=self.embedding_dim,
            global_mean=self.global_mean,
            l2=self.l2,
            init_std=self.init_std,
        )
        return config
