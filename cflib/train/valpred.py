"""The model's scores on the validation rows: the early-stopped model's predictions
(``RUN/val_predictions.parquet``), and validation in numpy for a split held in memory.

Written once the fit phase has chosen its best epoch, with that epoch's weights, and
before the refit trains on the validation rows: so the predictions are out of sample,
and ``compare-models`` fits its blend's weights on them (``cflib.evaluate.blend``)
without the leak that the refit models' own predictions on these rows would be. The
file is replaced atomically; a run that resumes in the refit finds it written.

``HeldValidation`` scores each epoch of a small run (``TrainInputs.held``) the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cflib.data.manifest import Manifest
from cflib.data.tfdata import Columns
from cflib.logs import stage_logger
from cflib.registry import npscore

log = stage_logger("train")

#: The file's columns: the validation rows in the dataset's part order, with the model's
#: unclipped prediction.
VAL_PREDICTIONS = pa.schema(
    [
        pa.field("user", pa.int32(), False),
        pa.field("item", pa.int32(), False),
        pa.field("rating", pa.float32(), False),
        pa.field("prediction", pa.float32(), False),
    ]
)
_BATCH = 1 << 16


def _scorer(model: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The model's numpy form where it has one: its variables read as arrays, with no
    TensorFlow call that a multi-worker strategy would need every worker to join; else
    the Keras model."""
    try:
        arrays = model.scoring_arrays()
    except NotImplementedError:  # an MLP layer or text encoder numpy cannot score: Keras
        return lambda u, i: np.asarray(model.predict_on_batch({"user": u, "item": i}))
    return npscore.Scorer(model.scoring_kind, arrays)


def write_val_predictions(model: Any, manifest: Manifest, data_dir: Path, out: Path) -> int:
    """Score every validation row with ``model``; write ``out``; return the row count."""
    score = _scorer(model)
    tmp = out.with_name(f".{out.name}.tmp")
    rows = 0
    with pq.ParquetWriter(tmp, VAL_PREDICTIONS, compression="zstd") as writer:
        for path in manifest.split_paths(data_dir, "validation"):
            reader = pq.ParquetFile(path)
            for batch in reader.iter_batches(_BATCH, columns=["user", "item", "rating"]):
                user = batch.column("user").to_numpy().astype(np.int32, copy=False)
                item = batch.column("item").to_numpy().astype(np.int32, copy=False)
                pred = np.asarray(score(user, item), dtype=np.float32).reshape(-1)
                rating = batch.column("rating").to_numpy().astype(np.float32, copy=False)
                writer.write_table(pa.table([user, item, rating, pred], schema=VAL_PREDICTIONS))
                rows += len(user)
    tmp.replace(out)
    log.info("%s: the early-stopped model's predictions on %d validation rows", out, rows)
    return rows


class HeldValidation(keras.callbacks.Callback):
    """Validation in numpy, at each epoch's end: ``val_loss`` (the squared error plus the
    L2 penalty of the rows looked up, as Keras evaluates the compiled loss) and
    ``val_rmse`` of the model on validation rows held in memory, put into the epoch's logs
    for the callbacks after it (it goes first). The same figures as Keras' evaluation to
    float rounding, without a pass through its test function: that pass cost 33-40 ms an
    epoch on 9,000 to 45,000 rows, a third of a small run's epoch (BENCHMARKS.md, "Small
    data"); this, a gather and a dot product.
    """

    def __init__(self, rows: Columns, penalized: dict[str, float]) -> None:
        super().__init__()
        self.user, self.item = rows[0], rows[1]
        self.rating = rows[2].astype(np.float64)
        self.penalized = penalized

    @classmethod
    def of(cls, model: Any, rows: Columns | None) -> HeldValidation | None:
        """The callback for ``model`` on ``rows``, or None where they are not held or the
        model has no numpy form whose penalized tables it can read (Keras validates)."""
        if rows is None or not len(rows[0]):
            return None
        try:
            arrays = model.scoring_arrays()
        except NotImplementedError:
            return None
        penalized = {k: float(w) for k, w in model.l2_weights.items() if w}
        if any(k not in arrays or not k.startswith(("user_", "item_")) for k in penalized):
            return None
        return cls(rows, penalized)

    def scores(self, model: Any) -> dict[str, float]:
        """``val_loss`` and ``val_rmse`` of ``model``'s weights now."""
        arrays = model.scoring_arrays()
        pred = npscore.Scorer(model.scoring_kind, arrays)(self.user, self.item)
        err = pred.astype(np.float64) - self.rating
        mse = float(np.mean(err * err))
        penalty = 0.0
        for name, weight in self.penalized.items():
            rows = arrays[name][self.user if name.startswith("user_") else self.item]
            squares = np.square(rows.reshape(len(rows), -1), dtype=np.float64)
            penalty += weight * float(np.mean(squares.sum(axis=1)))
        return {"val_loss": mse + penalty, "val_rmse": math.sqrt(mse)}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None:
            logs.update(self.scores(self.model))
