"""Training on a small planted dataset: learning, the run directory, errors, two replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from cflib import schema
from cflib.config import TrainConfig
from cflib.data.manifest import load_manifest
from cflib.errors import ConfigError, DatasetError
from cflib.models.catalog import resolve_for
from cflib.models.io import load_model
from cflib.train.distribute import configure_devices
from cflib.train.loop import train
from tests._planted import (
    N_ITEMS,
    N_USERS,
    baseline_rmse,
    bias_only_floor,
    planted_rmse,
    quality_bar,
    read_split,
    write_planted,
)

# Fast settings that still learn the planted biases and factors. The fit phase alone:
# tests/train/test_refit.py trains with the refit that follows it by default.
CFG = TrainConfig(
    embedding_dim=8, learning_rate=0.1, batch_size=2000, epochs=4, patience=1, l2=0.0,
    l2_bias=0.0, refit=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("data") / "planted")


@pytest.fixture(scope="module")
def trained(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, train(planted, out, CFG, run_id="test-run")


def test_biased_mf_learns_the_planted_factors(planted: Path, trained: tuple[Path, dict]) -> None:
    _, summary = trained
    floor = bias_only_floor(*read_split(planted, "validation"))
    assert baseline_rmse(planted) > 0.8 > floor + 0.2  # biases and factors to be learned
    # Below the best that biases alone can do (by a wide margin), near the planted model.
    assert summary["val_rmse"] < quality_bar(planted) < floor - 0.1
    assert summary["val_rmse"] < 1.25 * planted_rmse()
    history = summary["history"]
    assert history["val_rmse"][-1] < history["val_rmse"][0]
    # The reported loss is the mean squared error (the L2 term is negligible here).
    assert history["loss"][-1] == pytest.approx(history["rmse"][-1] ** 2, rel=1e-3)


def test_biases_alone_fail_the_quality_bar(planted: Path, trained: tuple[Path, dict]) -> None:
    """The trained model with its factors zeroed keeps only its biases: above the bar."""
    out, summary = trained
    model = load_model(out / schema.MODEL_FILE)
    for table in (model.user_embedding, model.item_embedding):
        table.set_weights([np.zeros_like(w) for w in table.get_weights()])
    user, item, rating = read_split(planted, "validation")
    pred = model.predict_on_batch({"user": user, "item": item})
    biases_only = float(np.sqrt(np.mean((pred - rating) ** 2)))
    assert biases_only > quality_bar(planted) > summary["val_rmse"]


def test_train_json(planted: Path, trained: tuple[Path, dict]) -> None:
    out, summary = trained
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "logs", schema.MODEL_FILE, schema.TRAIN_SUMMARY_FILE, schema.VAL_PREDICTIONS_FILE
    ]  # fmt: skip
    assert json.loads((out / schema.TRAIN_SUMMARY_FILE).read_text()) == summary
    assert summary["run_id"] == "test-run"
    assert summary["model"] == "biased-mf"
    assert summary["config"] == resolve_for(CFG, load_manifest(planted)).identity()
    assert summary["request"] == summary["config"]
    assert summary["tuning"]["skipped"] == "--embedding-dim and --l2 given"
    assert summary["resumed"] is None and summary["input"] == "stream"
    assert summary["dataset"] == "planted"
    assert summary["data_dir"] == str(planted.absolute())
    assert summary["data_fingerprint"] == "planted-0"
    assert (summary["n_users"], summary["n_items"]) == (N_USERS, N_ITEMS)
    assert 3.0 < summary["global_mean"] < 4.0
    assert set(summary["history"]) == {"loss", "rmse", "val_loss", "val_rmse"}
    epochs = summary["epochs_run"]
    assert 1 <= epochs <= CFG.epochs
    assert all(len(v) == epochs for v in summary["history"].values())
    assert summary["val_rmse"] == min(summary["history"]["val_rmse"])
    assert summary["history"]["val_rmse"][summary["best_epoch"] - 1] == summary["val_rmse"]
    assert summary["seconds"] > 0 and summary["ratings_per_second"] > 0
    assert summary["replicas"] == 1 and summary["workers"] == 1 and summary["devices"]
    assert summary["placement"] == "one CPU device"
    assert summary["tensorflow"] == tf.__version__ and summary["keras"]
    # No staging directory left next to the run.
    assert [p.name for p in out.parent.iterdir()] == ["run"]


def test_saved_model_scores_like_the_best_epoch(planted: Path, trained: tuple[Path, dict]) -> None:
    out, summary = trained
    model = load_model(out / schema.MODEL_FILE)
    table = pq.read_table(planted / schema.split_dir("validation"))
    batch = {"user": table["user"].to_numpy(), "item": table["item"].to_numpy()}
    pred = model.predict_on_batch(batch)
    assert pred.shape == (len(table),)
    rmse = float(np.sqrt(np.mean((pred - table["rating"].to_numpy()) ** 2)))
    assert rmse == pytest.approx(summary["val_rmse"], rel=1e-3)


def test_generated_run_id(planted: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"epochs": 1, "model": "dot"})
    summary = train(planted, tmp_path / "run", cfg)
    assert summary["model"] == "dot" and summary["epochs_run"] == 1
    assert len(summary["run_id"]) == len("20261123T212233Z-3fa2c1")


def test_refuses_non_empty_out_dir(planted: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--out .*run: already exists and is not empty"):
        train(planted, out, CFG)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (out / "keep.txt").read_text() == "mine"


def test_dataset_without_manifest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetError, match="no manifest"):
        train(tmp_path / "data", tmp_path / "run", CFG)
    assert not (tmp_path / "run").exists()


def test_replicas_after_tensorflow_started() -> None:
    tf.constant(1.0) + 1.0  # the runtime is now initialized with one logical CPU
    with pytest.raises(ConfigError, match="--replicas 2: .*fresh process"):
        configure_devices(2)
    with pytest.raises(ConfigError, match="--replicas"):
        configure_devices(0)


TWO_REPLICAS = """
import json, sys
from pathlib import Path
import numpy as np
from cflib.config import TrainConfig
from cflib.models.io import load_model
from cflib.train.loop import train
cfg = TrainConfig.model_validate_json(sys.argv[3])
summary = train(Path(sys.argv[1]), Path(sys.argv[2]), cfg)
model = load_model(Path(sys.argv[2]) / "model.keras")
pairs = {"user": np.array([0, 1], np.int32), "item": np.array([1, 2], np.int32)}
summary["loaded_shape"] = list(model.predict_on_batch(pairs).shape)
print("SUMMARY " + json.dumps(summary))
"""


def test_two_replicas_in_a_fresh_process(planted: Path, tmp_path: Path) -> None:
    # Logical CPU devices must be configured before TensorFlow starts: a new process.
    cfg = CFG.model_copy(update={"replicas": 2, "refit": True})  # the refit too
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, "-c", TWO_REPLICAS, str(planted), str(tmp_path / "run")]
    proc = subprocess.run(
        [*args, cfg.model_dump_json()], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    assert summary["strategy"] == "MirroredStrategy"
    assert summary["replicas"] == 2 and len(summary["devices"]) == 2
    assert summary["placement"] == "MirroredStrategy over 2 CPU devices"
    # Loss and gradients are averaged over replicas, not summed (see cflib.models.losses).
    history = summary["history"]
    assert history["loss"][-1] == pytest.approx(history["rmse"][-1] ** 2, rel=1e-3)
    assert history["val_loss"][-1] == pytest.approx(history["val_rmse"][-1] ** 2, rel=1e-3)
    assert summary["val_rmse"] < quality_bar(planted)
    assert summary["loaded_shape"] == [2]
    assert summary["refit"]["epochs"] == summary["best_epoch"]  # the refit ran across replicas
    assert "auto_shard" not in proc.stderr.lower()


def test_tensorboard_logs_under_the_run(trained: tuple[Path, dict]) -> None:
    out, summary = trained
    for split in ("train", "validation"):
        events = list((out / "logs" / split).glob("events.out.tfevents.*"))
        assert events and sum(e.stat().st_size for e in events) > 100, split


def test_two_tower_needs_side_tables(planted: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"model": "two-tower", "l2_bias": None})
    with pytest.raises(ConfigError, match="two-tower needs side features.*item_map.parquet"):
        train(planted, tmp_path / "run", cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_tower_trains_on_item_side_features(planted: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(planted, data)
    words = ["red", "planet", "night", "story", "dark"]
    items = pa.table(
        {
            "raw_item": np.arange(N_ITEMS, dtype=np.int64) + 1,
            "year": pa.array([1990 + i % 20 for i in range(N_ITEMS)], pa.int16()),
            "title": [f"{words[i % 5]} {words[i // 5 % 5]}" for i in range(N_ITEMS)],
            "genres": [["Drama"] if i % 3 else ["Action", "War"] for i in range(N_ITEMS)],
        },
        schema=schema.ITEM_MAP,
    )
    pq.write_table(items, data / schema.ITEM_MAP_FILE)
    # Its MLP learns at 1% of the rate (see README, Design): a high rate, a few epochs more.
    update = {"model": "two-tower", "epochs": 10, "patience": 3, "learning_rate": 0.5}
    summary = train(data, tmp_path / "run", CFG.model_copy(update={**update, "l2_bias": None}))
    # Better than any model of biases alone: the towers' product has learned something.
    assert summary["val_rmse"] < bias_only_floor(*read_split(planted, "validation")) - 0.02
    model = load_model(tmp_path / "run" / schema.MODEL_FILE)
    assert model.get_config()["n_genres"] == 3 and model.get_config()["n_years"] == 20


MULTI_WORKER = """
import json, os, sys
from pathlib import Path
from cflib.config import TrainConfig
from cflib.train.loop import train
summary = train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]))
print("SUMMARY " + json.dumps(summary))
"""


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _two_workers(planted: Path, out: Path, cfg: TrainConfig) -> list[tuple[int, str, str]]:
    """Run the two workers to the end; (exit status, stdout, stderr) of each.

    TensorFlow binds each worker's port itself (without SO_REUSEPORT), so the test cannot
    hold the ports for it: a port taken meanwhile fails that worker at once ("Could not
    start gRPC server"), and the pair is started again on other ports.
    """
    import shutil
    import time

    for _attempt in range(3):
        workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
        procs, logs = [], []
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {
                **os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": "",
            }  # fmt: skip
            args = [sys.executable, "-c", MULTI_WORKER, str(planted), str(out)]
            files = [out.parent.parent / f"worker{index}.{s}" for s in ("out", "err")]
            with files[0].open("w") as stdout, files[1].open("w") as stderr:
                proc = subprocess.Popen(
                    [*args, cfg.model_dump_json()], env=env, stdout=stdout, stderr=stderr
                )
            procs.append(proc)
            logs.append(files)
        deadline, bind_failed = time.monotonic() + 400, False
        try:
            while any(p.poll() is None for p in procs):
                assert time.monotonic() < deadline, "the workers did not finish in 400 s"
                bind_failed = any(
                    p.returncode and "Could not start gRPC server" in err.read_text()
                    for p, (_, err) in zip(procs, logs, strict=True)
                )
                if bind_failed:
                    break
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        if not bind_failed:
            return [
                (p.returncode, o.read_text(), e.read_text())
                for p, (o, e) in zip(procs, logs, strict=True)
            ]
        shutil.rmtree(out, ignore_errors=True)
    raise AssertionError("could not start the two workers on free ports in 3 attempts")


@pytest.mark.slow
def test_two_workers_on_localhost(planted: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"epochs": 3, "checkpoint_steps": 0})
    (tmp_path / "work").mkdir()
    out = tmp_path / "work" / "run"
    outputs = _two_workers(planted, out, cfg)
    for status, _, err in outputs:
        assert status == 0, err[-3000:]
    summaries = [
        json.loads(next(x for x in o.splitlines() if x.startswith("SUMMARY "))[8:])
        for _, o, _ in outputs
    ]
    chief = json.loads((out / schema.TRAIN_SUMMARY_FILE).read_text())
    assert chief["run_id"] == summaries[0]["run_id"]
    assert chief["strategy"] == "MultiWorkerMirroredStrategy"
    assert chief["workers"] == 2 and chief["replicas"] == 2
    assert chief["placement"] == "MultiWorkerMirroredStrategy over 2 workers (2 replicas)"
    # Both workers took the same steps on their shards and agree on the result.
    assert summaries[1]["history"]["loss"] == pytest.approx(chief["history"]["loss"], rel=1e-5)
    assert chief["val_rmse"] < quality_bar(planted)
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # worker 1 wrote nothing
    assert load_model(out / schema.MODEL_FILE).predict_on_batch(
        {"user": np.array([0, 1], np.int32), "item": np.array([1, 2], np.int32)}
    ).shape == (2,)
