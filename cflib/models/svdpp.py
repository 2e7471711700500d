"""SVD++: biased MF whose user vector adds the items the user rated, ratings unseen.

``rating(u, i) = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``
(Koren 2008), N(u) every item u rated in any split (``cflib.data.implicit``).

The implicit term z_u is computed per batch with segment sums: the batch's unique users,
their N(u) slices of the CSR arrays (a ragged range over the offsets), one gather of the
y rows and one ``unsorted_segment_sum``, scaled and mapped back to the batch's rows. A
step costs sum |N(u)| over the batch's unique users, so the trainer feeds batches whose
ratings are grouped by user (``cflib.data.tfdata``, ``group_users``).

For scoring, z_u is folded once into a non-trainable table ``user_implicit`` before the
model is saved (``before_save``); a model without the CSR arrays attached (loaded from
``model.keras``) reads z_u from that table, so evaluation, export and serving need no
N(u), and the numpy form is ``biased-mf``'s forward pass with ``p_u + z_u`` as the user
table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from cflib.models.biased_mf import BiasedMF
from cflib.models.dot import embedding, weights_array

if TYPE_CHECKING:
    from cflib.data.implicit import ImplicitSets

#: Pairs of N(u) summed per numpy step when folding (4M x dim floats at a time).
FOLD_PAIRS = 1 << 22
#: Sizes per doubling that a batch's N(u) lookups are padded to (see ``padded_size``).
SIZES_PER_OCTAVE = 4


def padded_size(n: Any) -> Any:
    """``n`` rounded up to one of ``SIZES_PER_OCTAVE`` sizes per power of two (at most
    1/``SIZES_PER_OCTAVE`` more). The optimizer's XLA update compiles once per shape of
    a table's gradient: the lookups of N(u) differ in number at every step, and unpadded
    they made every step compile anew (0.01M ratings/s at the Netflix shape).
    """
    n = tf.maximum(tf.cast(n, tf.int64), 1)
    octave = tf.cast(tf.math.floor(tf.math.log(tf.cast(n, tf.float64)) / np.log(2.0)), tf.int64)
    finer = int(np.log2(SIZES_PER_OCTAVE))
    quantum = tf.bitwise.left_shift(tf.constant(1, tf.int64), tf.maximum(octave - finer, 0))
    return (n + quantum - 1) // quantum * quantum


class _Csr:
    """N(u) as tensors, plus the numpy arrays for folding; a plain holder, so that
    neither Keras nor TensorFlow's checkpointing tracks (and saves) it."""

    def __init__(self, sets: ImplicitSets) -> None:
        self.sets = sets
        with tf.init_scope():
            self.offsets = tf.constant(np.asarray(sets.offsets, np.int64))
            self.items = tf.constant(np.asarray(sets.items, np.int32))


def fold(sets: ImplicitSets, y: np.ndarray) -> np.ndarray:
    """``|N(u)|^-1/2 sum_{j in N(u)} y_j`` of every user, float32 ``[n_users, dim]``
    (0 for a user with no item), in chunks of about ``FOLD_PAIRS`` pairs."""
    offsets, counts = sets.offsets, sets.counts()
    out = np.zeros((sets.n_users, y.shape[1]), np.float32)
    first = 0
    while first < sets.n_users:
        last = int(np.searchsorted(offsets, offsets[first] + FOLD_PAIRS, side="right")) - 1
        last = min(max(last, first + 1), sets.n_users)
        begin, end = int(offsets[first]), int(offsets[last])
        if end > begin:
            rows = y[np.asarray(sets.items[begin:end])]
            nonempty = counts[first:last] > 0
            starts = offsets[first:last][nonempty] - begin
            block = out[first:last]
            block[nonempty] = np.add.reduceat(rows, starts, axis=0)
        first = last
    scale = 1.0 / np.sqrt(np.maximum(counts, 1).astype(np.float32))
    return out * scale[:, None]


