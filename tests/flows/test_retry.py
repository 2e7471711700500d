"""Tasks retry I/O errors only: bad input fails at once."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.states import Completed, Failed

from cflib.config import PublishConfig
from cflib.errors import ConfigError, DataFormatError, DatasetError
from tasks import ingest as ingest_tasks
from tasks._retry import retry_on_io
from tasks.publish import publish_run


def test_retry_on_io_errors_only() -> None:
    assert retry_on_io(None, None, Failed(data=OSError(28, "No space left on device")))
    assert retry_on_io(None, None, Failed(data=TimeoutError("slow disk")))
    assert not retry_on_io(None, None, Failed(data=DataFormatError("f.txt", 3, "bad date")))
    assert not retry_on_io(None, None, Failed(data=DatasetError("missing manifest")))
    assert not retry_on_io(None, None, Completed(data=1))


# --- under a real Prefect server: how many times a task really runs ----------------------


PUBLISHED = {"artifact": "REG/a", "promotion": {"promoted": True, "reason": "first"}}


@flow
def _publish_once() -> dict[str, Any]:
    return publish_run("RUN", "REG", PublishConfig())


def _publish_failing(
    monkeypatch: pytest.MonkeyPatch, errors: list[Exception]
) -> tuple[Any, list[int], Any]:
    """Run the real ``publish-run`` task with ``registry.publish`` raising ``errors`` in
    turn (then succeeding): the flow's final state, the calls, and the task run."""
    import tasks.publish

    calls: list[int] = []

    def publish(*args: Any) -> dict[str, Any]:
        calls.append(len(calls))
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return PUBLISHED

    monkeypatch.setattr(tasks.publish.registry, "publish", publish)
    state = _publish_once(return_state=True)
    scope = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        [task_run] = client.read_task_runs(flow_run_filter=scope)
    return state, calls, task_run


def test_a_task_is_retried_on_an_io_error(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = OSError(errno.EIO, "Input/output error", "REG/a/model.keras")
    state, calls, task_run = _publish_failing(monkeypatch, [disk, disk])
    assert state.is_completed() and state.result() == PUBLISHED
    assert len(calls) == 3 and task_run.run_count == 3  # two retries


def test_io_retries_run_out(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "REG")
    state, calls, task_run = _publish_failing(monkeypatch, [full] * 3)
    assert state.is_failed() and len(calls) == 3 and task_run.run_count == 3
    with pytest.raises(OSError, match="No space left on device"):
        state.result()


@pytest.mark.parametrize(
    "error",
    [
        DataFormatError("f.txt", 3, "bad date"),
        ConfigError("--registry x: refused"),
        ValueError("a bug, not the disk"),
        KeyError("run_id"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_task_is_not_retried_on_other_errors(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    state, calls, task_run = _publish_failing(monkeypatch, [error])
    assert state.is_failed() and len(calls) == 1 and task_run.run_count == 1
    with pytest.raises(type(error)):
        state.result()


def test_every_io_task_carries_the_policy() -> None:
    io_tasks = [
        ingest_tasks.parse_shards,
        ingest_tasks.build_id_maps,
        ingest_tasks.split_shards,
        ingest_tasks.compact_buckets,
        ingest_tasks.locate_repeats,
        publish_run,
    ]
    for t in io_tasks:
        assert (t.retries, t.retry_condition_fn) == (2, retry_on_io), t.name
