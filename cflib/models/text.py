"""Pluggable title encoders for the two-tower model: token ids ``[B, T]`` -> ``[B, dim]``.

No pre-trained text model can be downloaded offline, so the one encoder shipped learns
its token embeddings. Another one (a pre-trained sentence encoder, say) is a registered
Keras layer with the same constructor and call, added to ``TEXT_ENCODERS``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from cflib.models.dot import Table


@keras.saving.register_keras_serializable(package="cfpipe")
class MeanTokens(keras.layers.Layer):
    """The mean of learned embeddings of a title's tokens (id 0 is padding, ignored).

    Args:
        vocab_size: token ids are ``1..vocab_size``.
        dim: embedding size.
    """

    def __init__(self, vocab_size: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self.tokens = Table(
            self.vocab_size + 1,
            self.dim,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
            name="token_embedding",
        )

    def build(self, input_shape: Any = None) -> None:
        self.tokens.build((None, None))
        self.built = True

    def lookup(self, token_ids: Any) -> Any:
        """Token rows ``[B, T, dim]``: a TensorFlow gather, outside the XLA part."""
        return self.tokens(token_ids)

    def call(self, token_ids: Any, rows: Any) -> Any:
        mask = tf.cast(tf.not_equal(token_ids, 0), rows.dtype)[..., None]
        total = tf.reduce_sum(rows * mask, axis=1)
        return tf.math.divide_no_nan(total, tf.reduce_sum(mask, axis=1))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, dim=self.dim)
        return config


#: ``--text-encoder`` value -> layer class (constructor ``(vocab_size, dim, name=...)``).
TEXT_ENCODERS: dict[str, type[keras.layers.Layer]] = {"mean-tokens": MeanTokens}