@keras.saving.register_keras_serializable(package="cfpipe")
class SVDpp(BiasedMF):
    """``rating(u, i) = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)``.

    Inputs and output are those of ``BiasedMF``. The implicit item table ``y`` is
    ``implicit_embedding`` ``[n_items, dim]``; its L2 term is ``l2_item`` times the batch
    mean, over the batch's ratings, of the mean ``|y_j|^2`` over the rater's N(u). Train
    it with ``set_implicit`` called (the CSR arrays of N(u)); without them the model
    reads z_u from ``user_implicit``, which ``before_save`` fills.
    """

    scoring_kind = "svdpp"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # BiasedMF's arguments
        dim = self.embedding_dim
        self.implicit_embedding = embedding(self.n_items, dim, "implicit_embedding", self.init_std)
        # Its L2 term is over N(u) per rating (``_score_and_penalty``), not over looked-up
        # rows: listed for the fused step, which applies it so; ``lookup`` returns no
        # rows under this name, so the batch penalty of ``DotModel`` never sees it.
        self.l2_weights["implicit_embedding"] = self.l2_item
        self.user_implicit = embedding(self.n_users, dim, "user_implicit", 0.0)
        self.user_implicit.trainable = False
        self._csr: _Csr | None = None

    def set_implicit(self, sets: ImplicitSets) -> None:
        """Attach N(u) (``cflib.data.implicit``): z_u is then computed from ``y``.

        Raises:
            ValueError: the arrays are for another number of users or items.
        """
        if (sets.n_users, sets.n_items) != (self.n_users, self.n_items):
            raise ValueError(
                f"N(u) is for {sets.n_users} users and {sets.n_items} items; the model has "
                f"{self.n_users} and {self.n_items}"
            )
        self._csr = _Csr(sets)

    def before_save(self) -> None:
        """Fold z_u of every user into ``user_implicit`` (with N(u) attached)."""
        if self._csr is None:
            return
        y = weights_array(self.implicit_embedding.embeddings)
        self.user_implicit.embeddings.assign(fold(self._csr.sets, y))

    def fused_tables(self) -> tuple[list[str], float]:
        tables, mu = super().fused_tables()
        return [*tables, "implicit_embedding"], mu

    def fused_implicit(self) -> tuple[Any, Any] | None:
        """N(u) as the fused step reads it (offsets, items), or None without N(u)."""
        return None if self._csr is None else (self._csr.offsets, self._csr.items)

    def implicit_rows(self, users: Any) -> tuple[Any, Any]:
        """z_u of each batch row ``[B, dim]`` and the mean ``|y_j|^2`` over its N(u) ``[B]``."""
        assert self._csr is not None
        csr = self._csr
        unique, index = tf.unique(users)
        starts = tf.gather(csr.offsets, unique)
        ends = tf.gather(csr.offsets, unique + 1)
        slices = tf.ragged.range(starts, ends)
        positions, segments = slices.flat_values, slices.value_rowids()
        n = tf.shape(unique, out_type=tf.int64)[0]
        # Padded with lookups of row 0 into an extra segment that is dropped: zero
        # gradients, and few distinct shapes (padded_size).
        pad = (
            padded_size(tf.shape(positions, out_type=tf.int64)[0])
            - tf.shape(positions, out_type=tf.int64)[0]
        )
        positions = tf.concat([positions, tf.zeros([pad], tf.int64)], 0)
        segments = tf.concat([segments, tf.fill([pad], n)], 0)
        y = self.implicit_embedding(tf.gather(csr.items, positions))
        count = tf.maximum(tf.cast(ends - starts, y.dtype), 1.0)
        sums = tf.math.unsorted_segment_sum(y, segments, n + 1)[:n]
        z = sums * tf.math.rsqrt(count)[:, None]
        square = tf.math.unsorted_segment_sum(tf.reduce_sum(y * y, axis=-1), segments, n + 1)
        return tf.gather(z, index), tf.gather(square[:n] / count, index)

    def lookup(self, inputs: dict[str, Any]) -> dict[str, Any]:
        rows = super().lookup(inputs)
        if self._csr is None:
            rows["implicit"] = self.user_implicit(inputs["user"])
            rows["implicit_l2"] = tf.zeros(tf.shape(inputs["user"]), rows["implicit"].dtype)
        else:
            rows["implicit"], rows["implicit_l2"] = self.implicit_rows(inputs["user"])
        return rows

    def _score_and_penalty(self, rows: dict[str, Any], training: bool = False) -> Any:
        rows = dict(rows)
        square = rows.pop("implicit_l2")
        pred, penalty = super()._score_and_penalty(rows, training)
        if self.l2_item:
            batch = ops.cast(ops.shape(square)[0], square.dtype)
            penalty = penalty + self.l2_item * ops.divide_no_nan(ops.sum(square), batch)
        return pred, penalty

    def score(self, rows: dict[str, Any], training: bool = False) -> Any:
        user = rows["user_embedding"] + rows["implicit"]
        return super().score({**rows, "user_embedding": user}, training)

    def scoring_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().scoring_arrays()
        folded = weights_array(self.user_implicit.embeddings)
        return {**arrays, "user_embedding": arrays["user_embedding"] + folded}
