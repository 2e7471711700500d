"""A Cancel in the Prefect UI, for real (README "Stopping and killing a run"): a `prefect
server` on 127.0.0.1, a training run of a deployment served by `cfpipe deploy serve` or
picked up by a `process` work pool's `prefect worker start`, cancelled through the API as
the UI's Cancel button does it once the training has written its first checkpoint.

Within 30 s nothing the run started is left running and its run directory's lock is
free; the flow run ends Cancelled, never Crashed on the way (within 30 s when served; a
worker takes longer to record it); the served run's rerun resumes from the checkpoint of
the stop and finishes. Every process a test starts carries a marker in its environment
(``tests/_processes.py``); the server and the serving or worker process are stopped by
the test, by pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from cflib.config import SynthConfig
from tests import _prefect_api as api
from tests import _processes as processes
from tests import _servers as servers
from tests._artifacts import ingest_synth

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Enough batches that training is still on when the first checkpoint appears.
DATA = SynthConfig(movies=100, users=1_500, ratings=60_000, probe_fraction=0.02, seed=7)
TRAIN = {"epochs": 2, "patience": 2, "batch_size": 64, "checkpoint_steps": 20}
#: The promised limit (README): a Cancel stops everything within 30 s.
STOP_S = 30.0
#: A `prefect worker` records Cancelled only after the process group is gone and a Python
#: process of its own has loaded the flow to look for `on_cancellation` hooks (6-16 s
#: more, measured): Prefect's bookkeeping, given a deadline of its own.
WORKER_RECORDS_S = 60.0
#: Deadlines for what depends on the machine's load, not on a promise.
START_S, RUN_S = 600.0, 600.0


@pytest.fixture(autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    """Whatever a test asserts or fails on, no process it marked outlives it."""
    yield
    processes.kill_marked()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small planted dataset, generated and ingested in-process (no Prefect)."""
    return ingest_synth(tmp_path_factory.mktemp("cancel"), DATA, "cancel")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server` on 127.0.0.1; its API URL."""

    def argv(host: str, port: int) -> list[str]:
        return [sys.executable, "-m", "prefect", "server", "start", f"--host={host}",
                f"--port={port}"]  # fmt: skip

    started = servers.start(argv, tmp_path_factory.mktemp("cancel-home"), dict(os.environ))
    try:
        yield started.api_url
    finally:
        servers.stop(started.proc)


def _env(tmp_path: Path, api_url: str, marker: str) -> dict[str, str]:
    """A serving or worker process's environment: the server, quick polls, the marker."""
    env = api.cli_env(tmp_path, api_url)
    env |= {
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PYTHONPATH": str(ROOT),
        processes.MARKER: marker,
    }
    return env


def _client(api_url: str) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def _wait(what: str, check: Any, timeout: float = START_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _parameters(data: Path, out: Path) -> dict[str, Any]:
    return {"data": str(data), "out": str(out), "config": TRAIN, "run_id": "cancelled"}


def _start_run(api_url: str, deployment: str, proc: subprocess.Popen[bytes]) -> UUID:
    """A flow run of ``deployment`` (`FLOW/NAME`), as the UI's Run button creates it."""

    def registered() -> UUID | None:
        assert proc.poll() is None, f"the serving or worker process ended ({proc.returncode})"
        with _client(api_url) as client:
            try:
                return UUID(str(client.read_deployment_by_name(deployment).id))
            except Exception:  # not registered yet
                return None

    deployment_id = _wait(f"deployment {deployment}", registered)
    with _client(api_url) as client:
        return UUID(str(client.create_flow_run_from_deployment(deployment_id).id))


def _cancel_when_checkpointed(
    api_url: str, run_id: UUID, out: Path, marker: str, spare: int, recorded: float = STOP_S
) -> tuple[float, float]:
    """Once training has written its first checkpoint, cancel flow run ``run_id`` as the
    UI's Cancel does (state Cancelling, forced), then check how it ended: no marked
    process but ``spare`` (the serving or worker process) left within STOP_S, the flow
    run Cancelled within ``recorded``. Returns the seconds until each."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.states import Cancelling

    state_file = out / "checkpoints" / "state.json"
    cancelled = gone = None
    with _client(api_url) as client:

        def checkpointed() -> bool:
            state = client.read_flow_run(run_id).state
            assert state is None or not state.is_final(), f"ended before a checkpoint: {state}"
            return state_file.is_file()

        _wait("the first checkpoint", checkpointed)
        sent = time.monotonic()
        client.set_flow_run_state(run_id, Cancelling(), force=True)
        while (cancelled is None or gone is None) and time.monotonic() - sent < recorded:
            state = client.read_flow_run(run_id).state
            if cancelled is None and state is not None and state.is_cancelled():
                cancelled = time.monotonic() - sent
            if gone is None and not set(processes.marked(marker)) - {spare}:
                gone = time.monotonic() - sent
            time.sleep(0.1)
        history = [s.type.value for s in client.read_flow_run_states(run_id)]
        own = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        [task_run] = client.read_task_runs(flow_run_filter=own)
    processes.gone_within(marker, STOP_S, sent, spare={spare})  # names and kills any left
    assert gone is not None and gone < STOP_S, gone
    assert cancelled is not None, f"not Cancelled {recorded:.0f} s after the Cancel: {history}"
    assert history[-2:] == ["CANCELLING", "CANCELLED"] and "CRASHED" not in history, history
    assert task_run.state is not None and task_run.state.is_cancelled(), task_run.state
    assert "training stopped at a checkpoint" in str(task_run.state.message)
    assert processes.lock_is_free(out)
    state = json.loads(state_file.read_text())
    assert state["steps"] > 20 or state["epoch"] > 0  # a checkpoint of the stop itself
    return cancelled, gone


def test_a_cancel_stops_a_served_run_with_a_checkpoint_and_the_rerun_resumes(
    server: str, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    entrypoint = f"{ROOT}/flows/train.py:train_flow"
    spec = {"deployments": [{"name": "cancel-me", "entrypoint": entrypoint,
                             "parameters": _parameters(data, out)}]}  # fmt: skip
    prefect_file = tmp_path / "deploy" / "prefect.yaml"
    prefect_file.parent.mkdir()
    prefect_file.write_text(yaml.safe_dump(spec))
    marker = processes.new_marker()
    argv = [sys.executable, "-m", "flows.app", "deploy", "serve", "--prefect-file"]
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen([*argv, str(prefect_file)], env=_env(tmp_path, server, marker),
                                 stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                 start_new_session=True)  # fmt: skip
    try:
        run_id = _start_run(server, "train/cancel-me", serve)
        cancelled, gone = _cancel_when_checkpointed(server, run_id, out, marker, serve.pid)
        print(f"served: Cancelled after {cancelled:.1f} s, every process gone after {gone:.1f} s")

        rerun = _start_run(server, "train/cancel-me", serve)
        with _client(server) as client:

            def ended() -> Any:
                state = client.read_flow_run(rerun).state
                return state if state is not None and state.is_final() else None

            final = _wait("the rerun to end", ended, timeout=RUN_S)
        assert final.is_completed(), (final, (tmp_path / "serve.log").read_text()[-3000:])
        summary = json.loads((out / "train.json").read_text())
        assert summary["resumed"] is not None and summary["epochs_run"] == 2, summary
        processes.gone_within(marker, STOP_S, time.monotonic(), spare={serve.pid})
    finally:
        servers.stop(serve)


def test_a_cancel_stops_a_process_work_pool_run_with_a_checkpoint(
    server: str, data: Path, tmp_path: Path
) -> None:
    """As deploy/prefect.yaml deploys to a `process` pool: the flow's code is found by a
    pull step that sets the working directory. The worker signals the run's whole
    process group, the TensorFlow child included."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    out, pool = tmp_path / "run", "cancel-pool"
    with _client(server) as client:
        template = ProcessWorker.get_default_base_job_template()
        client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                               base_job_template=template))  # fmt: skip
        client.create_deployment(
            flow_id=client.create_flow_from_name("train"),
            name="cancel-me-too",
            work_pool_name=pool,
            entrypoint="flows/train.py:train_flow",
            parameters=_parameters(data, out),
            pull_steps=[
                {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
            ],
        )
    marker = processes.new_marker()
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=_env(tmp_path, server, marker), stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        run_id = _start_run(server, "train/cancel-me-too", worker)
        cancelled, gone = _cancel_when_checkpointed(
            server, run_id, out, marker, worker.pid, recorded=WORKER_RECORDS_S
        )
        print(f"worker: Cancelled after {cancelled:.1f} s, every process gone after {gone:.1f} s")
    finally:
        servers.stop(worker)
