"""The epoch line: ratings/s measured after the first step, compilation apart, and the
loss named for what it includes."""

from __future__ import annotations

import logging

import pytest

from cflib.train import checkpoint
from cflib.train.checkpoint import EpochLogger


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _epoch(
    timer: EpochLogger, clock: _Clock, first: float, step: float, batches: int, val: float
) -> None:
    timer.on_epoch_begin(0)
    clock.now += first
    timer.on_train_batch_end(0)
    for b in range(1, batches):
        clock.now += step
        timer.on_train_batch_end(b)
    timer.on_test_begin()
    clock.now += val
    logs = {"loss": 0.8125, "rmse": 0.9, "val_rmse": 0.95, "val_loss": 0.97}
    timer.on_epoch_end(0, logs)


def test_first_step_compilation_is_apart_from_the_ratings_per_second(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    monkeypatch.setattr(checkpoint.time, "perf_counter", clock)
    timer = EpochLogger(rows_per_batch=1000)
    with caplog.at_level(logging.INFO, logger="cflib.train"):
        # A first step of 5.1 s (compiling), then 9 steps of 0.1 s, then 0.5 s validating.
        _epoch(timer, clock, first=5.1, step=0.1, batches=10, val=0.5)
    assert timer.compile_seconds == pytest.approx(5.0)
    assert timer.train_seconds == pytest.approx(1.0)  # 10 steps at 0.1 s
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        "epoch 1: loss 0.8125 (squared error + L2 penalty), RMSE 0.9000, validation RMSE "
        "0.9500, 1.5 s (+5.0 s compiling), 10000 ratings/s"
    )


def test_an_epoch_without_compilation_says_nothing_of_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _Clock()
    monkeypatch.setattr(checkpoint.time, "perf_counter", clock)
    timer = EpochLogger(rows_per_batch=500)
    with caplog.at_level(logging.INFO, logger="cflib.train"):
        _epoch(timer, clock, first=0.25, step=0.25, batches=4, val=0.0)
    assert timer.compile_seconds == 0.0 and timer.train_seconds == pytest.approx(1.0)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith(", 1.0 s, 2000 ratings/s") and "compiling" not in line
