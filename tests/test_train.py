"""Training on a small planted dataset: learning, the run directory, errors, two replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

tf = pytest.importorskip("tensorflow")

from cflib import schema  # noqa: E402
from cflib.config import TrainConfig  # noqa: E402
from cflib.data.manifest import Manifest, SourceInfo, SplitInfo, schema_fields, write_manifest  # noqa: E402
from cflib.errors import ConfigError, DatasetError  # noqa: E402
from cflib.models.catalog import resolve  # noqa: E402
from cflib.models.io import load_model  # noqa: E402
from cflib.train.distribute import configure_devices  # noqa: E402
from cflib.train.loop import train  # noqa: E402

N_USERS, N_ITEMS, N_RATINGS, RANK = 300, 200, 30_000, 4
# Fast settings that still learn the planted biases and factors.
CFG = TrainConfig(
    embedding_dim=8, learning_rate=0.1, batch_size=2000, epochs=4, patience=1, l2=0.0, l2_bias=0.0
)


def write_planted(root: Path, *, seed: int = 0) -> Path:
    """``rating = 3.5 + b_u + b_i + p_u.q_i + noise`` in the ingest layout, with a manifest."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, N_USERS, N_RATINGS).astype(np.int32)
    item = rng.integers(0, N_ITEMS, N_RATINGS).astype(np.int32)
    b_u, b_i = rng.normal(0, 0.5, N_USERS), rng.normal(0, 0.5, N_ITEMS)
    p, q = rng.normal(0, 0.5, (N_USERS, RANK)), rng.normal(0, 0.5, (N_ITEMS, RANK))
    noise = rng.normal(0, 0.3, N_RATINGS)
    rating = (3.5 + b_u[user] + b_i[item] + (p[user] * q[item]).sum(1) + noise).astype(np.float32)
    which = rng.choice(3, N_RATINGS, p=[0.8, 0.1, 0.1])
    splits = {}
    for code, split in enumerate(schema.SPLITS):
        rows = np.flatnonzero(which == code)
        files = []
        for k, part in enumerate(np.array_split(rows, 2 if split == "train" else 1)):
            rel = f"{schema.split_dir(split)}/part-{k:05d}.parquet"
            table = pa.table(
                {
                    "user": user[part],
                    "item": item[part],
                    "rating": rating[part],
                    "date": pa.array(np.zeros(len(part), "datetime64[D]"), pa.date32()),
                    "raw_user": user[part].astype(np.int64) + 1000,
                    "raw_item": item[part].astype(np.int64) + 1,
                },
                schema=schema.RATINGS,
            )
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / rel)
            files.append(rel)
        total = float(rating[rows].astype(np.float64).sum())
        splits[split] = SplitInfo(rows=len(rows), rating_sum=total, files=files)
    manifest = Manifest(
        name="planted",
        created_at="2026-11-23T21:22:33Z",
        source=SourceInfo(path="memory", format="netflix", fingerprint="src", files=0, bytes=0),
        ingest_config={},
        n_users=N_USERS,
        n_items=N_ITEMS,
        splits=splits,
        split="random",
        schema=schema_fields(schema.RATINGS),
        fingerprint="planted-0",
    )
    write_manifest(root, manifest)
    return root


