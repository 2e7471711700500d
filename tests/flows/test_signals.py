"""Real signals to a real `cfpipe train` (README "Stopping and killing a run"): SIGTERM to
the command, SIGTERM to its process group, SIGINT, SIGKILL of the command. Each run
carries a marker in its environment; afterwards no process with the marker is left,
the `--out` lock is free, and the rerun of the same command resumes and finishes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cflib.config import SynthConfig
from tests import _prefect_api as api
from tests import _processes as processes
from tests._artifacts import ingest_synth

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "flows.app"]
# Enough batches that training is still on when the first checkpoint appears.
DATA = SynthConfig(movies=100, users=1_500, ratings=60_000, probe_fraction=0.02, seed=7)
TRAIN = ["--epochs", "3", "--patience", "3", "--batch-size", "64", "--checkpoint-steps", "20"]
#: The promised limits (README): a stop within 30 s, orphans gone within 10 s.
STOP_S, ORPHAN_S = 30.0, 10.0
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
    return ingest_synth(tmp_path_factory.mktemp("signals"), DATA, "signals")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's PREFECT_HOME: its database is migrated once, by the first run."""
    return tmp_path_factory.mktemp("signals-home")


def _env(home: Path, marker: str) -> dict[str, str]:
    """The command's own temporary server (no PREFECT_API_URL), PREFECT_HOME, marker."""
    env = api.cli_env(home.parent, None)
    env |= {"PREFECT_HOME": str(home), processes.MARKER: marker}
    return env


def _flow_run_states(home: Path, run_id: str) -> list[str]:
    """State types of the `train` flow runs of ``run_id``, read from the database."""
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute("SELECT parameters, state_type FROM flow_run").fetchall()
    return [state for params, state in rows if json.loads(params).get("run_id") == run_id]


def _train(data: Path, out: Path, run_id: str, env: dict[str, str], **popen):  # type: ignore[no-untyped-def]
    argv = [*CLI, "train", str(data), "--out", str(out), "--run-id", run_id, *TRAIN]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)  # fmt: skip


