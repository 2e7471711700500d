"""The SavedModel export: a serving signature over raw ids, for TensorFlow Serving.

The signature ``serving_default`` takes ``user`` and ``item`` (int64 ``[B]``, raw ids as
in the source files) and returns ``rating`` (float32 ``[B]``, clipped to the rating
scale) and ``known`` (bool ``[B]``: both ids were in the training data). Raw ids become
dense ids through two ``tf.lookup.StaticHashTable`` built from the id maps. The model is
called through the generic ``keras.Model`` call on ``{"user", "item"}`` dense int32 ids,
so any model class works. A pair with an unknown id is not scored by the model: it gets
the training mean plus the known side's bias where the model has bias tables (layers
named ``user_bias`` and ``item_bias``), or the training mean alone.

``export_scoring`` writes the same model's numpy form (``cflib.registry.npscore``), which
``cfpipe predict`` and ``recommend`` score with, and checks it against the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import pyarrow.parquet as pq
import tensorflow as tf

from cflib import schema
from cflib.registry import npscore

SIGNATURE = "serving_default"
_MISSING = -1
#: Pairs on which publishing compares the numpy scores with the Keras model's, and the
#: largest difference it accepts (float32 arithmetic in another order: about 1e-6).
CHECK_PAIRS = 1024
CHECK_TOLERANCE = 1e-4


def bias_vector(model: keras.Model, name: str, rows: int) -> np.ndarray | None:
    """The model's ``name`` bias table as a float32 vector, or None if it has none."""
    layer = getattr(model, name, None)
    if not isinstance(layer, keras.layers.Embedding) or not layer.built:
        return None
    table = np.asarray(keras.ops.convert_to_numpy(layer.embeddings), dtype=np.float32)
    if table.shape != (rows, 1):
        return None
    return table[:, 0]


def _raw_ids(path: Path, column: str) -> np.ndarray:
    return pq.read_table(path, columns=[column]).column(0).to_numpy().astype(np.int64)


def _table(raw: np.ndarray) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(raw, tf.int64), tf.range(len(raw), dtype=tf.int32)
    )
    return tf.lookup.StaticHashTable(init, default_value=_MISSING)


def export_saved_model(
    model: keras.Model,
    out: Path,
    *,
    user_map: Path,
    item_map: Path,
    global_mean: float,
    rating_range: tuple[float, float] = (schema.RATING_MIN, schema.RATING_MAX),
) -> dict[str, Any]:
    """Write ``model`` as a SavedModel whose serving signature takes raw ids.

    Args:
        model: the trained model (dense int32 ``{"user", "item"}`` in, ratings out).
        out: the SavedModel directory to create.
        user_map: ``user_map.parquet`` (row i: ``raw_user`` of dense user i).
        item_map: ``item_map.parquet`` (row i: ``raw_item`` of dense item i).
        global_mean: the mean training rating, the prediction for unknown ids.
        rating_range: the lowest and highest training rating; ``rating`` is clipped to
            them (``Manifest.rating_range``).

    Returns:
        What the signature does, for ``artifact.json``: inputs, outputs, rating range
        and the fallback used for unknown ids.
    """
    users, items = _raw_ids(user_map, "raw_user"), _raw_ids(item_map, "raw_item")
    user_table, item_table = _table(users), _table(items)
    zeros_u, zeros_i = np.zeros(len(users), np.float32), np.zeros(len(items), np.float32)
    b_user = bias_vector(model, "user_bias", len(users))
    b_item = bias_vector(model, "item_bias", len(items))
    # Variables (not graph constants) so the tables land in variables/, not the graph.
    user_bias = tf.Variable(zeros_u if b_user is None else b_user, trainable=False)
    item_bias = tf.Variable(zeros_i if b_item is None else b_item, trainable=False)
    mean = float(global_mean)
    low, high = float(rating_range[0]), float(rating_range[1])

    def serve(user: tf.Tensor, item: tf.Tensor) -> dict[str, tf.Tensor]:
        dense_u, dense_i = user_table.lookup(user), item_table.lookup(item)
        has_u, has_i = dense_u >= 0, dense_i >= 0
        safe_u, safe_i = tf.maximum(dense_u, 0), tf.maximum(dense_i, 0)
        scored = model({"user": safe_u, "item": safe_i}, training=False)
        scored = tf.reshape(tf.cast(scored, tf.float32), [-1])
        fallback = (
            mean
            + tf.where(has_u, tf.gather(user_bias, safe_u), 0.0)
            + tf.where(has_i, tf.gather(item_bias, safe_i), 0.0)
        )
        known = has_u & has_i
        rating = tf.where(known, scored, fallback)
        rating = tf.clip_by_value(rating, low, high)
        return {"rating": rating, "known": known}

    archive = keras.export.ExportArchive()
    archive.track(model)
    for resource in (user_table, item_table, user_bias, item_bias):
        archive.track(resource)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=serve,
        input_signature=[
            tf.TensorSpec([None], tf.int64, name="user"),
            tf.TensorSpec([None], tf.int64, name="item"),
        ],
    )
    archive.write_out(str(out), verbose=False)
    return {
        "signature": SIGNATURE,
        "inputs": {"user": "int64 [B] raw user id", "item": "int64 [B] raw item id"},
        "outputs": {"rating": "float32 [B]", "known": "bool [B]"},
        "rating_range": [low, high],
        "fallback": {
            "global_mean": mean,
            "user_bias": b_user is not None,
            "item_bias": b_item is not None,
        },
    }


