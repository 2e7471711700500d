"""A stop request (``cflib.train.stop``, what cfpipe's child makes of SIGTERM and SIGINT)
ends training at the next batch with a checkpoint of that batch; the same call resumes
from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cflib.train import checkpoint, stop
from cflib.train.loop import train
from tests._planted import write_planted
from tests.train.test_train_resume import RESUME

pytestmark = pytest.mark.slow

ASK_AT_STEP = 7  # between the checkpoints of steps 5 and 10


def test_nothing_listens_outside_training() -> None:
    assert stop.request("SIGTERM") is False
    assert stop.requested() is None


def test_a_stop_request_writes_a_checkpoint_and_the_rerun_resumes(tmp_path: Path) -> None:
    planted = write_planted(tmp_path / "planted")
    out = tmp_path / "run"
    original = checkpoint.Checkpointer.on_train_batch_end

    def ask(self: Any, batch: int, logs: Any = None) -> None:
        if self.state.steps + 1 == ASK_AT_STEP:  # as a signal handler would, mid-batch
            assert stop.request("SIGTERM")
        original(self, batch, logs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint.Checkpointer, "on_train_batch_end", ask)
        with pytest.raises(stop.TrainingInterrupted, match=r"\(SIGTERM\) after writing") as e:
            train(planted, out, RESUME)
    assert e.value.checkpoint == f"ckpt-{ASK_AT_STEP:09d}.weights.h5"
    state = json.loads((out / "checkpoints" / checkpoint.STATE_FILE).read_text())
    assert (state["steps"], state["epoch"], state["batch"]) == (ASK_AT_STEP, 0, ASK_AT_STEP)
    assert stop.requested() is None  # dropped once training ended

    summary = train(planted, out, RESUME)
    assert summary["resumed"] == {"epoch": 1, "batch": ASK_AT_STEP}
    assert summary["epochs_run"] == RESUME.epochs
