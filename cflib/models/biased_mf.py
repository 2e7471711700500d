"""Biased matrix factorization: global mean + user bias + item bias + dot product."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from cflib.models.dot import INIT_STD, DotModel, check_l2, embedding, weights_array

if TYPE_CHECKING:
    from cflib.config import TrainConfig


@keras.saving.register_keras_serializable(package="cfpipe")
class BiasedMF(DotModel):
    """``rating(u, i) = mu + b_u + b_i + p_u . q_i`` (Koren, Bell & Volinsky 2009).

    ``mu`` is the training mean from the manifest, a constant stored in the config and
    never trained. Biases start at zero and factors near zero, so the untrained model
    predicts the global mean. Inputs are ``{"user": int[B], "item": int[B]}``; the
    output is float32 ``[B]``. ``l2_bias`` weighs the batch mean of ``b_u^2 + b_i^2``.
    """

    scoring_kind = "biased-mf"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
        l2_user: float = 0.0,
        l2_item: float = 0.0,
        l2_bias: float = 0.0,
        init_std: float = INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_users, n_items, embedding_dim, l2_user=l2_user, l2_item=l2_item,
            init_std=init_std, **kwargs,
        )  # fmt: skip
        check_l2(l2_bias=l2_bias)
        self.global_mean = float(global_mean)
        self.l2_bias = float(l2_bias)
        self.user_bias = embedding(n_users, 1, "user_bias", 0.0)
        self.item_bias = embedding(n_items, 1, "item_bias", 0.0)
        self.l2_weights.update({"user_bias": self.l2_bias, "item_bias": self.l2_bias})

    @classmethod
    def train_config_args(
        cls, cfg: TrainConfig, *, global_mean: float, side: Any
    ) -> dict[str, Any]:
        args = super().train_config_args(cfg, global_mean=global_mean, side=side)
        return {**args, "global_mean": global_mean, "l2_bias": float(cfg.l2_bias or 0.0)}

    def lookup(self, inputs: dict[str, Any]) -> dict[str, Any]:
        rows = super().lookup(inputs)
        rows["user_bias"] = self.user_bias(inputs["user"])
        rows["item_bias"] = self.item_bias(inputs["item"])
        return rows

    def table_inputs(self) -> dict[str, str]:
        return {**super().table_inputs(), "user_bias": "user", "item_bias": "item"}

    def row_gradients(self, rows: dict[str, Any], err: Any) -> dict[str, Any]:
        grads = super().row_gradients(rows, err)
        n = ops.cast(ops.shape(err)[0], err.dtype)
        e = err[:, None]
        grads["user_bias"] = 2.0 * (e + self.l2_bias * rows["user_bias"]) / n
        grads["item_bias"] = 2.0 * (e + self.l2_bias * rows["item_bias"]) / n
        return grads

    def fused_tables(self) -> tuple[list[str], float]:
        tables, _ = super().fused_tables()
        return [*tables, "user_bias", "item_bias"], self.global_mean

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        bias = ops.squeeze(rows["user_bias"] + rows["item_bias"], axis=-1)
        return super().score(rows, training) + bias + self.global_mean

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().scoring_arrays(),
            "user_bias": weights_array(self.user_bias.embeddings)[:, 0],
            "item_bias": weights_array(self.item_bias.embeddings)[:, 0],
            "global_mean": np.array(self.global_mean, np.float32),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(global_mean=self.global_mean, l2_bias=self.l2_bias)
        return config
