"""``evaluate``'s numbers against the same numbers computed here with pandas and numpy,
from the Parquet files and the model's weights (not through cflib's metrics)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cflib import schema
from cflib.config import EvaluateConfig, TrainConfig
from cflib.evaluate.scoring import ITEM_DAMPING, USER_DAMPING, evaluate
from cflib.models.catalog import build_model
from tests._planted import write_dataset

N_USERS, N_ITEMS, DIM = 40, 25, 3
WARM_USERS, WARM_ITEMS = 36, 22  # users 36..39 and items 22..24 have no training rating
STARS = np.arange(1.0, 6.0)


def _stars(rng: np.random.Generator, user: np.ndarray, item: np.ndarray, b: Any) -> np.ndarray:
    score = 3.4 + b[0][user] + b[1][item] + rng.normal(0, 0.8, user.size)
    return np.clip(np.rint(score), 1, 5)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with star ratings and cold users and items in its test split, and a run
    whose biased MF has seeded random weights, large enough to need clipping."""
    root = tmp_path_factory.mktemp("numbers")
    rng = np.random.default_rng(11)
    b = rng.normal(0, 0.6, N_USERS), rng.normal(0, 0.6, N_ITEMS)
    splits = {}
    for split, n in (("train", 1500), ("validation", 200)):
        user, item = rng.integers(0, WARM_USERS, n), rng.integers(0, WARM_ITEMS, n)
        splits[split] = {"user": user, "item": item, "rating": _stars(rng, user, item, b)}
    # 240 warm pairs, 25 with a cold item, 30 with a cold user, 5 with both.
    user = np.concatenate([rng.integers(0, WARM_USERS, 265), rng.integers(WARM_USERS, N_USERS, 35)])
    item = np.concatenate(
        [
            rng.integers(0, WARM_ITEMS, 240),
            rng.integers(WARM_ITEMS, N_ITEMS, 25),
            rng.integers(0, WARM_ITEMS, 30),
            rng.integers(WARM_ITEMS, N_ITEMS, 5),
        ]
    )
    order = rng.permutation(user.size)
    user, item = user[order], item[order]
    splits["test"] = {"user": user, "item": item, "rating": _stars(rng, user, item, b)}
    data = write_dataset(
        root / "data", splits, n_users=N_USERS, n_items=N_ITEMS, name="numbers", fingerprint="n-1"
    )
    manifest = json.loads((data / schema.MANIFEST_FILE).read_text())
    train = manifest["splits"]["train"]
    mu = train["rating_sum"] / train["rows"]

    cfg = TrainConfig(embedding_dim=DIM, l2=0.0, l2_bias=0.0)
    model = build_model(cfg, n_users=N_USERS, n_items=N_ITEMS, global_mean=mu)
    model.predict_on_batch({"user": np.zeros(1, np.int32), "item": np.zeros(1, np.int32)})
    for layer, shape in [
        ("user_embedding", (N_USERS, DIM)),
        ("item_embedding", (N_ITEMS, DIM)),
        ("user_bias", (N_USERS, 1)),
        ("item_bias", (N_ITEMS, 1)),
    ]:
        getattr(model, layer).set_weights([rng.normal(0, 0.9, shape).astype(np.float32)])
    out = root / "run"
    out.mkdir()
    model.save(out / schema.MODEL_FILE)
    summary = {
        "run_id": "numbers", "model": "biased-mf", "dataset": "numbers", "data_dir": str(data),
        "data_fingerprint": "n-1", "val_rmse": 0.75,
    }  # fmt: skip
    (out / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary))
    return out


def _split(run: Path, split: str) -> pd.DataFrame:
    frame = pq.read_table(run.parent / "data" / schema.split_dir(split)).to_pandas()
    return frame.assign(rating=frame["rating"].astype(np.float64))


def _expected_predictions(run: Path, test: pd.DataFrame, mu: float) -> np.ndarray:
    """mu + b_u + b_i + p_u.q_i from the weights in the saved file, clipped to 1..5."""
    import keras

    model = keras.saving.load_model(run / schema.MODEL_FILE)
    p, q = (
        getattr(model, t).get_weights()[0].astype(np.float64)
        for t in ("user_embedding", "item_embedding")
    )
    bu, bi = (
        getattr(model, t).get_weights()[0][:, 0].astype(np.float64)
        for t in ("user_bias", "item_bias")
    )
    u, i = test["user"].to_numpy(), test["item"].to_numpy()
    return np.clip(mu + bu[u] + bi[i] + (p[u] * q[i]).sum(1), 1, 5)


