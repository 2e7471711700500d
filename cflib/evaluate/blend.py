"""A linear blend of several trained models, fitted on the validation split.

The Netflix Prize lesson: a ridge regression of the rating on the models' predictions,
plus an intercept, beats each model alone. Its weights are fitted in closed form on the
validation rows, with the predictions of the early-stopped models
(``RUN/val_predictions.parquet``, written before the refit, ``cflib.train.valpred``):
the refit models have trained on those rows, so their own predictions there are in
sample and would give the model that fits the validation rows best (not the one that
generalizes best) the largest weight. The weights are then applied to the refit models'
predictions on the test split.

A blend is a run directory of its own: ``blend.json`` (components, weights, intercept)
and a ``train.json`` that the evaluation, the report and the publishing read as they
read a trained run's. No TensorFlow here: the flow process fits the blend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from cflib import schema
from cflib.data.manifest import load_manifest
from cflib.errors import DatasetError
from cflib.evaluate.metrics import rmse
from cflib.logs import stage_logger
from cflib.train import runs

log = stage_logger("evaluate")

#: The blend's model name in the registry and the comparison table.
BLEND_MODEL = "blend"
#: Ridge penalty on the weights, per validation row (the intercept is not penalized).
DEFAULT_L2 = 1e-3


def fit_weights(preds: np.ndarray, ratings: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Ridge regression of ``ratings`` on the columns of ``preds`` plus an intercept.

    Minimizes ``|y - b - X w|^2 + l2 * n * |w|^2`` in closed form: on centered columns,
    ``(Xc'Xc + l2 n I) w = Xc'yc`` and ``b = mean(y) - mean(X) w``. The system is solved
    by least squares, so a singular one (``l2`` 0 with constant or identical columns)
    gets its smallest-norm solution: constant predictions get weight 0 and the blend is
    the intercept alone, the mean rating.

    Args:
        preds: ``[n, k]`` predictions of ``k`` models on ``n`` rows (``k`` may be 0).
        ratings: ``[n]`` true ratings.
        l2: ridge penalty per row, >= 0.

    Returns:
        ``(intercept, weights)``, weights ``[k]`` float64.
    """
    x = np.asarray(preds, dtype=np.float64)
    y = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"`preds` should be [n, k] and `ratings` [n] with n > 0. Received: shapes "
            f"{x.shape} and {y.shape}."
        )
    if not l2 >= 0:
        raise ValueError(f"`l2` should be >= 0. Received: `l2` = {l2}.")
    n, k = x.shape
    x_mean, y_mean = x.mean(axis=0), float(y.mean())
    xc, yc = x - x_mean, y - y_mean
    weights = np.linalg.lstsq(xc.T @ xc + l2 * n * np.eye(k), xc.T @ yc, rcond=None)[0]
    return y_mean - float(x_mean @ weights), weights


def combine(spec: dict[str, Any], preds: Sequence[np.ndarray]) -> np.ndarray:
    """The blend of the components' predictions (each clipped to the rating scale, as
    the evaluation scores them), float64, not clipped itself."""
    weights = np.array([c["weight"] for c in spec["components"]], dtype=np.float64)
    if len(preds) != len(weights):
        raise ValueError(f"{len(preds)} predictions for a blend of {len(weights)} models")
    if not len(preds):
        return np.zeros(0)
    x = np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in preds], axis=1)
    return float(spec["intercept"]) + np.clip(x, schema.RATING_MIN, schema.RATING_MAX) @ weights


def read_spec(run: Path) -> dict[str, Any] | None:
    """``RUN/blend.json`` if ``run`` is a blend, else None."""
    path = Path(run) / schema.BLEND_FILE
    return runs.read_json(path, "not a blend") if path.is_file() else None


def _val_predictions(run: Path) -> dict[str, np.ndarray]:
    path = run / schema.VAL_PREDICTIONS_FILE
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing; the run was trained by a cfpipe that does not write it, so it "
            "cannot be blended: train it again"
        )
    table = pq.read_table(path)
    return {c: table.column(c).to_numpy() for c in ("user", "item", "rating", "prediction")}


