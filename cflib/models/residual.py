"""Residual model: biased MF plus an MLP branch over the concatenated embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from cflib.models.biased_mf import BiasedMF
from cflib.models.dot import INIT_STD
from cflib.models.mlp import check_mlp, dense_arrays, mlp, mlp_args

if TYPE_CHECKING:
    from cflib.config import TrainConfig


@keras.saving.register_keras_serializable(package="cfpipe")
class ResidualModel(BiasedMF):
    """``rating(u, i) = mu + b_u + b_i + p_u . q_i + MLP([p_u, q_i])``.

    The MLP's output layer starts at zero, so the untrained model is ``BiasedMF``: the
    branch only learns what the dot product misses. Layers and dropout as ``DeepModel``.
    """

    scoring_kind = "residual"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        l2_user: float = 0.0,
        l2_item: float = 0.0,
        l2_bias: float = 0.0,
        init_std: float = INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_users, n_items, embedding_dim, global_mean, l2_user=l2_user, l2_item=l2_item,
            l2_bias=l2_bias, init_std=init_std, **kwargs,
        )  # fmt: skip
        self.hidden = check_mlp(hidden, dropout)
        self.dropout = float(dropout)
        self.mlp = mlp(self.hidden, self.dropout, name="mlp", zero_output=True)

    @classmethod
    def train_config_args(
        cls, cfg: TrainConfig, *, global_mean: float, side: Any
    ) -> dict[str, Any]:
        args = super().train_config_args(cfg, global_mean=global_mean, side=side)
        return {**args, **mlp_args(cfg)}

    def build_dense(self) -> None:
        self.mlp.build((None, 2 * self.embedding_dim))

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        both = ops.concatenate([rows["user_embedding"], rows["item_embedding"]], axis=-1)
        branch = ops.squeeze(self.mlp(both, training=training), axis=-1)
        return super().score(rows, training) + branch

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        return {**super().scoring_arrays(), **dense_arrays(self.mlp, "mlp")}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(hidden=list(self.hidden), dropout=self.dropout)
        return config
