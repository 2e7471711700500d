"""The divergence guard: a diverged epoch restarts from its start at half the learning
rate, with a warning, recorded in train.json and in the checkpoints (a killed run
resumes at the halved rate); after three restarts training fails with one line. And the
default batch on a 10-item dataset, where the old default diverged."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cflib import schema
from cflib.config import EvaluateConfig, SynthConfig, TrainConfig
from cflib.errors import CfpipeError, TrainingDiverged
from cflib.train import checkpoint, guard
from cflib.train.checkpoint import TrainState
from cflib.train.loop import train
from tests._artifacts import ingest_synth
from tests._planted import quality_bar, write_planted
from tests.train.test_train import CFG

pytestmark = pytest.mark.slow

# On the planted set (batch 2000, 13 batches an epoch) a learning rate of 1 diverges in
# the first epoch's third batch, and half of it trains well; 10 diverges at 5, 2.5 and
# 1.25 too.
SPIKY = CFG.model_copy(update={"learning_rate": 1.0, "epochs": 2, "patience": 2})
HALF = SPIKY.model_copy(update={"learning_rate": 0.5})
ABSURD = SPIKY.model_copy(update={"learning_rate": 10.0})


def test_what_counts_as_a_divergence() -> None:
    assert guard.reference_loss(TrainState()) is None
    state = TrainState(first_loss=1.2, history={"loss": [0.9, 0.5, 0.6]})
    assert guard.reference_loss(state) == 0.5
    assert guard.check_loss(math.nan, None) == "the loss is nan"
    assert guard.check_loss(math.inf, 0.5) == "the loss is inf"
    assert guard.check_loss(1.0, 0.5) is None  # twice the lowest: still in bounds
    assert "rose to 1.001, over 2 times the lowest so far (0.5)" in str(
        guard.check_loss(1.001, 0.5)
    )
    assert guard.check_loss(1e9, None) is None  # no reference yet


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_planted(tmp_path_factory.mktemp("data") / "planted")


@pytest.fixture(scope="module")
def half(planted: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The run at the halved learning rate from the start."""
    return train(planted, tmp_path_factory.mktemp("half") / "run", HALF)


def _lr_at_start() -> tuple[list[float], Any]:
    """Record the optimizer's learning rate as each ``fit`` begins (patching the
    Checkpointer's ``on_train_begin``); returns the list and the original method."""
    seen: list[float] = []
    original = checkpoint.Checkpointer.on_train_begin

    def on_train_begin(self: Any, logs: Any = None) -> None:
        original(self, logs)
        seen.append(float(self.model.optimizer.learning_rate))

    return seen, on_train_begin


def test_diverged_epoch_restarts_from_its_start_at_half_the_rate(
    planted: Path,
    tmp_path: Path,
    half: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen, on_train_begin = _lr_at_start()
    monkeypatch.setattr(checkpoint.Checkpointer, "on_train_begin", on_train_begin)
    with caplog.at_level("WARNING", logger="cflib.train"):
        summary = train(planted, tmp_path / "run", SPIKY)
    (divergence,) = summary["divergences"]
    assert (divergence["epoch"], divergence["batch"]) == (1, 3)
    assert divergence["learning_rate"] == 0.5 and divergence["loss"] > 2
    assert "over 2 times the lowest so far" in divergence["reason"]
    assert summary["lr_scale"] == 0.5
    assert seen == [1.0, 0.5, 0.5]  # epoch 1, epoch 1 again, epoch 2
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "train"]
    assert warning.startswith("training diverged at epoch 1, batch 3 (the loss rose to ")
    assert "restarting from epoch 1 with the learning rate halved to 0.5 (restart 1 of 3)" in (
        warning
    )
    # Back to the epoch's start, weights and optimizer state: from there on, the same
    # run as one at half the rate from the start.
    for metric, values in half["history"].items():
        assert summary["history"][metric] == pytest.approx(values, rel=1e-5), metric
    assert all(math.isfinite(x) for x in summary["history"]["loss"])
    assert summary["val_rmse"] < quality_bar(planted)
    written = json.loads((tmp_path / "run" / schema.TRAIN_SUMMARY_FILE).read_text())
    assert written["divergences"] == summary["divergences"] and written["lr_scale"] == 0.5


