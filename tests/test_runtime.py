"""Tasks in a child process (``flows.runtime.run_in_child``): results, errors, a killed child."""

from __future__ import annotations

import os
import signal

import pytest
from prefect import flow, task

from cflib.errors import ConfigError
from flows.runtime import run_in_child


@task
def whose_pid(x: int) -> tuple[int, int]:
    return os.getpid(), x * 2


@task
def refuse() -> None:
    raise ConfigError("--out /x: another cfpipe process is writing it")


@task
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer would


@flow
def in_child(which: str) -> object:
    tasks = {"pid": (whose_pid, {"x": 21}), "refuse": (refuse, {}), "die": (die, {})}
    return run_in_child(*tasks[which])


def test_the_task_runs_in_another_process_and_returns(prefect_harness: None) -> None:
    pid, value = in_child("pid")
    assert pid != os.getpid() and value == 42


def test_the_child_error_reaches_the_flow_with_its_type(prefect_harness: None) -> None:
    with pytest.raises(ConfigError, match="--out /x: another cfpipe process"):
        in_child("refuse")


def test_a_killed_child_fails_the_flow_run_with_a_message(prefect_harness: None) -> None:
    state = in_child("die", return_state=True)
    assert state.is_failed()
    with pytest.raises(ChildProcessError, match="die: its process died without an answer"):
        state.result()
