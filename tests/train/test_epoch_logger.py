"""The epoch line: ratings/s without the warm-up (compilation) steps, which are logged
apart, and the loss named for what it includes."""

from __future__ import annotations

import logging

import pytest

from cflib.train import progress
from cflib.train.progress import EpochLogger


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _epoch(timer: EpochLogger, clock: _Clock, steps: list[float], validation: float) -> None:
    timer.on_epoch_begin(0)
    for batch, seconds in enumerate(steps):
        clock.now += seconds
        timer.on_train_batch_end(batch)
    timer.on_test_begin()
    clock.now += validation
    timer.on_epoch_end(0, {"loss": 0.8125, "rmse": 0.9, "val_rmse": 0.95, "val_loss": 0.97})


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    return clock


def test_compiling_steps_are_apart_from_the_ratings_per_second(
    clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    timer = EpochLogger(rows_per_batch=1000)
    # A first step of 5.1 s (compiling), 0.1 s steps, one of 2.1 s (a retrace for the
    # last batch's size), then 0.5 s of validation.
    with caplog.at_level(logging.INFO, logger="cflib.train"):
        _epoch(timer, clock, [5.1, *[0.1] * 7, 2.1, 0.1], validation=0.5)
    assert timer.warm_up_seconds == pytest.approx(7.0)
    assert timer.train_seconds == pytest.approx(1.0)  # 10 steps at 0.1 s
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (
        "epoch 1: loss 0.8125 (squared error + L2 penalty), RMSE 0.9000, validation RMSE "
        "0.9500, 1.5 s (+7.0 s warm-up), 10000 ratings/s"
    )


def test_an_epoch_of_even_steps_has_no_warm_up(
    clock: _Clock, caplog: pytest.LogCaptureFixture
) -> None:
    timer = EpochLogger(rows_per_batch=500)
    with caplog.at_level(logging.INFO, logger="cflib.train"):
        _epoch(timer, clock, [0.3, 0.25, 0.2, 0.25], validation=0.0)
    assert timer.warm_up_seconds == 0.0 and timer.train_seconds == pytest.approx(1.0)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.endswith(", 1.0 s, 2000 ratings/s") and "warm-up" not in line
