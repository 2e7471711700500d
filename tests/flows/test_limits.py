"""Per-stage time limits (``flows/limits.py``): Prefect's own timer ends a stage's flow
run TimedOut with the stage's one line; a limit a flow run was started without is
said, not ignored. A limit reached while a child process runs or while a Dask cluster
starts is in ``test_runtime.py``; through the CLI, in ``test_signals.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect import flow

from cflib.config import IngestConfig
from flows import limits
from flows.ingest import IngestParams, ingest_flow
from flows.limits import TimeLimitReached
from tests import _prefect_api as api
from tests._artifacts import ingest_tiny
from tests.conftest import write_netflix


@flow
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def test_prefects_timer_ends_the_flow_run_with_the_stage_line(prefect_harness: None) -> None:
    line = "nap: time limit of 1.5 s reached (--timeout); rerun it with a larger --timeout"
    with pytest.raises(TimeLimitReached) as caught:
        limits.call(nap, 1.5, 300)
    assert str(caught.value) == caught.value.message == line
    assert limits.call(nap, 60, 0) == limits.call(nap, None, 0) == "rested"


def test_a_limit_the_flow_run_was_started_without_is_logged(
    prefect_harness: None, tmp_path: Path
) -> None:
    """The ingest flow called directly (as a deployment of it would be), not through
    `run_ingest`: its config's timeout is not Prefect's limit of the run, and it says so.
    (The dataset is up to date: the flow returns before any Dask cluster starts.)"""
    source = write_netflix(tmp_path / "src")
    out = ingest_tiny(source, tmp_path / "data")
    config = IngestConfig(name="tiny", timeout=60)
    state = ingest_flow(IngestParams(source=str(source), out=str(out), config=config),
                        return_state=True)  # fmt: skip
    assert state.is_completed() and state.result()["up_to_date"]
    api.wait_for_logs(
        state.state_details.flow_run_id,
        lambda lines: any(m.startswith("config timeout 60 s is not enforced") for m in lines),
    )
