"""Scoring raw ids from a published artifact alone: ``cfpipe predict`` and ``recommend``.

An artifact is opened only after its checksums are verified. Pairs are scored by the
model's numpy form (``scoring/``, ``cflib.registry.npscore``: no TensorFlow, arrays
loaded without pickles); an artifact without one is scored by its Keras model, loaded
in safe mode (no pickled code). Raw ids map to dense ids through the
artifact's id maps (sorted by raw id, as ingest writes them); an id that is not in them
is an error here, unlike the SavedModel's serving signature, which falls back to the
mean and biases.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cflib import schema
from cflib.errors import CfpipeError
from cflib.registry import npscore
from cflib.registry.artifact import SCORING_DIR, SEEN_FILE, ArtifactError, verify
from cflib.registry.store import download, locate_artifact

#: Pairs scored per model call when ranking every item for one user.
SCORE_BATCH = 1 << 16


class UnknownIdError(CfpipeError, ValueError):
    """A raw user or item id that the model was not trained on."""


class Artifact:
    """A verified artifact: its ``artifact.json``, id maps, seen pairs and model."""

    def __init__(self, path: Path, info: dict[str, Any], source: str | None = None) -> None:
        self.path = path
        self.info = info
        #: Where the artifact was published (``path`` is a local copy of a remote one).
        self.source = source or str(path)
        self._cleanup: weakref.finalize | None = None

    def close(self) -> None:
        """Remove the local copy of a remote artifact (also done when collected)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Artifact:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @functools.cached_property
    def raw_users(self) -> np.ndarray:
        """Raw user id of each dense user (ascending)."""
        return self._raw_ids(schema.USER_MAP_FILE, "raw_user")

    @functools.cached_property
    def item_map(self) -> Any:
        """``item_map.parquet`` as a pyarrow table (raw_item, year, title, genres)."""
        return pq.ParquetFile(self.path / schema.ITEM_MAP_FILE).read()

    @functools.cached_property
    def raw_items(self) -> np.ndarray:
        """Raw item id of each dense item (ascending)."""
        return self._raw_ids(schema.ITEM_MAP_FILE, "raw_item")

    @functools.cached_property
    def model(self) -> Any:
        """The Keras model, loaded in safe mode."""
        from cflib.models.io import load_model

        return load_model(self.path / schema.MODEL_FILE)

    @functools.cached_property
    def scorer(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """Dense int32 ``(users, items)`` -> float32 scores: the numpy form, or the Keras
        model for an artifact without one (an older cfpipe's, or a model with none)."""
        if f"{SCORING_DIR}/{npscore.SPEC_FILE}" in self.info["files"]:
            return npscore.load(self.path / SCORING_DIR)
        model = self.model
        return lambda users, items: model.predict_on_batch({"user": users, "item": items})

    def _raw_ids(self, name: str, column: str) -> np.ndarray:
        # ParquetFile, not read_table: that imports pyarrow.dataset (0.3 s of a predict).
        ids = pq.ParquetFile(self.path / name).read(columns=[column]).column(0).to_numpy()
        if len(ids) > 1 and not bool(np.all(np.diff(ids) > 0)):
            raise ArtifactError(f"{self.path / name}: {column} is not strictly ascending")
        return ids.astype(np.int64)

    def dense_user(self, raw: int) -> int:
        """The dense id of raw user ``raw``."""
        return _dense(self.raw_users, raw, "user", self.source)

    def dense_item(self, raw: int) -> int:
        """The dense id of raw item ``raw``."""
        return _dense(self.raw_items, raw, "item", self.source)

    @property
    def rating_range(self) -> tuple[float, float]:
        """The training ratings' lowest and highest, which predictions are clipped to (as
        the SavedModel's signature clips them); an artifact from before they were
        recorded has the Netflix scale."""
        low, high = (self.info.get("serving") or {}).get(
            "rating_range", (schema.RATING_MIN, schema.RATING_MAX)
        )
        return float(low), float(high)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings of dense pairs, clipped to ``rating_range``."""
        return np.clip(self.raw_score(users, items), *self.rating_range)

    def raw_score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The model's float32 output for dense pairs, not clipped."""
        out = []
        for start in range(0, len(users), SCORE_BATCH):
            batch = slice(start, start + SCORE_BATCH)
            scores = self.scorer(users[batch].astype(np.int32), items[batch].astype(np.int32))
            out.append(np.asarray(scores).reshape(-1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def predict(self, raw_user: int, raw_item: int) -> float:
        """The predicted rating of raw user ``raw_user`` for raw item ``raw_item``.

        Raises:
            UnknownIdError: either id is not in the artifact's id maps.
        """
        user, item = self.dense_user(raw_user), self.dense_item(raw_item)
        return float(self.score(np.array([user]), np.array([item]))[0])

    def seen(self, dense_user: int) -> np.ndarray:
        """Dense items the user rated in the train and validation splits."""
        from cflib.registry.seen import seen_items

        return seen_items(self.path / SEEN_FILE, dense_user)

    def recommend(self, raw_user: int, k: int) -> list[dict[str, Any]]:
        """The ``k`` items with the highest predicted rating that the user has not rated.

        Items are ranked on the model's unclipped score (several may show the top
        rating once clipped); ties go to the lower dense (and raw) id.

        Returns:
            Up to ``k`` rows, best first: ``item`` (raw id), ``title``, ``year``,
            ``rating`` (predicted, clipped to the rating scale).

        Raises:
            UnknownIdError: the user is not in the artifact's id map.
            ValueError: ``k`` is not positive.
        """
        if k <= 0:
            raise ValueError(f"`k` should be a positive integer. Received: `k` = {k}.")
        user = self.dense_user(raw_user)
        n_items = len(self.raw_items)
        items = np.arange(n_items, dtype=np.int32)
        raw = self.raw_score(np.full(n_items, user, np.int32), items)
        candidates = np.setdiff1d(items, self.seen(user), assume_unique=True)
        # Ranked on the unclipped score, so items above the top of the scale still
        # order; a stable sort keeps ascending dense ids among equal scores.
        best = candidates[np.argsort(-raw[candidates], kind="stable")[:k]]
        scores = np.clip(raw, *self.rating_range)
        titles = self.item_map.column("title").to_pylist()
        years = self.item_map.column("year").to_pylist()
        return [
            {
                "item": int(self.raw_items[i]),
                "title": titles[i],
                "year": years[i],
                "rating": float(scores[i]),
            }
            for i in best
        ]


def _dense(raw_ids: np.ndarray, raw: int, what: str, path: str) -> int:
    pos = int(np.searchsorted(raw_ids, raw))
    if pos >= len(raw_ids) or raw_ids[pos] != raw:
        raise UnknownIdError(f"{what} {raw}: not in the model's {what} map ({path})")
    return pos


def open_artifact(
    ref: str | Path, registry: str | Path | None = None, *, for_scoring: bool = True
) -> Artifact:
    """Resolve ``ref``, verify its checksums, and open it.

    ``ref`` and ``registry`` are as in ``cflib.registry.resolve``, and may be fsspec
    URLs: a remote artifact is downloaded to a temporary directory and verified there;
    ``close()`` (or a ``with`` block) removes it, as does garbage collection.
    ``for_scoring`` also requires what ``recommend`` needs (``seen.parquet``, absent
    from older artifacts).

    Raises:
        RefError: ``ref`` is malformed or leaves its registry or model directory.
        ArtifactError: the artifact is missing, incomplete, corrupt or tampered.
    """
    where = locate_artifact(ref, registry)
    if where.local:
        path, tmp = Path(where.path), None
    else:
        tmp = tempfile.mkdtemp(prefix="cfpipe-artifact-")
        try:
            path = download(where, Path(tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    try:
        info = verify(path)
        if for_scoring and not (path / SEEN_FILE).is_file():
            raise ArtifactError(
                f"{where}: published by an older cfpipe without {SEEN_FILE}; publish it again"
            )
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    artifact = Artifact(path, info, source=str(where))
    if tmp is not None:
        artifact._cleanup = weakref.finalize(artifact, shutil.rmtree, tmp, True)
    return artifact