def test_always_diverging_fails_after_three_restarts(
    planted: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    with caplog.at_level("WARNING", logger="cflib.train"):
        with pytest.raises(TrainingDiverged) as raised:
            train(planted, out, ABSURD)
    message = str(raised.value)
    assert isinstance(raised.value, CfpipeError) and "\n" not in message
    assert message.startswith("training diverged at epoch 1, batch 3 (the loss rose to ")
    assert message.endswith(
        "after 3 restarts with the learning rate halved each time, to 1.25; "
        "lower --learning-rate (now 10) or --batch-size, into a new --out"
    )
    warnings = [r.getMessage() for r in caplog.records if r.name == "train"]
    assert [w.split("halved to ")[1] for w in warnings] == [
        "5 (restart 1 of 3)", "2.5 (restart 2 of 3)", "1.25 (restart 3 of 3)",
    ]  # fmt: skip
    # An interrupted run, its last checkpoint the last restart's (no diverged weights).
    assert not (out / schema.TRAIN_SUMMARY_FILE).exists()
    state = checkpoint.read_state(out / checkpoint.CHECKPOINT_DIR)
    assert state is not None and state.lr_scale == 1 / 8 and len(state.divergences) == 3
    assert (state.epoch, state.batch, state.steps) == (0, 0, 0)


def test_killed_after_a_restart_resumes_at_the_halved_rate(
    planted: Path, tmp_path: Path, half: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    original = checkpoint.Checkpointer.on_train_batch_end

    def crash(self: Any, batch: int, logs: Any = None) -> None:
        original(self, batch, logs)
        if self.state.divergences and self.state.steps == 5:
            raise KeyboardInterrupt  # as a kill: nothing after this step is written

    with monkeypatch.context() as patched:
        patched.setattr(checkpoint.Checkpointer, "on_train_batch_end", crash)
        with pytest.raises(KeyboardInterrupt):
            train(planted, out, SPIKY)
    # The checkpoint written at the restart holds the halved rate and the divergence.
    state = checkpoint.read_state(out / checkpoint.CHECKPOINT_DIR)
    assert state is not None and state.lr_scale == 0.5 and len(state.divergences) == 1
    assert state.weights == "ckpt-000000000-r1.weights.h5"

    seen, on_train_begin = _lr_at_start()
    monkeypatch.setattr(checkpoint.Checkpointer, "on_train_begin", on_train_begin)
    summary = train(planted, out, SPIKY)
    assert summary["resumed"] == {"epoch": 1, "batch": 0}
    assert seen == [0.5, 0.5]
    assert summary["lr_scale"] == 0.5 and len(summary["divergences"]) == 1
    for metric, values in half["history"].items():
        assert summary["history"][metric] == pytest.approx(values, rel=1e-5), metric


def test_ten_items_train_without_diverging(tmp_path: Path) -> None:
    """A stand-in for the real Netflix sample of 10 movie files (about 20K ratings, most
    customers with one of them) on which the old default batch of 16,384 diverged: each
    step looked the most rated movie up ~6,000 times (loss 1.06, 1.09, 1.88; test RMSE
    1.0234 against the bias baseline's 1.0062). The default batch is now 64 x 10."""
    from cflib.evaluate.scoring import evaluate

    data = ingest_synth(tmp_path, SynthConfig(movies=10, users=15_000, ratings=20_000), "ten")
    out = tmp_path / "run"
    summary = train(data, out, TrainConfig())
    assert summary["config"]["batch_size"] == 640
    assert summary["divergences"] == []
    loss = summary["history"]["loss"]
    assert all(b < a for a, b in zip(loss, loss[1:], strict=False)), loss
    metrics = evaluate(out, EvaluateConfig())
    bias = metrics["baselines"]["user_item_bias"]["rmse"]
    # Level with the damped biases (1.0074 against 1.0062; 1.0067 without the refit):
    # with 1.3 ratings a customer there is little else to learn (README, Design).
    assert metrics["rmse"] < bias + 0.002
