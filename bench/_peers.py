"""The peers of bench/peers.py: cfpipe's split exported as CSV, and one adapter per peer.

Each measure runs in a child process of its own, so that its time and peak memory are
its own (``python bench/_peers.py KEY EXPORT [DATA RUN]`` prints one ``RESULT {json}``
line). The peers get the rows of the export, every one of them: train + validation to
fit on, test to score; cfpipe gets the ingested dataset the export was made from.

Surprise (``scikit-surprise``) and LIBMF (the ``libmf`` package) are the ``bench`` extra
(``pip install -e '.[bench]'``); they are imported only by the adapters that use them.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

if __name__ == "__main__":  # run as a script: make `bench` and `cflib` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import own_peak_rss  # noqa: E402
from cflib import schema  # noqa: E402
from cflib.data.manifest import load_manifest  # noqa: E402

COLUMNS = ("user", "item", "rating")
EXPORT_META = "_export.json"
#: LIBMF's Python binding passes ids as float32, exact up to 2**24.
LIBMF_MAX_ID = 2**24


@dataclass(frozen=True)
class Rows:
    """One split as dense ids and ratings."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    rating: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.rating.size)

    @staticmethod
    def join(*parts: Rows) -> Rows:
        """The rows of ``parts``, in order."""
        return Rows(*(np.concatenate([getattr(p, c) for p in parts]) for c in COLUMNS))


def _rows(table: pa.Table) -> Rows:
    return Rows(
        table["user"].to_numpy().astype(np.int32),
        table["item"].to_numpy().astype(np.int32),
        table["rating"].to_numpy().astype(np.float32),
    )


def read_split(data: Path, split: str) -> Rows:
    """One split of an ingested dataset, as cfpipe wrote it (its parts in manifest order)."""
    paths = load_manifest(data).split_paths(data, split)
    return _rows(pa.concat_tables(pq.read_table(p, columns=list(COLUMNS)) for p in paths))


def export_splits(data: Path, out: Path) -> dict[str, int]:
    """Write each split of ``data`` as ``out/SPLIT.csv`` (``user,item,rating``, dense ids).

    Skipped when ``out`` already holds the export of this very dataset (same manifest
    fingerprint). Returns the rows written per split, which match the manifest's.
    """
    manifest = load_manifest(data)
    meta = out / EXPORT_META
    if meta.is_file():
        done = json.loads(meta.read_text())
        if done.get("fingerprint") == manifest.fingerprint:
            return dict(done["rows"])
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in schema.SPLITS:
        rows = read_split(data, split)
        table = pa.table({c: getattr(rows, c) for c in COLUMNS})
        pacsv.write_csv(table, out / f"{split}.csv")
        counts[split] = len(rows)
        if counts[split] != manifest.splits[split].rows:
            raise AssertionError(f"{data}: {split} has {counts[split]} rows, not the manifest's")
    meta.write_text(json.dumps({"fingerprint": manifest.fingerprint, "rows": counts}) + "\n")
    return counts


def load_export(out: Path, split: str) -> Rows:
    """One split as ``export_splits`` wrote it."""
    types = {"user": pa.int32(), "item": pa.int32(), "rating": pa.float32()}
    opts = pacsv.ConvertOptions(column_types=types)
    return _rows(pacsv.read_csv(out / f"{split}.csv", convert_options=opts))


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """RMSE of predictions clipped to the rating scale, as cfpipe scores its own."""
    pred = np.clip(pred.astype(np.float64), schema.RATING_MIN, schema.RATING_MAX)
    return float(np.sqrt(np.mean((pred - true.astype(np.float64)) ** 2)))


# ---------------------------------------------------------------------------- the peers
@dataclass(frozen=True)
class Peer:
    """A peer and its options, as the table of BENCHMARKS.md names it."""

    key: str
    label: str
    library: str  # "surprise-baseline", "surprise-svd" or "libmf"
    options: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> str:
        """The options, for the table (``defaults`` when there are none)."""
        shown = {k: v for k, v in self.options.items() if k not in _SILENT}
        return ", ".join(f"{k}={v}" for k, v in shown.items()) or "defaults"


# Not shown in the table: output, seeds, and the L1 terms (0; bench/peers.py says so).
_SILENT = ("quiet", "random_state", "lambda_p1", "lambda_q1")
_LIBMF = {"nr_iters": 20, "nr_threads": 2, "eta": 0.1, "quiet": True}
# The binding's own defaults are an L1 penalty of 0.04 and no L2; LIBMF's are L2 0.1.
_L2 = {"lambda_p1": 0.0, "lambda_q1": 0.0, "lambda_p2": 0.05, "lambda_q2": 0.05}
PEERS = (
    Peer("surprise-baseline", "Surprise BaselineOnly", "surprise-baseline"),
    Peer("surprise-svd", "Surprise SVD", "surprise-svd", {"random_state": 0}),
    Peer(
        "surprise-svd-100",
        "Surprise SVD (100 factors, 30 epochs)",
        "surprise-svd",
        {"n_factors": 100, "n_epochs": 30, "lr_all": 0.007, "reg_all": 0.05, "random_state": 0},
    ),
    Peer("libmf-k32", "LIBMF k32", "libmf", {"k": 32, **_LIBMF, **_L2}),
    Peer("libmf-k50", "LIBMF k50", "libmf", {"k": 50, **_LIBMF, **_L2}),
)
PEER_KEYS = tuple(p.key for p in PEERS)


def peer(key: str) -> Peer:
    """The peer named ``key``."""
    for p in PEERS:
        if p.key == key:
            return p
    raise ValueError(f"`key` should be one of {PEER_KEYS}. Received: `key` = {key!r}.")