def _rmse_mae(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = pred - true
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


@pytest.fixture(scope="module")
def metrics(run: Path) -> dict[str, Any]:
    return evaluate(run, EvaluateConfig(batch_size=64))  # several record batches per part


def test_headline_rmse_and_cold_rows(run: Path, metrics: dict[str, Any]) -> None:
    train, test = _split(run, "train"), _split(run, "test")
    mu = train["rating"].mean()
    pred = _expected_predictions(run, test, mu)
    true = test["rating"].to_numpy()
    assert metrics["n_test"] == len(test) == 300
    expected = _rmse_mae(pred, true)
    assert metrics["rmse"] == pytest.approx(expected["rmse"], abs=1e-5)
    assert metrics["mae"] == pytest.approx(expected["mae"], abs=1e-5)
    assert (pred == 5).any() and (pred == 1).any()  # clipping is part of the number
    low, high = metrics["rmse_ci95"]
    assert low < metrics["rmse"] < high
    cold = ~test["user"].isin(train["user"]) | ~test["item"].isin(train["item"])
    assert metrics["cold"]["rows"] == int(cold.sum()) == 60
    expected = _rmse_mae(pred[cold.to_numpy()], true[cold.to_numpy()])
    assert metrics["cold"]["rmse"] == pytest.approx(expected["rmse"], abs=1e-5)
    assert metrics["cold"]["mae"] == pytest.approx(expected["mae"], abs=1e-5)
    counts = test["rating"].value_counts().reindex(STARS, fill_value=0)
    assert metrics["distribution"]["values"] == STARS.tolist()
    assert metrics["distribution"]["true"] == counts.tolist()
    rounded = pd.Series(np.rint(pred)).value_counts().reindex(STARS, fill_value=0)
    assert metrics["distribution"]["predicted"] == rounded.tolist()


def test_baselines(run: Path, metrics: dict[str, Any]) -> None:
    train, test = _split(run, "train"), _split(run, "test")
    true = test["rating"].to_numpy()
    mu = train["rating"].mean()
    base = metrics["baselines"]
    for name, value in [
        ("global_mean", mu),
        ("majority_class", train["rating"].mode().min()),
    ]:
        expected = _rmse_mae(np.full(len(test), value), true)
        assert base[name]["rmse"] == pytest.approx(expected["rmse"], rel=1e-9), name
        assert base[name]["mae"] == pytest.approx(expected["mae"], rel=1e-9), name
    # Damped means: items first, then users on what the items leave.
    item = train.assign(r=train["rating"] - mu).groupby("item")["r"].agg(["sum", "count"])
    b_i = (item["sum"] / (item["count"] + ITEM_DAMPING)).reindex(range(N_ITEMS), fill_value=0)
    resid = train["rating"] - mu - b_i.to_numpy()[train["item"]]
    user = train.assign(r=resid).groupby("user")["r"].agg(["sum", "count"])
    b_u = (user["sum"] / (user["count"] + USER_DAMPING)).reindex(range(N_USERS), fill_value=0)
    pred = np.clip(mu + b_u.to_numpy()[test["user"]] + b_i.to_numpy()[test["item"]], 1, 5)
    expected = _rmse_mae(pred, true)
    assert base["user_item_bias"]["rmse"] == pytest.approx(expected["rmse"], rel=1e-9)
    assert base["user_item_bias"]["mae"] == pytest.approx(expected["mae"], rel=1e-9)
    # The two sampling baselines, against their expected squared error (seeded draws).
    share = train["rating"].value_counts(normalize=True).reindex(STARS, fill_value=0)
    sq = (STARS[None, :] - true[:, None]) ** 2
    uniform = np.sqrt(sq.mean(1).mean())
    weighted = np.sqrt((sq * share.to_numpy()[None, :]).sum(1).mean())
    assert base["random"]["rmse"] == pytest.approx(uniform, rel=0.08)
    assert base["weighted_sampling"]["rmse"] == pytest.approx(weighted, rel=0.08)
    assert abs(uniform - weighted) > 0.25  # far enough apart to tell which is which


@pytest.mark.slow
def test_cli_evaluate_exits_1_on_a_full_disk(
    prefect_harness: None, run: Path, tmp_path: Path
) -> None:
    """metrics.json is written through a file that is /dev/full: a real ENOSPC in the
    evaluation child, one line, exit status 1, and no metrics.json."""
    from prefect.settings import get_current_settings

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / schema.METRICS_FILE).unlink(missing_ok=True)
    (copy / f".{schema.METRICS_FILE}.tmp").symlink_to("/dev/full")
    env = {
        **os.environ, "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", "evaluate", str(copy)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    said = [line for line in proc.stderr.splitlines() if line.startswith("cfpipe: ")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(said) == 1 and "No space left on device" in said[0], said
    assert not (copy / schema.METRICS_FILE).exists()