def check_pairs(n_users: int, n_items: int, n: int = CHECK_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Dense ``(users, items)`` int32: every corner of the id ranges, then random pairs."""
    rng = np.random.default_rng(0)
    users = np.concatenate([[0, 0, n_users - 1, n_users - 1], rng.integers(0, n_users, n)])
    items = np.concatenate([[0, n_items - 1, 0, n_items - 1], rng.integers(0, n_items, n)])
    return users.astype(np.int32), items.astype(np.int32)


def export_scoring(model: keras.Model, out: Path) -> dict[str, Any] | None:
    """Write the numpy form of ``model`` to ``out``, and check it scores as the model does.

    Returns:
        For ``artifact.json``: ``scoring.json``'s content plus ``checked_pairs`` and
        ``max_abs_diff``; None if the model has no numpy form (nothing is written, and
        the artifact is served by Keras).

    Raises:
        RuntimeError: the numpy scores differ from the model's by more than
            ``CHECK_TOLERANCE``: a bug, a model class whose ``scoring_kind`` or
            ``scoring_arrays`` does not describe its ``score``.
    """
    try:
        arrays = model.scoring_arrays()
    except NotImplementedError:
        return None
    spec = npscore.write(out, model.scoring_kind, arrays)
    users, items = check_pairs(model.n_users, model.n_items)
    expected = np.asarray(model.predict_on_batch({"user": users, "item": items})).reshape(-1)
    worst = float(np.max(np.abs(npscore.load(out)(users, items) - expected)))
    if not worst <= CHECK_TOLERANCE:  # NaN included
        raise RuntimeError(
            f"{out}: the numpy form ({spec['kind']}) of {type(model).__name__} differs from "
            f"the Keras model by {worst:.3g} > {CHECK_TOLERANCE:g}; its scoring_kind or "
            "scoring_arrays does not match its score"
        )
    return {**spec, "checked_pairs": len(users), "max_abs_diff": worst}


def load_signature(path: Path) -> Any:
    """The serving signature of an exported SavedModel (a concrete function)."""
    return tf.saved_model.load(str(path)).signatures[SIGNATURE]


def export_blend_scoring(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write a blend's numpy form (``npscore.write_blend``) from its components' Keras
    models, and check it scores as the evaluation's blend of those models does.

    Returns:
        For ``artifact.json``: ``scoring.json``'s content plus ``checked_pairs`` and
        ``max_abs_diff``.

    Raises:
        ConfigError: a component has no numpy form (a blend is scored by numpy only).
        RuntimeError: the numpy scores differ by more than ``CHECK_TOLERANCE``.
    """
    from cflib.errors import ConfigError
    from cflib.evaluate.blend import combine
    from cflib.models.io import load_model

    models, components = [], []
    for c in spec["components"]:
        model = load_model(Path(c["run"]) / schema.MODEL_FILE)
        try:
            arrays = model.scoring_arrays()
        except NotImplementedError:
            raise ConfigError(
                f"{c['run']}: {c['model']} has no numpy form, so a blend of it cannot be published"
            ) from None
        models.append(model)
        components.append((c["model"], model.scoring_kind, arrays))
    weights = np.array([c["weight"] for c in spec["components"]], np.float64)
    written = npscore.write_blend(out, components, float(spec["intercept"]), weights)
    users, items = check_pairs(models[0].n_users, models[0].n_items)
    preds = [np.asarray(m.predict_on_batch({"user": users, "item": items})) for m in models]
    expected = combine(spec, preds)
    worst = float(np.max(np.abs(npscore.load(out)(users, items) - expected)))
    if not worst <= CHECK_TOLERANCE:  # NaN included
        raise RuntimeError(
            f"{out}: the blend's numpy form differs from its Keras components' blend by "
            f"{worst:.3g} > {CHECK_TOLERANCE:g}"
        )
    return {**written, "checked_pairs": len(users), "max_abs_diff": worst}
