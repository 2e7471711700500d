"""What one flow run left in the Prefect API: its artifacts and logs and its subflow
runs', never another test's (the session's tests share one server); and the environment
of a test's `cfpipe` subprocess, which must not touch the user's ``~/.prefect``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

#: Rows per API request; the server's default page size, which it also caps at.
PAGE = 200
#: How long to wait for logs to reach the API: generous, the machine is shared.
LOG_DEADLINE_S = 300.0


def _paged(read: Callable[[int], list[Any]]) -> list[Any]:
    """Every row of a paged API read, ``read(offset)`` returning up to PAGE rows."""
    rows: list[Any] = []
    while True:
        page = read(len(rows))
        rows += page
        if len(page) < PAGE:
            return rows


def flow_run_tree(root: UUID) -> list[UUID]:
    """``root`` and every flow run below it (subflows, their subflows, ...)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    ids, frontier = [root], [root]
    with get_client(sync_client=True) as client:
        while frontier:
            below = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier))
            runs = _paged(
                lambda offset, f=below: client.read_flow_runs(
                    flow_run_filter=f, limit=PAGE, offset=offset
                )
            )
            frontier = [r.id for r in runs if r.id not in ids]
            ids += frontier
    return ids


def artifacts(root: UUID) -> list[Any]:
    """The artifacts of flow run ``root`` and its subflow runs (task runs' included)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    scope = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=flow_run_tree(root)))
    with get_client(sync_client=True) as client:
        return _paged(
            lambda offset: client.read_artifacts(artifact_filter=scope, limit=PAGE, offset=offset)
        )


def logs(root: UUID) -> list[str]:
    """Every log line of flow run ``root`` and its subflow runs, oldest first, all pages."""
    return [message for _, message in named_logs(root)]


def named_logs(root: UUID) -> list[tuple[str, str]]:
    """``logs(root)`` with the name each line is shown under in the UI (its logger's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    scope = LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_tree(root)))
    with get_client(sync_client=True) as client:
        rows = _paged(
            lambda offset: client.read_logs(
                scope, limit=PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC
            )
        )
    return [(row.name, row.message) for row in rows]


def wait_for_logs(root: UUID, done: Callable[[list[str]], bool]) -> list[str]:
    """Poll flow run ``root``'s logs until ``done(lines)``; raise after LOG_DEADLINE_S.

    Prefect ships log lines in batches from a background worker, and the server stores
    them a moment later: a condition with a long deadline, not a short sleep.
    """
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # this process's pending lines, if it ran the flow
    deadline = time.monotonic() + LOG_DEADLINE_S
    while True:
        lines = logs(root)
        if done(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {root}: the expected lines never came: {lines}")
        time.sleep(1)


def flow_run_by_parameter(flow_name: str, key: str, value: object) -> UUID:
    """The one flow run of ``flow_name`` whose parameter ``key`` is ``value`` (a test's
    `cfpipe` subprocess does not print its flow run's id)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    named = FlowFilter(name=FlowFilterName(any_=[flow_name]))
    with get_client(sync_client=True) as client:
        runs = _paged(
            lambda offset: client.read_flow_runs(flow_filter=named, limit=PAGE, offset=offset)
        )
    [run] = [r for r in runs if r.parameters.get(key) == value]
    return UUID(str(run.id))


def cli_env(tmp_path: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of a `cfpipe` subprocess: a PREFECT_HOME of its own under
    ``tmp_path`` (never the user's ``~/.prefect``) and the given API, or none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    home = tmp_path / "prefect-home"
    home.mkdir(exist_ok=True)
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if api_url is not None:
        env["PREFECT_API_URL"] = api_url
    return env


def harness_api_url() -> str:
    """The URL of the session's Prefect test server (``prefect_harness``)."""
    from prefect.settings import get_current_settings

    return str(get_current_settings().api.url)
