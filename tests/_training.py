"""What a training run started from, and what a checkpoint holds, for the resume tests;
random batches for the tests of training steps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cflib.train import checkpoint


@dataclass
class Start:
    """A ``train`` call as its first ``fit`` began (after any restore), and where it ended."""

    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    steps: int
    epoch: int
    batch: int
    end_steps: int = -1


@contextmanager
def record_starts() -> Iterator[list[Start]]:
    """Record every ``train`` call in this process: its starting weights, optimizer
    variables and step count (once the checkpoint is restored), and its last step."""
    starts: list[Start] = []
    cls = checkpoint.Checkpointer
    begin, end = cls.on_train_begin, cls.on_train_end

    def on_train_begin(self: Any, logs: Any = None) -> None:
        begin(self, logs)
        if getattr(self, "_recorded", None) is None:  # the first fit of this train call
            self._recorded = Start(
                weights=[np.array(w) for w in self.model.get_weights()],
                optimizer=[np.array(v) for v in self.model.optimizer.variables],
                steps=self.state.steps,
                epoch=self.state.epoch,
                batch=self.state.batch,
            )
            starts.append(self._recorded)

    def on_train_end(self: Any, logs: Any = None) -> None:
        end(self, logs)
        self._recorded.end_steps = self.state.steps

    cls.on_train_begin, cls.on_train_end = on_train_begin, on_train_end  # type: ignore[method-assign]
    try:
        yield starts
    finally:
        cls.on_train_begin, cls.on_train_end = begin, end  # type: ignore[method-assign]


def checkpoint_arrays(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The model's variables (in no particular order) and the optimizer's (in its order)
    stored in a Keras ``.weights.h5`` checkpoint, read with h5py rather than Keras."""
    model: list[np.ndarray] = []
    optimizer: dict[int, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj: Any) -> None:
            if not isinstance(obj, h5py.Dataset):
                return
            if name.startswith("optimizer/vars/"):
                optimizer[int(name.rsplit("/", 1)[1])] = obj[()]
            else:
                model.append(obj[()])

        f.visititems(visit)
    return model, [optimizer[k] for k in sorted(optimizer)]


def same_arrays(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Whether two lists hold bitwise-equal arrays, in any order."""

    def key(x: np.ndarray) -> tuple[tuple[int, ...], bytes]:
        x = np.asarray(x, np.float32)
        return x.shape, x.tobytes()

    return sorted(map(key, a)) == sorted(map(key, b))


def random_batches(n_users: int, n_items: int, batch: int, batches: int, seed: int) -> Any:
    """A ``tf.data`` dataset of ``batches`` batches of random (user, item, rating) with
    repeated ids within a batch."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n = batches * batch
    users = rng.integers(0, n_users, n).astype(np.int32)
    items = rng.integers(0, n_items, n).astype(np.int32)
    ratings = rng.integers(1, 6, n).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices(({"user": users, "item": items}, ratings))
    return data.batch(batch)