def _surprise_trainset(train: Rows) -> Any:
    import pandas as pd
    from surprise import Dataset, Reader

    frame = pd.DataFrame({c: getattr(train, c) for c in COLUMNS})
    reader = Reader(rating_scale=(schema.RATING_MIN, schema.RATING_MAX))
    return Dataset.load_from_df(frame, reader).build_full_trainset()


def _surprise_predict(algo: Any, test: Rows) -> np.ndarray:
    # Surprise's own predict (raw ids; unknown users or items fall back as Surprise does).
    pairs = zip(test.user.tolist(), test.item.tolist(), strict=True)
    return np.array([algo.predict(u, i, clip=False).est for u, i in pairs], np.float64)


def _libmf_module() -> Any:
    # The binding prints where it found its shared library when it is imported.
    with contextlib.redirect_stdout(io.StringIO()):
        from libmf import mf
    return mf


def _libmf_predict(model: Any, test: Rows) -> np.ndarray:
    # pred_model_interface reads the pairs column-major (all users, then all items): a
    # C-ordered (n, 2) array would be read as the wrong pairs. Unknown ids get LIBMF's b.
    pairs = np.asfortranarray(np.column_stack([test.user, test.item]).astype(np.float32))
    return np.asarray(model.predict(pairs), np.float64)


def fit_predict(p: Peer, train: Rows, test: Rows) -> dict[str, Any]:
    """Fit peer ``p`` on ``train``, score it on ``test``.

    Returns ``rmse`` (clipped to the rating scale), ``fit_seconds`` (the fit alone),
    ``cpu_seconds`` (the CPU time of the fit, every thread's),
    ``prepare_seconds`` (the peer's own data structures from the arrays) and
    ``predict_seconds``.
    """
    start = time.perf_counter()
    if p.library.startswith("surprise"):
        from surprise import SVD, BaselineOnly

        data: Any = _surprise_trainset(train)
        model: Any = SVD(**p.options)
        if p.library == "surprise-baseline":
            model = BaselineOnly(verbose=False, **p.options)
        predict: Callable[[Any, Rows], np.ndarray] = _surprise_predict
    elif p.library == "libmf":
        high = max(int(train.user.max()), int(train.item.max()), 0)
        if high >= LIBMF_MAX_ID:
            raise ValueError(f"LIBMF's binding passes ids as float32: id {high} >= 2**24")
        data = np.column_stack([train.user, train.item, train.rating]).astype(np.float32)
        model = _libmf_module().MF(**p.options)
        predict = _libmf_predict
    else:
        raise ValueError(f"unknown peer library {p.library!r} of {p.key}")
    prepared, cpu = time.perf_counter(), time.process_time()
    model.fit(data)
    fitted, cpu = time.perf_counter(), time.process_time() - cpu
    pred = predict(model, test)
    return {
        "rmse": rmse(pred, test.rating),
        "fit_seconds": fitted - prepared,
        "cpu_seconds": cpu,
        "prepare_seconds": prepared - start,
        "predict_seconds": time.perf_counter() - fitted,
    }


def run_peer(key: str, export: Path) -> dict[str, Any]:
    """One peer on an export: fitted on train + validation, scored on test."""
    train = Rows.join(load_export(export, "train"), load_export(export, "validation"))
    test = load_export(export, "test")
    result = fit_predict(peer(key), train, test)
    return {**result, "train_rows": len(train), "test_rows": len(test)}


def run_cfpipe(data: Path, run: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """cfpipe's default: ``train`` with ``TrainConfig()`` (what ``cfpipe train`` runs in its
    child process), or with ``options`` set, then ``evaluate`` with ``EvaluateConfig()``;
    the training timed."""
    import shutil

    from cflib.config import EvaluateConfig, TrainConfig
    from cflib.evaluate.scoring import evaluate
    from cflib.evaluate.summary import tuning_words
    from cflib.train.loop import train  # TensorFlow loads here, before the clock starts

    shutil.rmtree(run, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    summary = train(data, run, TrainConfig(**(options or {})))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    metrics = evaluate(run, EvaluateConfig())
    cfg = summary["config"]
    return {
        "rmse": metrics["rmse"],
        "fit_seconds": seconds,
        "cpu_seconds": cpu,
        "val_rmse": summary["val_rmse"],
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "refit": summary["refit"]
        and {"epochs": summary["refit"]["epochs"], "averaged": "averaged" in summary["refit"]},
        "settings": (
            f"{cfg['model']}, dim {cfg['embedding_dim']}, l2 {cfg['l2']}, "
            f"batch {cfg['batch_size']:,}, {cfg['optimizer']} lr {cfg['learning_rate']}, "
            f"at most {cfg['epochs']} epochs, patience {cfg['patience']}, "
            + f"searched: {tuning_words(summary['tuning'])}"
        ),
        "baselines": {k: v["rmse"] for k, v in metrics["baselines"].items()},
        "oracle_rmse": metrics["oracle_rmse"],
        "train_rows": load_manifest(data).splits["train"].rows,
        "test_rows": metrics["n_test"],
    }


def main(argv: list[str]) -> None:
    """Child mode: ``KEY EXPORT`` for a peer, ``cfpipe EXPORT DATA RUN [OPTIONS_JSON]`` for
    cfpipe."""
    key, export = argv[0], Path(argv[1])
    if key == "cfpipe":
        options = json.loads(argv[4]) if len(argv) > 4 else None
        result = run_cfpipe(Path(argv[2]), Path(argv[3]), options)
    else:
        result = run_peer(key, export)
    result["peak_rss"] = own_peak_rss()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