def _wait_for_checkpoint(
    proc: subprocess.Popen[str], out: Path, where: str = "checkpoints/state.json"
) -> None:
    """Until a file matching ``where`` under ``out`` (a training's first checkpoint)."""
    deadline = time.monotonic() + START_S
    while not any(out.glob(where)):
        if proc.poll() is not None:
            pytest.fail(f"ended ({proc.returncode}) before a checkpoint: {proc.stderr.read()}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no checkpoint was ever written"
        time.sleep(0.05)


def _signal_and_wait(
    proc: subprocess.Popen[str], marker: str, sig: int
) -> tuple[str, float, float]:
    """``sig`` to the command; its stderr, seconds to its exit and until nothing marked
    is left (the README's 30 s)."""
    sent = time.monotonic()
    try:
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=STOP_S + 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return stderr, time.monotonic() - sent, processes.gone_within(marker, STOP_S, sent)


def _interrupt(
    data: Path, home: Path, tmp_path: Path, how: str
) -> tuple[Path, str, subprocess.Popen[str], float, str]:
    """Start `cfpipe train`, deliver ``how`` after its first checkpoint; return the run
    directory, its run id, the process, when the signal went and the marker."""
    marker, run_id = processes.new_marker(), f"sig-{how}-{os.getpid()}"
    out = tmp_path / "run"
    proc = _train(data, out, run_id, _env(home, marker), start_new_session=True)
    try:
        _wait_for_checkpoint(proc, out)
        sent = time.monotonic()
        if how == "group":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal({"term": signal.SIGTERM, "int": signal.SIGINT,
                              "kill": signal.SIGKILL}[how])  # fmt: skip
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in processes.marked(marker):
            processes.kill(pid)
        raise
    return out, run_id, proc, sent, marker


def _rerun_resumes(data: Path, out: Path, run_id: str, home: Path) -> dict[str, object]:
    marker = processes.new_marker()
    proc = _train(data, out, run_id, _env(home, marker))
    try:
        stdout, stderr = proc.communicate(timeout=RUN_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"run {run_id} in {out}" in stdout
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed"] is not None, summary["resumed"]
    assert summary["epochs_run"] == 3
    processes.gone_within(marker, ORPHAN_S, time.monotonic())
    return summary


@pytest.mark.parametrize(
    ("how", "code", "name"),
    [("term", 143, "SIGTERM"), ("group", 143, "SIGTERM"), ("int", 130, "SIGINT")],
)
def test_a_signal_stops_the_tree_with_a_checkpoint_and_the_rerun_resumes(
    data: Path, home: Path, tmp_path: Path, how: str, code: int, name: str
) -> None:
    out, run_id, proc, sent, marker = _interrupt(data, home, tmp_path, how)
    try:
        _, stderr = proc.communicate(timeout=STOP_S + 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stopped = time.monotonic() - sent
    assert proc.returncode == code, stderr[-3000:]
    line = f"cfpipe: interrupted ({name}) during train; rerun the same command to resume from "
    assert stderr.strip().splitlines()[-1] == line + "the last checkpoint", stderr[-3000:]
    assert stopped < STOP_S, f"{how}: stopped after {stopped:.1f} s"
    gone = processes.gone_within(marker, STOP_S, sent)
    assert processes.lock_is_free(out)
    assert "CRASHED" in _flow_run_states(home, run_id)
    assert "RUNNING" not in _flow_run_states(home, run_id)
    print(f"{how}: exit after {stopped:.1f} s, every process gone after {gone:.1f} s")
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    _rerun_resumes(data, out, run_id, home)
    assert state["steps"] > 20 or state["epoch"] > 0  # a checkpoint of the stop itself


def test_a_killed_command_leaves_nothing_running_and_the_rerun_resumes(
    data: Path, home: Path, tmp_path: Path
) -> None:
    out, run_id, proc, sent, marker = _interrupt(data, home, tmp_path, "kill")
    proc.wait(timeout=STOP_S)
    gone = processes.gone_within(marker, ORPHAN_S, sent)
    assert processes.lock_is_free(out)
    print(f"kill: every process gone after {gone:.1f} s")
    _rerun_resumes(data, out, run_id, home)


def test_dask_workers_die_with_the_process_of_their_cluster(tmp_path: Path) -> None:
    """A LocalCluster's nanny and worker processes exit by themselves when the process
    that holds the cluster is SIGKILLed (distributed's parent-alive pipe)."""
    marker = processes.new_marker()
    code = (
        "from distributed import LocalCluster\n"
        "c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,"
        " dashboard_address=None, host='127.0.0.1')\n"
        "print('up', flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    env = {**os.environ, processes.MARKER: marker}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        assert len(processes.marked(marker)) >= 3  # the cluster's process and its two workers
        sent = time.monotonic()
        proc.kill()
        proc.wait()
        processes.gone_within(marker, ORPHAN_S, sent)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_signal_stops_at_once(data: Path, home: Path, tmp_path: Path) -> None:
    """The second SIGTERM does not wait for a checkpoint: the command exits at once with
    the first one's line, and nothing is left running."""
    out, run_id, proc, sent, marker = _interrupt(data, home, tmp_path, "term")
    try:
        time.sleep(0.2)  # the first is being handled
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=STOP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    stopped = time.monotonic() - sent
    # 143, or killed by the SIGTERM itself (a shell shows 143 too): when the first one's
    # stop ends within the 0.2 s (a checkpoint of a small model), the second can arrive
    # after cfpipe has put back the default handlers on its way out; either way it exits
    # at once, after the first one's line.
    assert proc.returncode in (143, -signal.SIGTERM), stderr[-3000:]
    # multiprocessing's resource tracker may warn after it (of the semaphores the killed
    # pool leaves): the line is the command's last, not always the stream's.
    ours = [line for line in stderr.splitlines() if line.startswith("cfpipe: ")]
    assert ours and ours[-1].startswith("cfpipe: interrupted (SIGTERM) during train"), ours
    gone = processes.gone_within(marker, ORPHAN_S, sent)
    assert processes.lock_is_free(out)
    print(f"second signal: exit after {stopped:.1f} s, every process gone after {gone:.1f} s")


def test_sigterm_to_cfpipe_run_stops_its_one_tensorflow_process_and_the_rerun_resumes(
    data: Path, home: Path, tmp_path: Path
) -> None:
    """`cfpipe run`: one process serves training, evaluation and publishing, started with
    the command. SIGTERM during training stops it with a checkpoint; the rerun of the
    same command skips the ingest, resumes the training and finishes the pipeline."""
    source, work = data.parent / "src", tmp_path / "work"
    argv = [*CLI, "run", str(source), "--out", str(work), *TRAIN]
    marker = processes.new_marker()
    proc = subprocess.Popen(argv, env=_env(home, marker), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    _wait_for_checkpoint(proc, work, "runs/*/checkpoints/state.json")
    stderr, _, gone = _signal_and_wait(proc, marker, signal.SIGTERM)
    assert proc.returncode == 143, stderr[-3000:]
    line = "cfpipe: interrupted (SIGTERM) during train; rerun the same command to resume from "
    assert stderr.strip().splitlines()[-1] == line + "the last checkpoint", stderr[-3000:]
    (run,) = work.glob("runs/*")
    assert processes.lock_is_free(run)
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute("SELECT parameters, state_type FROM flow_run").fetchall()
    states = {state for params, state in rows if str(work) in params}
    assert "CRASHED" in states and "RUNNING" not in states, states
    print(f"run: every process gone after {gone:.1f} s")
    rerun = subprocess.run(argv, env=_env(home, processes.new_marker()), capture_output=True,
                           text=True, timeout=RUN_S)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((run / "train.json").read_text())["resumed"] is not None
    assert (run / "metrics.json").is_file() and "artifact: " in rerun.stdout
    assert list(work.glob("runs/*")) == [run]  # the same run, resumed


# --- time limits (README "Stopping and killing a run": --timeout) ---------------------------
# Prefect ends a flow at its `timeout_seconds` with a SIGALRM from its interval timer
# (flows/limits.py). Each test sends that SIGALRM itself, at a moment of its choosing
# (training under way, Dask workers at work), under a limit of an hour: how long start-up
# takes on a loaded machine decides nothing. Without the limit, cfpipe has no SIGALRM
# handler and the signal would kill it (status -14, no line).
LIMIT = ["--timeout", "3600"]


def _states(home: Path, flow: str) -> list[tuple[str, dict[str, object], str]]:
    """(state name, parameters, state message) of every `flow` run in the database."""
    query = (
        "SELECT r.state_name, r.parameters, s.message FROM flow_run r JOIN flow f "
        "ON r.flow_id = f.id LEFT JOIN flow_run_state s ON r.state_id = s.id WHERE f.name = ?"
    )
    with sqlite3.connect(home / "prefect.db") as db:
        rows = db.execute(query, (flow,)).fetchall()
    return [(name, json.loads(params), message) for name, params, message in rows]


def test_a_training_at_its_time_limit_stops_with_a_checkpoint_and_the_rerun_resumes(
    data: Path, home: Path, tmp_path: Path
) -> None:
    marker, run_id, out = processes.new_marker(), f"limit-{os.getpid()}", tmp_path / "run"
    argv = [*CLI, "train", str(data), "--out", str(out), "--run-id", run_id, *TRAIN, *LIMIT]
    proc = subprocess.Popen(argv, env=_env(home, marker), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    _wait_for_checkpoint(proc, out)
    stderr, stopped, gone = _signal_and_wait(proc, marker, signal.SIGALRM)
    assert proc.returncode == 124, stderr[-3000:]
    line = "train: time limit of 3600 s reached (--timeout); rerun the same command to resume "
    assert stderr.strip().splitlines()[-1] == f"cfpipe: error: {line}from the last checkpoint"
    assert processes.lock_is_free(out)
    [(state, _, message)] = [s for s in _states(home, "train") if s[1]["run_id"] == run_id]
    assert state == "TimedOut", (state, message)
    print(f"train time limit: exit after {stopped:.1f} s, every process gone after {gone:.1f} s")
    saved = json.loads((out / "checkpoints" / "state.json").read_text())
    assert saved["steps"] > 20 or saved["epoch"] > 0  # a checkpoint of the stop itself
    _rerun_resumes(data, out, run_id, home)  # without --timeout: not part of the run's identity


def test_an_ingest_at_its_time_limit_leaves_no_worker_and_the_dataset_as_it_was(
    data: Path, home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    shutil.copytree(data, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    marker = processes.new_marker()
    argv = [*CLI, "ingest", str(data.parent / "src"), "--out", str(out), "--force", *LIMIT]
    proc = subprocess.Popen(argv, env=_env(home, marker), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + START_S
    while not any(tmp_path.glob(".data.tmp-*/scratch/raw/shard-*.arrow")):  # Dask at work
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no shard was ever parsed"
        time.sleep(0.02)
    workers = [p for p in processes.marked(marker) if "spawn_main" in processes.cmdline(p)]
    assert len(workers) >= 2  # its Dask workers
    stderr, stopped, gone = _signal_and_wait(proc, marker, signal.SIGALRM)
    assert proc.returncode == 124, stderr[-3000:]
    line = "ingest: time limit of 3600 s reached (--timeout); rerun it with a larger --timeout"
    assert stderr.strip().splitlines()[-1] == f"cfpipe: error: {line}"
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging directory
    assert processes.lock_is_free(out)
    [(state, _, message)] = [
        s for s in _states(home, "ingest") if s[1]["params"]["out"] == str(out)
    ]
    assert state == "TimedOut", (state, message)
    print(f"ingest time limit: exit after {stopped:.1f} s, every process gone after {gone:.1f} s")
