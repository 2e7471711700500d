"""Resuming an interrupted training: from the checkpoint's weights and optimizer state,
keeping the history written before the interruption; refusing other options or data;
falling back to an earlier checkpoint, or starting over when none is readable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cflib import schema
from cflib.errors import ConfigError
from cflib.train import checkpoint
from cflib.train.loop import train
from tests._planted import write_planted
from tests._training import Start, checkpoint_arrays, record_starts, same_arrays
from tests.train.test_train import CFG

pytestmark = pytest.mark.slow

# 2 epochs of 13 batches (24,095 training ratings, batch 2000); a checkpoint every 5 steps.
RESUME = CFG.model_copy(update={"epochs": 2, "patience": 2, "checkpoint_steps": 5})
BATCHES = 13  # the 12 full batches and a short last one
CRASH_STEP = 12  # in the first epoch, after the checkpoints at steps 5 and 10


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("data") / "planted")


@pytest.fixture(scope="module")
def whole(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Start]:
    """A run that was never interrupted, and how it started."""
    with record_starts() as starts:
        summary = train(planted, tmp_path_factory.mktemp("whole") / "run", RESUME)
    return summary, starts[0]


@pytest.fixture(scope="module")
def crashed(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that crashed after step 12: checkpoints of steps 5 and 10 in ``checkpoints/``."""
    out = tmp_path_factory.mktemp("crashed") / "run"
    original = checkpoint.Checkpointer.on_train_batch_end

    def crash(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        if self.state.steps == CRASH_STEP:
            raise KeyboardInterrupt  # as a crash: nothing after this step is written

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint.Checkpointer, "on_train_batch_end", crash)
        with pytest.raises(KeyboardInterrupt):
            train(planted, out, RESUME)
    return out


