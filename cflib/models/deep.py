"""Deep model: the concatenated user and item embeddings through an MLP with dropout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from cflib.models.dot import DotModel
from cflib.models.mlp import check_mlp, dense_arrays, mlp, mlp_args

if TYPE_CHECKING:
    from cflib.config import TrainConfig

#: Initial spread of the deep models' embeddings: wider than MF's, so that the MLP's
#: inputs (and its gradients) are not all near zero at the start.
DEEP_INIT_STD = 0.05


@keras.saving.register_keras_serializable(package="cfpipe")
class DeepModel(DotModel):
    """``rating(u, i) = mu + MLP([p_u, q_i])`` (He et al. 2017's MLP branch).

    The MLP has ReLU layers of ``hidden`` sizes, each followed by dropout at ``dropout``
    (active in training only), and a linear output. ``mu`` is the training mean, a
    constant. Inputs and output are those of ``DotModel``.
    """

    scoring_kind = "deep"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        l2_user: float = 0.0,
        l2_item: float = 0.0,
        init_std: float = DEEP_INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_users, n_items, embedding_dim, l2_user=l2_user, l2_item=l2_item,
            init_std=init_std, **kwargs,
        )  # fmt: skip
        self.hidden = check_mlp(hidden, dropout)
        self.dropout = float(dropout)
        self.global_mean = float(global_mean)
        self.mlp = mlp(self.hidden, self.dropout, name="mlp")

    @classmethod
    def train_config_args(
        cls, cfg: TrainConfig, *, global_mean: float, side: Any
    ) -> dict[str, Any]:
        args = super().train_config_args(cfg, global_mean=global_mean, side=side)
        return {**args, "global_mean": global_mean, **mlp_args(cfg)}

    def build_dense(self) -> None:
        self.mlp.build((None, 2 * self.embedding_dim))

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        both = ops.concatenate([rows["user_embedding"], rows["item_embedding"]], axis=-1)
        return ops.squeeze(self.mlp(both, training=training), axis=-1) + self.global_mean

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        return {
            **super().scoring_arrays(),
            "global_mean": np.array(self.global_mean, np.float32),
            **dense_arrays(self.mlp, "mlp"),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(global_mean=self.global_mean, hidden=list(self.hidden), dropout=self.dropout)
        return config
