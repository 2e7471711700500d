"""The early-stopped model's predictions on the validation rows: ``RUN/val_predictions.parquet``.

Written once the fit phase has chosen its best epoch, with that epoch's weights, and
before the refit trains on the validation rows: so the predictions are out of sample,
and ``compare-models`` fits its blend's weights on them (``cflib.evaluate.blend``)
without the leak that the refit models' own predictions on these rows would be. The
file is replaced atomically; a run that resumes in the refit finds it written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cflib.data.manifest import Manifest
from cflib.logs import stage_logger

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
    from cflib.registry import npscore

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