def fit_blend(run_dirs: Sequence[Path], out: Path, run_id: str, l2: float) -> dict[str, Any]:
    """Fit a blend of the trained runs ``run_dirs`` and write its run directory ``out``.

    Returns:
        ``blend.json``'s content: ``run_id``, ``intercept``, ``l2``, ``val_rmse`` (the
        blend's on the validation rows), ``n_validation``, ``components`` (each
        ``run_id``, ``run``, ``model``, ``weight``, ``val_rmse``: the early-stopped
        model's on the same rows).

    Raises:
        DatasetError: fewer than two runs, a run without validation predictions, runs
            trained on different data or whose validation rows differ.
    """
    if len(run_dirs) < 2:
        raise DatasetError(f"a blend needs at least two trained runs; got {len(run_dirs)}")
    summaries = [runs.train_summary(Path(r)) for r in run_dirs]
    first = summaries[0]
    vals = [_val_predictions(Path(r)) for r in run_dirs]
    rows = load_manifest(Path(first["data_dir"])).splits["validation"].rows
    for run, summary, val in zip(run_dirs, summaries, vals, strict=True):
        if summary["data_fingerprint"] != first["data_fingerprint"]:
            raise DatasetError(
                f"{run}: trained on data {summary['data_fingerprint'][:12]}, not the "
                f"{first['data_fingerprint'][:12]} of {run_dirs[0]}; a blend needs one dataset"
            )
        same = len(val["user"]) == rows and all(
            np.array_equal(val[c], vals[0][c]) for c in ("user", "item")
        )
        if not same:
            raise DatasetError(
                f"{Path(run) / schema.VAL_PREDICTIONS_FILE}: not the {rows} validation rows of "
                f"{first['data_dir']} in the dataset's order"
            )
    clipped = [np.clip(v["prediction"], schema.RATING_MIN, schema.RATING_MAX) for v in vals]
    ratings = vals[0]["rating"]
    intercept, weights = fit_weights(np.stack(clipped, axis=1), ratings, l2)
    spec: dict[str, Any] = {
        "run_id": run_id,
        "intercept": intercept,
        "l2": l2,
        "n_validation": int(len(ratings)),
        "components": [
            {
                "run_id": s["run_id"],
                "run": str(Path(r).absolute()),
                "model": s["model"],
                "weight": float(w),
                "val_rmse": rmse(c, ratings),
            }
            for r, s, w, c in zip(run_dirs, summaries, weights, clipped, strict=True)
        ],
    }
    blended = np.clip(combine(spec, clipped), schema.RATING_MIN, schema.RATING_MAX)
    spec["val_rmse"] = rmse(blended, ratings)
    out.mkdir(parents=True)
    runs.write_json(out / schema.BLEND_FILE, spec)
    summary = {
        key: first[key]
        for key in ("dataset", "data_dir", "data_fingerprint", "n_users", "n_items", "global_mean")
    }
    summary.update(
        run_id=run_id,
        model=BLEND_MODEL,
        config={"l2": l2, "components": [s["run_id"] for s in summaries]},
        val_rmse=spec["val_rmse"],
        blend=spec,
    )
    runs.write_json(out / schema.TRAIN_SUMMARY_FILE, summary)
    log.info("blend %s: %s", run_id, describe(spec))
    return spec


def not_better(rmse: float, singles: dict[str, float]) -> str | None:
    """Why a blend with test ``rmse`` is not published: not below the best single model's
    test RMSE (``singles``: model -> test RMSE); None when it is (then the publishing
    gate against the user + item bias baseline still applies)."""
    best = min(singles, key=lambda m: singles[m])
    if rmse < singles[best]:  # NaN is never better
        return None
    return (
        f"not published: test RMSE {rmse:.4f} is not better than the best single model's "
        f"({best}, {singles[best]:.4f})"
    )


def describe(spec: dict[str, Any]) -> str:
    """The blend in one line: ``0.3120 + 0.412 x dot + 0.633 x biased-mf``."""
    terms = " ".join(
        f"{'-' if c['weight'] < 0 else '+'} {abs(c['weight']):.3f} x {c['model']}"
        for c in spec["components"]
    )
    return f"{spec['intercept']:.4f} {terms}"


def weights_text(spec: dict[str, Any]) -> str:
    """The weights for a table cell: ``dot 0.412, biased-mf 0.633, intercept 0.3120``."""
    parts = [f"{c['model']} {c['weight']:.3f}" for c in spec["components"]]
    return ", ".join([*parts, f"intercept {spec['intercept']:.4f}"])