def baseline_rmse(root: Path, split: str = "validation") -> float:
    """RMSE of predicting the training mean for every rating of ``split``."""
    manifest = json.loads((root / schema.MANIFEST_FILE).read_text())
    mean = manifest["splits"]["train"]["rating_sum"] / manifest["splits"]["train"]["rows"]
    table = pq.read_table(root / schema.split_dir(split))
    rating = table["rating"].to_numpy().astype(np.float64)
    return float(np.sqrt(np.mean((rating - mean) ** 2)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("data") / "planted")


@pytest.fixture(scope="module")
def trained(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "run"
    return out, train(planted, out, CFG, run_id="test-run")


def test_biased_mf_beats_the_global_mean(planted: Path, trained: tuple[Path, dict]) -> None:
    _, summary = trained
    baseline = baseline_rmse(planted)
    assert baseline > 0.8  # the planted structure is there to be learned
    assert summary["val_rmse"] < 0.7 * baseline
    history = summary["history"]
    assert history["val_rmse"][-1] < history["val_rmse"][0]
    # The reported loss is the mean squared error (the L2 term is negligible here).
    assert history["loss"][-1] == pytest.approx(history["rmse"][-1] ** 2, rel=1e-3)


def test_train_json(planted: Path, trained: tuple[Path, dict]) -> None:
    out, summary = trained
    names = sorted(p.name for p in out.iterdir())
    assert names == ["logs", schema.MODEL_FILE, schema.TRAIN_SUMMARY_FILE]
    assert json.loads((out / schema.TRAIN_SUMMARY_FILE).read_text()) == summary
    assert summary["run_id"] == "test-run"
    assert summary["model"] == "biased-mf"
    assert summary["config"] == resolve(CFG).model_dump()
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
    cfg = CFG.model_copy(update={"replicas": 2})
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
    # Loss and gradients are averaged over replicas, not summed (see cflib.models.losses).
    history = summary["history"]
    assert history["loss"][-1] == pytest.approx(history["rmse"][-1] ** 2, rel=1e-3)
    assert history["val_loss"][-1] == pytest.approx(history["val_rmse"][-1] ** 2, rel=1e-3)
    assert summary["val_rmse"] < 0.7 * baseline_rmse(planted)
    assert summary["loaded_shape"] == [2]
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
    cfg = CFG.model_copy(update={"model": "two-tower", "epochs": 3, "l2_bias": None})
    summary = train(data, tmp_path / "run", cfg)
    assert summary["val_rmse"] < 0.9 * baseline_rmse(planted)
    model = load_model(tmp_path / "run" / schema.MODEL_FILE)
    assert model.get_config()["n_genres"] == 3 and model.get_config()["n_years"] == 20


# The child trains with a pause after each batch, so that the test can kill it mid-run.
SLOW_TRAIN = """
import sys, time
from pathlib import Path
from cflib.train import checkpoint
from cflib.config import TrainConfig
from cflib.train.loop import train
original = checkpoint.Checkpointer.on_train_batch_end
def slow(self, batch, logs=None):
    original(self, batch, logs)
    time.sleep(float(sys.argv[4]))
checkpoint.Checkpointer.on_train_batch_end = slow
train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]))
"""


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(planted: Path, tmp_path: Path) -> None:
    import signal
    import time

    cfg = CFG.model_copy(update={"epochs": 3, "patience": 3, "checkpoint_steps": 5})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "run"
    args = [sys.executable, "-c", SLOW_TRAIN, str(planted), str(out), cfg.model_dump_json()]
    child = subprocess.Popen([*args, "0.3"], env=env, stderr=subprocess.PIPE, text=True)
    state_file = out / "checkpoints" / "state.json"
    deadline = time.monotonic() + 240
    state: dict = {}
    while time.monotonic() < deadline and child.poll() is None:
        if state_file.is_file():
            state = json.loads(state_file.read_text())
            if state["epoch"] == 1 and state["batch"] >= 5:  # mid-way through epoch 2
                break
        time.sleep(0.1)
    assert child.poll() is None, child.stderr.read() if child.stderr else ""
    # While it trains, a second training into the same directory is refused, naming it.
    with pytest.raises(
        ConfigError, match=rf"--out {out}: another cfpipe process .*pid {child.pid}"
    ):
        train(planted, out, cfg)
    os.kill(child.pid, signal.SIGKILL)  # its lock dies with it: the rerun below takes it
    child.wait()
    assert not (out / schema.TRAIN_SUMMARY_FILE).exists()
    state = json.loads(state_file.read_text())
    assert (out / "checkpoints" / state["weights"]).is_file()

    resumed = subprocess.run([*args, "0"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / schema.TRAIN_SUMMARY_FILE).read_text())
    assert summary["resumed"] == {"epoch": state["epoch"] + 1, "batch": state["batch"]}
    assert summary["epochs_run"] == 3 and len(summary["history"]["val_rmse"]) == 3
    assert not (out / "checkpoints").exists()
    # The same quality as a run that was never interrupted.
    whole = train(planted, tmp_path / "whole", cfg)
    assert summary["val_rmse"] == pytest.approx(whole["val_rmse"], rel=0.02)
    # A finished run is not trained again.
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train(planted, out, cfg)


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


@pytest.mark.slow
def test_two_workers_on_localhost(planted: Path, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"epochs": 3, "checkpoint_steps": 0})
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }  # fmt: skip
        args = [sys.executable, "-c", MULTI_WORKER, str(planted), str(out), cfg.model_dump_json()]
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    summaries = [
        json.loads(next(x for x in o.splitlines() if x.startswith("SUMMARY "))[8:])
        for o, _ in outputs
    ]
    chief = json.loads((out / schema.TRAIN_SUMMARY_FILE).read_text())
    assert chief["run_id"] == summaries[0]["run_id"]
    assert chief["strategy"] == "MultiWorkerMirroredStrategy"
    assert chief["workers"] == 2 and chief["replicas"] == 2
    # Both workers took the same steps on their shards and agree on the result.
    assert summaries[1]["history"]["loss"] == pytest.approx(chief["history"]["loss"], rel=1e-5)
    assert chief["val_rmse"] < 0.7 * baseline_rmse(planted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # worker 1 wrote nothing
    assert load_model(out / schema.MODEL_FILE).predict_on_batch(
        {"user": np.array([0, 1], np.int32), "item": np.array([1, 2], np.int32)}
    ).shape == (2,)


@pytest.mark.slow
def test_damaged_last_checkpoint_falls_back_to_the_one_before(
    planted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run stopped after step 12 (checkpoints at steps 5 and 10) whose last weights file
    is then truncated resumes from step 5, with a warning, and finishes as well."""
    from cflib.train import checkpoint

    cfg = CFG.model_copy(update={"epochs": 2, "patience": 2, "checkpoint_steps": 5})
    out = tmp_path / "run"
    original = checkpoint.Checkpointer.on_train_batch_end

    def crash_after_12(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        if self.state.steps == 12:
            raise KeyboardInterrupt  # as a crash: nothing after this step is written

    monkeypatch.setattr(checkpoint.Checkpointer, "on_train_batch_end", crash_after_12)
    with pytest.raises(KeyboardInterrupt):
        train(planted, out, cfg)
    monkeypatch.setattr(checkpoint.Checkpointer, "on_train_batch_end", original)
    ckpt = out / "checkpoints"
    last = json.loads((ckpt / "state.json").read_text())
    before = json.loads((ckpt / "state.prev.json").read_text())
    assert (last["steps"], before["steps"]) == (10, 5)
    weights = ckpt / last["weights"]
    weights.write_bytes(weights.read_bytes()[:200])  # truncated

    with caplog.at_level("WARNING", logger="cflib.train.checkpoint"):
        summary = train(planted, out, cfg)
    assert any(f"checkpoint {last['weights']} is unreadable" in r.message for r in caplog.records)
    assert summary["resumed"] == {"epoch": before["epoch"] + 1, "batch": before["batch"]}
    assert summary["epochs_run"] == 2
    whole = train(planted, tmp_path / "whole", cfg)
    assert summary["val_rmse"] == pytest.approx(whole["val_rmse"], rel=0.02)
