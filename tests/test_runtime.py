"""Tasks in a child process (``flows.runtime.run_in_child``): results, errors, a killed child."""

from __future__ import annotations

import os
import signal
import time

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.runtime import task_run

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
    # As a training would be when the out-of-memory killer comes: recorded as Running.
    with get_client(sync_client=True) as client:
        for _ in range(300):
            try:
                if client.read_task_run(task_run.id).state_type == StateType.RUNNING:
                    break
            except ObjectNotFound:
                pass
            time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)


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
    # The dead child's task run is Crashed, not left Running.
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    assert [(r.name.split("-")[0], r.state_type) for r in runs] == [("die", StateType.CRASHED)]
    assert runs[0].state is not None and "died without an answer" in str(runs[0].state.message)
