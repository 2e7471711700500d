"""Tasks in a child process (``flows.runtime.run_in_child``): results, errors, a killed child."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound
from prefect.runtime import task_run

from cflib.errors import ConfigError
from flows import limits
from flows.limits import TimeLimitReached
from flows.runtime import run_in_child, tensorflow_worker
from tests import _prefect_api as api

ROOT = Path(__file__).resolve().parents[2]


@task
def whose_pid(x: int) -> tuple[int, int]:
    return os.getpid(), x * 2


@task
def refuse() -> None:
    raise ConfigError("--out /x: another cfpipe process is writing it")


def _once_running(sig: int, pid: int) -> None:
    """Send ``sig`` to ``pid`` once this task run is recorded Running. No fixed window: on
    a loaded machine the state may take long to be recorded."""
    deadline = time.monotonic() + 300
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                if client.read_task_run(task_run.id).state_type == StateType.RUNNING:
                    os.kill(pid, sig)
                    return
            except ObjectNotFound:
                pass
            time.sleep(0.1)
    raise TimeoutError("the task run was never recorded as Running")


@task
def die() -> None:
    # As a training would be when the out-of-memory killer comes: recorded as Running.
    _once_running(signal.SIGKILL, os.getpid())
    time.sleep(600)


@task
def sleep_long(pid_file: str) -> None:
    """Start, then have the flow's time limit fire: the SIGALRM of Prefect's timer, sent
    now rather than at a time that a loaded machine may reach before the child starts."""
    Path(pid_file).write_text(str(os.getpid()))
    _once_running(signal.SIGALRM, os.getppid())
    time.sleep(60)
    Path(pid_file).with_suffix(".woke").touch()  # it was waited for, not stopped


@flow
def in_child(which: str, pid_file: str = "") -> object:
    tasks = {
        "pid": (whose_pid, {"x": 21}),
        "refuse": (refuse, {}),
        "die": (die, {}),
        "sleep": (sleep_long, {"pid_file": pid_file}),
    }
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


def test_the_time_limit_stops_the_child_and_ends_the_flow_run_timed_out(
    prefect_harness: None, tmp_path: Path
) -> None:
    """A flow's --timeout (Prefect's timeout_seconds) fires while the flow waits for its
    child: the child is stopped (not waited for: it would sleep 60 s), its task run is
    Crashed with the one line, the flow run ends TimedOut, and the caller gets the line."""
    pid_file = tmp_path / "child.pid"
    with pytest.raises(TimeLimitReached) as caught:
        limits.call(in_child, 500, "sleep", str(pid_file))
    line = "in-child: time limit of 500 s reached (--timeout); rerun it with a larger --timeout"
    assert caught.value.message == line
    assert not psutil.pid_exists(int(pid_file.read_text()))
    assert not pid_file.with_suffix(".woke").exists()
    flow_run_id = api.flow_run_by_parameter("in-child", "pid_file", str(pid_file))
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    assert flow_run.state is not None and flow_run.state.name == "TimedOut"
    crashed = [(r.name.split("-")[0], r.state_type) for r in runs]
    assert crashed == [("sleep_long", StateType.CRASHED)]
    assert runs[0].state is not None and runs[0].state.message == line


_NO_API_URL_SCRIPT = """
import os
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.filters import LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from flows import limits
from flows.limits import TimeLimitReached
from flows.runtime import run_in_child
from tests import _prefect_api as api

@task
def hello() -> tuple[int, str]:
    get_run_logger().info("hello from pid %d", os.getpid())
    create_markdown_artifact(f"written by pid {os.getpid()}", key="hello-child")
    with get_client(sync_client=True) as client:
        return os.getpid(), str(client.api_url)

@flow
def parent() -> tuple[int, str]:
    return run_in_child(hello, {})

