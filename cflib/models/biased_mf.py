"""Biased matrix factorization: global mean + user bias + item bias + dot product."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from cflib.models.dot import INIT_STD, DotModel


@keras.saving.register_keras_serializable(package="cfpipe")
class BiasedMF(DotModel):
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
        super().__init__(n_users, n_items, embedding_dim, l2=l2, init_std=init_std, **kwargs)
        self.global_mean = float(global_mean)
        self.user_bias = keras.layers.Embedding(
            n_users, 1, embeddings_initializer="zeros", name="user_bias"
        )
        self.item_bias = keras.layers.Embedding(
            n_items, 1, embeddings_initializer="zeros", name="item_bias"
        )

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        self.user_bias.build((None,))
        self.item_bias.build((None,))

    def lookup(self, inputs: dict[str, Any]) -> list[Any]:
        return [
            *super().lookup(inputs),
            self.user_bias(inputs["user"]),
            self.item_bias(inputs["item"]),
        ]

    def score(self, user: Any, item: Any, *biases: Any) -> Any:
        user_bias, item_bias = biases
        bias = ops.squeeze(user_bias + item_bias, axis=-1)
        return super().score(user, item) + bias + self.global_mean

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(global_mean=self.global_mean)
        return config
