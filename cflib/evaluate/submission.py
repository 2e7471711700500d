"""Netflix Prize submissions: a predicted rating for each line of ``qualifying.txt``.

The file repeats the qualifying file's layout: a ``MovieID:`` line, then one prediction
per line (three decimals) in the file's order (``qualifying.parquet`` keeps it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Fallback = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def write_submission(
    qualifying: Path, out: Path, predict: Predict, fallback: Fallback, batch_size: int
) -> int:
    """Write predictions for every qualifying row to ``out`` (atomically); return the rows.

    ``predict(user, item)`` scores dense ids; rows whose user or item the dataset does
    not know (null dense id) get ``fallback(user, user_known, item, item_known)``.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    movie = None
    rows = 0
    with tmp.open("w") as fh:
        for batch in pq.ParquetFile(qualifying).iter_batches(
            batch_size=batch_size, columns=["user", "item", "raw_item"]
        ):
            user_col, item_col = batch.column("user"), batch.column("item")
            user_known = user_col.is_valid().to_numpy(zero_copy_only=False)
            item_known = item_col.is_valid().to_numpy(zero_copy_only=False)
            user = pc.fill_null(user_col, 0).to_numpy().astype(np.int32)
            item = pc.fill_null(item_col, 0).to_numpy().astype(np.int32)
            pred = predict(user, item)
            known = user_known & item_known
            if not known.all():
                pred = np.where(known, pred, fallback(user, user_known, item, item_known))
            raw_item = batch.column("raw_item").to_numpy()
            # Runs of one movie; the first may continue the previous batch's block.
            changes = np.flatnonzero(raw_item[1:] != raw_item[:-1]) + 1
            bounds = [0, *changes.tolist(), raw_item.size]
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                if raw_item[lo] != movie:
                    movie = raw_item[lo]
                    fh.write(f"{movie}:\n")
                fh.write("".join(f"{p:.3f}\n" for p in pred[lo:hi]))
            rows += raw_item.size
    tmp.replace(out)
    return rows
