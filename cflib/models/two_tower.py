"""Two-tower model: a user tower and an item tower over ids and side features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from cflib.errors import ConfigError
from cflib.models.biased_mf import BiasedMF
from cflib.models.deep import DEEP_INIT_STD
from cflib.models.dot import embedding, weights_array
from cflib.models.mlp import check_mlp, dense_arrays, mlp, mlp_args
from cflib.models.text import TEXT_ENCODERS, MeanTokens

if TYPE_CHECKING:
    from cflib.config import TrainConfig

#: Side features of users, in the order of the tower's inputs.
USER_FEATURES = ("gender", "age", "occupation")


def _tower(hidden: int, dim: int, name: str) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.Dense(hidden, activation="relu", name=f"{name}_hidden"),
            keras.layers.Dense(dim, name=f"{name}_out"),
        ],
        name=name,
    )


@keras.saving.register_keras_serializable(package="cfpipe")
class TwoTowerModel(BiasedMF):
    """``rating(u, i) = mu + b_u + b_i + MLP(U(user) * V(item))``.

    The user tower ``U`` reads the user's id embedding and the embeddings of their
    gender, age and occupation where the dataset has them; the item tower ``V`` reads
    the item's id embedding, its genres (multi-hot times a genre table, averaged), its
    title (``text_encoder`` over the title's tokens) and its release year. Each tower is
    a ReLU layer and a linear layer to ``embedding_dim``; the elementwise product goes
    through the MLP (``hidden``, ``dropout``). Biases are those of ``BiasedMF``.

    The side features are codes per dense id (``cflib.data.side.SideFeatures``), held
    in non-trainable weights (set with ``set_side_features``; saved with the model), so
    the inputs stay ``{"user", "item"}`` like every other model's.
    """

    scoring_kind = "two-tower"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int,
        global_mean: float,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        n_genres: int = 0,
        title_vocab: int = 0,
        title_tokens: int = 0,
        n_years: int = 0,
        n_gender: int = 0,
        n_age: int = 0,
        n_occupation: int = 0,
        text_encoder: str = "mean-tokens",
        l2_user: float = 0.0,
        l2_item: float = 0.0,
        l2_bias: float = 0.0,
        init_std: float = DEEP_INIT_STD,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            n_users, n_items, embedding_dim, global_mean, l2_user=l2_user, l2_item=l2_item,
            l2_bias=l2_bias, init_std=init_std, **kwargs,
        )  # fmt: skip
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(
                f"`text_encoder` should be one of {sorted(TEXT_ENCODERS)}. "
                f"Received: `text_encoder` = {text_encoder!r}."
            )
        self.hidden = check_mlp(hidden, dropout)
        self.dropout = float(dropout)
        self.sizes = {
            "n_genres": int(n_genres),
            "title_vocab": int(title_vocab),
            "title_tokens": int(title_tokens),
            "n_years": int(n_years),
            "n_gender": int(n_gender),
            "n_age": int(n_age),
            "n_occupation": int(n_occupation),
        }
        self.text_encoder = text_encoder
        dim, std = embedding_dim, init_std
        self.user_side = [f for f in USER_FEATURES if self.sizes[f"n_{f}"]]
        self.user_tables = {
            f: embedding(self.sizes[f"n_{f}"] + 1, dim, f"{f}_embedding", std)
            for f in self.user_side
        }
        self.side_user = {
            f: self.side_weight(f"side_{f}", (n_users,), "int32") for f in self.user_side
        }
        self.genre_table = embedding(n_genres, dim, "genre_embedding", std) if n_genres else None
        self.title_encoder = None
        if title_vocab and title_tokens:
            self.title_encoder = TEXT_ENCODERS[text_encoder](title_vocab, dim, name="title")
        self.year_table = embedding(n_years + 1, dim, "year_embedding", std) if n_years else None
        self.side_genres = self.side_weight("side_genres", (n_items, n_genres), "float32")
        self.side_title = self.side_weight("side_title", (n_items, title_tokens), "int32")
        self.side_year = self.side_weight("side_year", (n_items,), "int32")
        self.user_tower = _tower(max(self.hidden, default=dim), dim, "user_tower")
        self.item_tower = _tower(max(self.hidden, default=dim), dim, "item_tower")
        self.mlp = mlp(self.hidden, self.dropout, name="mlp")

    @classmethod
    def train_config_args(
        cls, cfg: TrainConfig, *, global_mean: float, side: Any
    ) -> dict[str, Any]:
        if side is None:
            raise ConfigError("--model two-tower needs the dataset's side features")
        args = super().train_config_args(cfg, global_mean=global_mean, side=side)
        return {
            **args, **mlp_args(cfg), "text_encoder": cfg.text_encoder,
            "title_tokens": side.title.shape[1], **side.sizes(),
        }  # fmt: skip

    def side_weight(self, name: str, shape: tuple[int, ...], dtype: str) -> Any:
        """A non-trainable weight holding side-feature codes."""
        return self.add_weight(
            shape=shape, dtype=dtype, initializer="zeros", trainable=False, name=name
        )

    def set_side_features(self, side: Any) -> None:
        """Copy ``cflib.data.side.SideFeatures`` codes into the model's weights."""
        self.side_genres.assign(side.genres.astype(np.float32))
        self.side_title.assign(side.title.astype(np.int32))
        self.side_year.assign(side.year.astype(np.int32))
        for f in self.user_side:
            self.side_user[f].assign(side.user_codes[f].astype(np.int32))

    def build_dense(self) -> None:
        dim = self.embedding_dim
        if self.title_encoder is not None:
            self.title_encoder.build((None, None))
        n_user_in = dim * (1 + len(self.user_side))
        n_item_in = dim * (1 + sum(x is not None for x in (
            self.genre_table, self.title_encoder, self.year_table)))  # fmt: skip
        self.user_tower.build((None, n_user_in))
        self.item_tower.build((None, n_item_in))
        self.mlp.build((None, dim))

    def lookup(self, inputs: dict[str, Any]) -> dict[str, Any]:
        rows = super().lookup(inputs)
        user, item = inputs["user"], inputs["item"]
        for f in self.user_side:
            codes = tf.gather(self.side_user[f].value, user)
            rows[f"{f}_embedding"] = self.user_tables[f](codes)
        if self.genre_table is not None:
            rows["genres"] = tf.gather(self.side_genres.value, item)
        if self.title_encoder is not None:
            tokens = tf.gather(self.side_title.value, item)
            rows["title_tokens"] = tokens
            rows["title_rows"] = self.title_encoder.lookup(tokens)
        if self.year_table is not None:
            rows["year_embedding"] = self.year_table(tf.gather(self.side_year.value, item))
        return rows

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        user_in = [rows["user_embedding"], *(rows[f"{f}_embedding"] for f in self.user_side)]
        item_in = [rows["item_embedding"]]
        if self.genre_table is not None:
            genres = rows["genres"]
            count = tf.maximum(tf.reduce_sum(genres, axis=1, keepdims=True), 1.0)
            table = self.genre_table.embeddings
            item_in.append(
                tf.matmul(genres, table.value if hasattr(table, "value") else table) / count
            )
        if self.title_encoder is not None:
            item_in.append(self.title_encoder(rows["title_tokens"], rows["title_rows"]))
        if self.year_table is not None:
            item_in.append(rows["year_embedding"])
        user = self.user_tower(tf.concat(user_in, axis=-1))
        item = self.item_tower(tf.concat(item_in, axis=-1))
        inter = tf.squeeze(self.mlp(user * item, training=training), axis=-1)
        bias = tf.squeeze(rows["user_bias"] + rows["item_bias"], axis=-1)
        return inter + bias + self.global_mean

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().scoring_arrays()
        arrays["user_features"] = np.array(self.user_side, np.str_)
        for f in self.user_side:
            arrays[f"side_{f}"] = weights_array(self.side_user[f])
            arrays[f"{f}_embedding"] = weights_array(self.user_tables[f].embeddings)
        if self.genre_table is not None:
            arrays["side_genres"] = weights_array(self.side_genres)
            arrays["genre_embedding"] = weights_array(self.genre_table.embeddings)
        if self.title_encoder is not None:
            if type(self.title_encoder) is not MeanTokens:
                raise NotImplementedError(f"text encoder {self.text_encoder}: no numpy form")
            arrays["side_title"] = weights_array(self.side_title)
            arrays["token_embedding"] = weights_array(self.title_encoder.tokens.embeddings)
        if self.year_table is not None:
            arrays["side_year"] = weights_array(self.side_year)
            arrays["year_embedding"] = weights_array(self.year_table.embeddings)
        for name in ("user_tower", "item_tower", "mlp"):
            arrays.update(dense_arrays(getattr(self, name), name))
        return arrays

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            hidden=list(self.hidden), dropout=self.dropout, text_encoder=self.text_encoder,
            **self.sizes,
        )  # fmt: skip
        return config