@pytest.fixture
def interrupted(crashed: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the crashed run for one test to resume or damage."""
    out = tmp_path / "run"
    shutil.copytree(crashed, out)
    yield out


def _states(ckpt: Path) -> tuple[dict, dict]:
    last = json.loads((ckpt / checkpoint.STATE_FILE).read_text())
    return last, json.loads((ckpt / checkpoint.PREV_STATE_FILE).read_text())


def test_whole_run_takes_every_batch_of_every_epoch(whole: tuple[dict, Start]) -> None:
    summary, start = whole
    assert summary["epochs_run"] == 2 and summary["resumed"] is None
    assert (start.steps, start.end_steps) == (0, 2 * BATCHES)


# The child holds still once its checkpoint of step STOP is complete, and says so.
HOLD_AT = """
import sys, threading
from pathlib import Path
from cflib.train import checkpoint
from cflib.config import TrainConfig
from cflib.train.loop import train
stop, signal_file = int(sys.argv[4]), Path(sys.argv[5])
save = checkpoint.Checkpointer.save
def save_then_hold(self):
    save(self)
    if self.state.steps == stop:
        signal_file.write_text("held")
        threading.Event().wait()  # until the test kills this process
checkpoint.Checkpointer.save = save_then_hold
train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]))
"""
STOP = 20  # in the second epoch, batch 7


def _wait_for(path: Path, child: subprocess.Popen[str], deadline_s: float = 300) -> None:
    """Poll until ``path`` exists (the child's signal), the child exits, or the deadline."""
    deadline = time.monotonic() + deadline_s
    while not path.exists():
        assert child.poll() is None, f"the child exited with {child.returncode}"
        assert time.monotonic() < deadline, f"no {path.name} after {deadline_s} s"
        time.sleep(0.2)


def test_killed_run_resumes_from_its_last_checkpoint(
    planted: Path, tmp_path: Path, whole: tuple[dict, Start]
) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    out, held = tmp_path / "run", tmp_path / "held"
    args = [sys.executable, "-c", HOLD_AT, str(planted), str(out), RESUME.model_dump_json()]
    child = subprocess.Popen([*args, str(STOP), str(held)], env=env, text=True)
    try:
        _wait_for(held, child)
        # While it trains, a second training into the same directory is refused, naming it.
        with pytest.raises(
            ConfigError, match=rf"--out {out}: another cfpipe process .*pid {child.pid}"
        ):
            train(planted, out, RESUME)
        os.kill(child.pid, signal.SIGKILL)  # its lock dies with it: the rerun below takes it
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert not (out / schema.TRAIN_SUMMARY_FILE).exists()
    ckpt = out / checkpoint.CHECKPOINT_DIR
    state, _ = _states(ckpt)
    assert (state["steps"], state["epoch"], state["batch"]) == (STOP, 1, STOP - BATCHES)
    saved_weights, saved_optimizer = checkpoint_arrays(ckpt / state["weights"])

    with record_starts() as starts:
        summary = train(planted, out, RESUME)
    (start,) = starts
    assert summary["resumed"] == {"epoch": 2, "batch": STOP - BATCHES}
    # Started from the checkpoint's weights and optimizer state, at its step...
    assert same_arrays(start.weights, saved_weights)
    assert len(start.optimizer) == len(saved_optimizer) > 0
    for now, saved in zip(start.optimizer, saved_optimizer, strict=True):
        np.testing.assert_array_equal(now, saved)
    assert (start.steps, start.epoch, start.batch) == (STOP, 1, STOP - BATCHES)
    # ... where a seeded restart from scratch starts elsewhere,
    assert not same_arrays(whole[1].weights, saved_weights)
    # skipped the batches of epoch 2 it had trained on, and kept epoch 1's history as it was.
    assert start.end_steps == whole[1].end_steps == 2 * BATCHES
    assert summary["epochs_run"] == 2
    for metric, values in state["history"].items():
        assert summary["history"][metric][:1] == values, metric
    assert not ckpt.exists()
    # The same quality as a run that was never interrupted.
    assert summary["val_rmse"] == pytest.approx(whole[0]["val_rmse"], rel=0.02)
    # A finished run is not trained again.
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train(planted, out, RESUME)


def test_damaged_last_checkpoint_falls_back_to_the_one_before(
    planted: Path, interrupted: Path, whole: tuple[dict, Start], caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoints of steps 10 and 5; the last weights file truncated: from step 5."""
    ckpt = interrupted / checkpoint.CHECKPOINT_DIR
    last, before = _states(ckpt)
    assert (last["steps"], before["steps"]) == (10, 5)
    saved_weights, _ = checkpoint_arrays(ckpt / before["weights"])
    weights = ckpt / last["weights"]
    weights.write_bytes(weights.read_bytes()[:200])  # truncated

    with caplog.at_level("WARNING", logger="cflib.train"), record_starts() as starts:
        summary = train(planted, interrupted, RESUME)
    assert any(f"checkpoint {last['weights']} is unreadable" in r.message for r in caplog.records)
    assert summary["resumed"] == {"epoch": 1, "batch": 5}
    (start,) = starts
    assert same_arrays(start.weights, saved_weights)
    assert (start.steps, start.batch, start.end_steps) == (5, 5, 2 * BATCHES)
    assert summary["epochs_run"] == 2
    assert summary["val_rmse"] == pytest.approx(whole[0]["val_rmse"], rel=0.02)


def test_no_readable_checkpoint_starts_over(
    planted: Path, interrupted: Path, whole: tuple[dict, Start], caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = interrupted / checkpoint.CHECKPOINT_DIR
    for state in _states(ckpt):
        (ckpt / state["weights"]).write_bytes(b"not an HDF5 file")

    with caplog.at_level("WARNING", logger="cflib.train"), record_starts() as starts:
        summary = train(planted, interrupted, RESUME)
    assert any("no readable checkpoint" in r.message for r in caplog.records)
    assert summary["resumed"] is None
    # From the seeded initial weights, like a fresh run, and through every batch again.
    (start,) = starts
    assert same_arrays(start.weights, whole[1].weights)
    assert (start.steps, start.epoch, start.batch, start.end_steps) == (0, 0, 0, 2 * BATCHES)
    assert summary["epochs_run"] == 2
    assert summary["val_rmse"] == pytest.approx(whole[0]["val_rmse"], rel=0.02)


def test_interrupted_run_refuses_other_options_or_data(
    planted: Path, interrupted: Path, tmp_path: Path
) -> None:
    before = sorted(p.name for p in (interrupted / checkpoint.CHECKPOINT_DIR).iterdir())
    other_data = tmp_path / "other"
    shutil.copytree(planted, other_data)
    manifest = json.loads((other_data / schema.MANIFEST_FILE).read_text())
    manifest["fingerprint"] = "planted-other"
    (other_data / schema.MANIFEST_FILE).write_text(json.dumps(manifest))
    refused = "holds an interrupted run with other options or data"
    for data, cfg in [
        (planted, RESUME.model_copy(update={"learning_rate": 0.05})),
        (planted, RESUME.model_copy(update={"epochs": 3})),
        (other_data, RESUME),
    ]:
        with pytest.raises(ConfigError, match=rf"--out {interrupted}: {refused}"):
            train(data, interrupted, cfg)
    # Nothing was resumed, written or removed.
    assert sorted(p.name for p in (interrupted / checkpoint.CHECKPOINT_DIR).iterdir()) == before
    assert not (interrupted / schema.TRAIN_SUMMARY_FILE).exists()


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """``cfpipe ARGS`` in a fresh process, on the session's Prefect server."""
    from prefect.settings import get_current_settings

    env = {
        **os.environ, "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_HOME": str(home), "CUDA_VISIBLE_DEVICES": "",
    }  # fmt: skip
    cmd = [sys.executable, "-m", "flows.app", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_cli_train_exits_1_on_a_full_disk(
    prefect_harness: None, planted: Path, interrupted: Path, tmp_path: Path
) -> None:
    """The resumed run's first checkpoint (step 15) writes state.json through a file that
    is /dev/full: a real ENOSPC in the training child, one line and exit status 1."""
    ckpt = interrupted / checkpoint.CHECKPOINT_DIR
    (ckpt / f".{checkpoint.STATE_FILE}.tmp").symlink_to("/dev/full")
    options: list[str] = []
    for name, value in RESUME.model_dump(exclude_defaults=True).items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):  # a switch: --refit / --no-refit
            options.append(f"--{'' if value else 'no-'}{flag}")
        else:
            options += [f"--{flag}", str(value)]
    proc = _cli("train", str(planted), "--out", str(interrupted), *options, home=tmp_path)
    said = [line for line in proc.stderr.splitlines() if line.startswith("cfpipe: ")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(said) == 1 and "No space left on device" in said[0], said
    # Still an interrupted run, resumable from the checkpoint before the failed one.
    assert not (interrupted / schema.TRAIN_SUMMARY_FILE).exists()
    state = checkpoint.read_state(ckpt)
    assert state is not None and state.steps == 10 and (ckpt / str(state.weights)).is_file()
