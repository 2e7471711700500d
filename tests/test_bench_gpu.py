"""bench/gpu.py: one line and exit 0 without a GPU; its measuring core, run on one CPU and
on two logical CPUs cut from it (the GPU rows' code path, without a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench._report import BENCHMARKS
from bench.gpu import compare, table
from cflib.config import TrainConfig
from cflib.data.manifest import load_manifest
from tests._planted import baseline_rmse, write_planted

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_gpu_one_line_and_exit_0() -> None:
    before = BENCHMARKS.read_bytes()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    proc = subprocess.run(
        [sys.executable, "bench/gpu.py"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == [
        "bench/gpu.py: no GPU visible to TensorFlow on this machine; nothing measured"
    ]
    assert proc.stderr == ""  # TensorFlow's native start-up lines stay in the probe
    assert BENCHMARKS.read_bytes() == before  # nothing measured, nothing written


@pytest.mark.slow
def test_one_and_two_logical_cpus(tmp_path: Path) -> None:
    data = write_planted(tmp_path / "planted")
    before = BENCHMARKS.read_bytes()
    cfg = TrainConfig(
        embedding_dim=4, learning_rate=0.1, l2=0.0, l2_bias=0.0, batch_size=2000, epochs=2,
        patience=2, refit=False, checkpoint_steps=0,
    )  # fmt: skip
    one, two = compare("CPU", data, cfg, timeout=280)
    train_rows = load_manifest(data).splits["train"].rows
    assert (one["placement"], one["replicas"]) == ("one CPU device", 1)
    assert one["rows"] == 2 * train_rows  # 2 epochs, the short last batch included
    assert (two["placement"], two["replicas"]) == ("MirroredStrategy over 2 CPU devices", 2)
    assert two["rows"] == 2 * (train_rows // 2000 * 2000)  # replicas drop the short batch
    for result in (one, two):
        assert result["batch"] == 2000 and result["epochs"] == 2
        assert result["rate"] > 0 and result["seconds"] > 0
        assert result["val_rmse"] < baseline_rmse(data)  # it learned beyond the mean
    lines = table([one, two]).splitlines()
    assert len(lines) == 4  # header, rule, a row per measure
    assert lines[2].startswith("| 1 CPU | one CPU device | 2,000 (2,000) |")
    assert lines[3].startswith(
        "| 2 logical CPUs cut from one | MirroredStrategy over 2 CPU devices | 2,000 (1,000) |"
    )
    assert BENCHMARKS.read_bytes() == before  # compare() measures; only a GPU run writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planted"]  # run dirs removed
