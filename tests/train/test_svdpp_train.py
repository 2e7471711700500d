"""Training SVD++: it learns what biased MF cannot from who rated what; its run resumes
after a crash, runs across two replicas and saves a model that scores without N(u)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cflib.config import TrainConfig
from cflib.data import implicit
from cflib.data.manifest import load_manifest
from cflib.models.io import load_model
from cflib.train import checkpoint
from cflib.train.loop import train
from tests._implicit import write_implicit
from tests._planted import read_split

CFG = TrainConfig(model="svdpp", embedding_dim=8, batch_size=256, epochs=6, patience=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_implicit(tmp_path_factory.mktemp("data") / "implicit")


def _test_rmse(run: Path, data: Path) -> float:
    user, item, rating = read_split(data, "test")
    model = load_model(run / "model.keras")
    pred = np.clip(model.predict_on_batch({"user": user, "item": item}), 1, 5)
    return float(np.sqrt(np.mean((pred - rating) ** 2)))


def test_svdpp_beats_biased_mf_where_who_rated_what_tells(data: Path, tmp_path: Path) -> None:
    svdpp = train(data, tmp_path / "svdpp", CFG)
    mf = train(data, tmp_path / "mf", CFG.model_copy(update={"model": "biased-mf", "refit": False}))
    assert svdpp["val_rmse"] < mf["val_rmse"] - 0.03, (svdpp["val_rmse"], mf["val_rmse"])
    # The saved (refit, folded) model: no N(u) attached, the test ratings better too.
    assert svdpp["refit"]["epochs"] == svdpp["best_epoch"]
    assert _test_rmse(tmp_path / "svdpp", data) < _test_rmse(tmp_path / "mf", data) - 0.03
    # N(u) was built once, in the dataset, and the run directory holds only its files.
    cached = data / implicit.CACHE_DIR / load_manifest(data).fingerprint[:16]
    assert (cached / implicit.ITEMS_FILE).is_file()
    assert not (tmp_path / "svdpp" / checkpoint.CHECKPOINT_DIR).exists()


@pytest.mark.slow
def test_killed_svdpp_run_resumes(data: Path, tmp_path: Path, monkeypatch: Any) -> None:
    cfg = CFG.model_copy(update={"epochs": 2, "checkpoint_steps": 5})
    whole = train(data, tmp_path / "whole", cfg)
    original = checkpoint.Checkpointer.on_train_batch_end

    def crash(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        if self.state.steps == 22:  # epoch 2 (of 14 batches), after its checkpoint at 20
            raise KeyboardInterrupt  # as a crash: nothing after this step is written

    with monkeypatch.context() as mp:
        mp.setattr(checkpoint.Checkpointer, "on_train_batch_end", crash)
        with pytest.raises(KeyboardInterrupt):
            train(data, tmp_path / "run", cfg)
    resumed = train(data, tmp_path / "run", cfg)
    assert resumed["resumed"] == {"epoch": 2, "batch": 20 - 14}
    assert resumed["val_rmse"] == pytest.approx(whole["val_rmse"], rel=0.02)
    assert _test_rmse(tmp_path / "run", data) == pytest.approx(
        _test_rmse(tmp_path / "whole", data), rel=0.02
    )


TWO_REPLICAS = """
import json, sys
from pathlib import Path
from cflib.config import TrainConfig
from cflib.train.loop import train
summary = train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]))
print("SUMMARY " + json.dumps(summary))
"""


@pytest.mark.slow
def test_svdpp_on_two_replicas(data: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"replicas": 2, "epochs": 2, "refit": False})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, "-c", TWO_REPLICAS, str(data), str(tmp_path / "run")]
    proc = subprocess.run(
        [*args, cfg.model_dump_json()], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert summary["placement"] == "MirroredStrategy over 2 CPU devices"
    history = summary["history"]
    # Loss averaged over replicas: the L2 terms on top of the squared error, no more.
    assert history["rmse"][-1] ** 2 <= history["loss"][-1] < 1.5 * history["rmse"][-1] ** 2
    # Two epochs already below what biased MF reaches at its best here (~0.45).
    assert history["val_rmse"][-1] < history["val_rmse"][0]
    assert summary["val_rmse"] < 0.46
    assert _test_rmse(tmp_path / "run", data) < 0.47