if __name__ == "__main__":
    state = parent(return_state=True)
    child, child_api = state.result()
    APILogHandler().flush()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        print(f"apis={client.api_url} {child_api}")
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["hello-child"]))
        )
    print(f"pids={os.getpid()} {child}")
    print("logs=", [m.message for m in logs if m.message.startswith("hello")], sep="")
    print("runs=", [(r.name.split("-")[0], r.state_type.value) for r in runs], sep="")
    print("artifacts=", [(a.data, a.flow_run_id == run_id) for a in artifacts], sep="")
"""


def test_without_an_api_url_the_child_reports_to_the_parents_temporary_server(
    tmp_path: Path,
) -> None:
    """`cfpipe` run ad hoc has no PREFECT_API_URL: the flow process starts a temporary
    server, and the child must report there, not start one of its own. Logs and states
    come back through the pool's message queue either way; artifacts (training's
    progress) are written by the child's own API client, so they show which server the
    child used."""
    script = tmp_path / "no_api_url.py"
    script.write_text(_NO_API_URL_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    parent, child = out["pids"].split()
    assert parent != child
    parent_api, child_api = out["apis"].split()
    assert parent_api.startswith("http://127.0.0.1:") and child_api == parent_api
    assert out["logs"] == repr([f"hello from pid {child}"])
    assert out["runs"] == repr([("hello", "COMPLETED")])
    assert out["artifacts"] == repr([(f"written by pid {child}", True)])


@task
def whose_run() -> tuple[int, str]:
    from prefect.runtime import flow_run

    return os.getpid(), str(flow_run.id)


@flow
def stage(name: str) -> tuple[int, str, str]:
    from prefect.runtime import flow_run

    pid, seen = run_in_child(whose_run, {})
    return pid, seen, str(flow_run.id)


@flow
def two_stages_one_process() -> tuple[list[tuple[int, str, str]], list[int], bool]:
    with tensorflow_worker():
        started = [p.pid for p in multiprocessing.active_children()]
        results = [stage("a"), stage("b")]
        with tensorflow_worker():  # re-entrant: the same process
            results.append(stage("c"))
    left = any(p.pid in started for p in multiprocessing.active_children())
    return results, started, left


def test_one_worker_process_serves_every_stage_under_its_own_flow_run(
    prefect_harness: None,
) -> None:
    """`tensorflow_worker` (a pipeline run, a `cfpipe` command): one process, started
    before the first stage, runs each stage's task as a task run of that stage's flow
    run, not of the first one's (Prefect's pool would keep the first caller's context)."""
    results, started, left = two_stages_one_process()
    assert len(started) == 1 and started[0] != os.getpid()
    assert [pid for pid, _, _ in results] == started * 3
    assert all(seen == own for _, seen, own in results)
    assert len({own for _, _, own in results}) == 3
    assert not left  # the process has exited after the block


def _dask_workers() -> list[psutil.Process]:
    """This process's LocalCluster workers (spawned by their nannies)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_time_limit_while_the_dask_cluster_starts_leaves_no_worker(
    prefect_harness: None, tmp_path: Path
) -> None:
    """The limit fires (its SIGALRM, sent here once the workers are being spawned) while
    the ingest's LocalCluster starts: the flow ends at once, and the cluster is closed
    with it, not left half-started until this process exits."""
    from cflib.config import IngestConfig
    from flows.ingest import run_ingest
    from tests.conftest import write_netflix

    source = write_netflix(tmp_path / "src")

    def alarm_once_workers_spawn() -> None:
        deadline = time.monotonic() + 300
        while not _dask_workers() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGALRM)

    watcher = threading.Thread(target=alarm_once_workers_spawn, daemon=True)
    watcher.start()
    with pytest.raises(TimeLimitReached, match="ingest: time limit of 3600 s reached"):
        run_ingest(str(source), str(tmp_path / "data"), IngestConfig(timeout=3600))
    watcher.join()
    _, alive = psutil.wait_procs(_dask_workers(), timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # nothing staged is left
