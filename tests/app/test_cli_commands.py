"""Commands run as a user runs them (`python -m flows.app` subprocesses, a PREFECT_HOME of
their own): `synth`, `evaluate`'s printed table, `server` and its warning, and the exit
status of a command whose child process is killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest

from cflib.config import SynthConfig
from tests import _prefect_api as api
from tests import _servers as servers
from tests._artifacts import ingest_synth

CLI = [sys.executable, "-m", "flows.app"]
SMALL = SynthConfig(movies=30, users=200, ratings=6_000, probe_fraction=0.05, seed=5)


def _cfpipe(
    argv: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small planted dataset, generated and ingested in-process (no Prefect)."""
    return ingest_synth(tmp_path_factory.mktemp("small"), SMALL, "small")


# --- synth ---------------------------------------------------------------------------------


def test_synth_writes_the_documented_files_and_prints_what_it_wrote(tmp_path: Path) -> None:
    env = api.cli_env(tmp_path)
    opts = ["--movies", "12", "--users", "100", "--ratings", "600", "--rank", "3"]
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / name
        done = _cfpipe(["synth", "netflix", str(out), *opts, "--seed", seed], env)
        assert done.returncode == 0, done.stderr
        runs[name] = (out, done.stdout)

    out, stdout = runs["a"]
    truth = json.loads((out / "truth.json").read_text())
    assert stdout.splitlines() == [
        f"wrote {out}",
        f"  ratings            {truth['n_ratings']:,}",
        f"  probe              {truth['n_probe']:,}",
        f"  qualifying         {truth['n_qualifying']:,}",
        f"  oracle probe RMSE  {truth['oracle_rmse_probe']:.4f}",
    ]
    movies = sorted(p.name for p in (out / "training_set").iterdir())
    assert movies == [f"mv_{m:07d}.txt" for m in range(1, 13)]
    assert sorted(p.name for p in out.iterdir()) == [
        "movie_titles.txt",
        "probe.txt",
        "qualifying.txt",
        "training_set",
        "truth.json",
    ]
    # Every movie file: its header, then CustomerID,Rating,Date lines; 600 ratings in all.
    ratings = 0
    for movie in (out / "training_set").iterdir():
        header, *lines = movie.read_text().splitlines()
        assert header == f"{int(movie.stem[3:])}:"
        for line in lines:
            user, stars, date = line.split(",")
            assert 1 <= int(user) <= 2_649_429 and stars in "12345" and len(date) == 10
        ratings += len(lines)
    assert ratings == truth["n_ratings"] == 600
    # The same options give byte-identical files; another seed does not.
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    same = runs["b"][0]
    assert all((out / f).read_bytes() == (same / f).read_bytes() for f in files)
    other = runs["c"][0]
    assert any((out / f).read_bytes() != (other / f).read_bytes() for f in files)


# --- evaluate ------------------------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_prints_the_metrics_it_wrote(
    prefect_harness: None, small_data: Path, tmp_path: Path
) -> None:
    from cflib.config import TrainConfig
    from cflib.train.loop import train

    run = tmp_path / "run"
    train(small_data, run, TrainConfig(epochs=2, batch_size=1024), run_id="eval-cli")
    done = _cfpipe(["evaluate", str(run)], api.cli_env(tmp_path, api.harness_api_url()))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    lines = done.stdout.splitlines()

    def row(label: str, *values: float) -> str:
        cells = r"\s+".join(re.escape(f"{v:.4f}") for v in values)
        [line] = [ln for ln in lines if re.fullmatch(rf"{re.escape(label)}\s+{cells}", ln)]
        return line

    model = row("biased-mf (this run)", metrics["rmse"], metrics["mae"])
    labels = {
        "global_mean": "global mean",
        "random": "random (uniform stars)",
        "weighted_sampling": "weighted sampling",
        "majority_class": "majority class",
        "user_item_bias": "user + item bias",
    }
    by_rmse = sorted(metrics["baselines"].items(), key=lambda kv: kv[1]["rmse"])
    baselines = [row(labels[k], v["rmse"], v["mae"]) for k, v in by_rmse]
    # The header, the model, then the baselines best first.
    assert lines.index(model) == 1 and lines[0].split() == ["model", "RMSE", "MAE"]
    assert [lines.index(b) for b in baselines] == list(range(2, 2 + len(baselines)))
    row("oracle (planted model, noise floor)", metrics["oracle_rmse"])
    lo, hi = metrics["rmse_ci95"]
    assert f"95% bootstrap interval of the model's RMSE: {lo:.4f} .. {hi:.4f}" in lines
    assert f"report: {run / 'report.md'} and {run / 'report.html'}" in lines
    assert (run / "report.md").is_file() and (run / "report.html").is_file()
    # The printed global mean is the test split's RMSE against the training mean.
    train_r = pq.read_table(small_data / "ratings" / "split=train")["rating"].to_numpy()
    test_r = pq.read_table(small_data / "ratings" / "split=test")["rating"].to_numpy()
    global_mean = float(np.sqrt(np.mean((test_r.astype(float) - train_r.mean()) ** 2)))
    row("global mean", global_mean, metrics["baselines"]["global_mean"]["mae"])


# --- a killed child ------------------------------------------------------------------------


def _spawned_children(pid: int) -> list[psutil.Process]:
    """The pool's worker processes below ``pid`` (not multiprocessing's resource tracker)."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in below:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_a_killed_training_child_exits_1_with_one_line(
    prefect_harness: None, small_data: Path, tmp_path: Path
) -> None:
    """README: a child killed outright fails the command with one line, exit status 1,
    and its task run is marked Crashed. The kill is a real SIGKILL, sent once the child
    has written its first checkpoint (a training that cannot end on its own first)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run, run_id = tmp_path / "run", f"killed-{os.getpid()}"
    argv = ["train", str(small_data), "--out", str(run), "--run-id", run_id]
    argv += ["--epochs", "10000", "--patience", "10000", "--batch-size", "256"]
    env = api.cli_env(tmp_path, api.harness_api_url())
    proc = subprocess.Popen(
        [*CLI, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 600
        while not (run / "checkpoints" / "state.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        [child] = _spawned_children(proc.pid)
        child.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("cfpipe: error: train-model: its process died without an answer"), last
    assert not child.is_running()

    flow_run = api.flow_run_by_parameter("train", "run_id", run_id)
    with get_client(sync_client=True) as client:
        [task_run] = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run]))
        )
        parent = client.read_flow_run(flow_run)
    assert task_run.state is not None and task_run.state.type.value == "CRASHED"
    assert "died without an answer" in str(task_run.state.message)
    assert parent.state is not None and parent.state.is_failed()


# --- server --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("127.0.0.2", True)])
def test_server_starts_prints_its_url_and_warns_off_loopback(
    tmp_path: Path, host: str, warned: bool
) -> None:
    """`cfpipe server` becomes the Prefect server (same pid), healthy at the URL it
    prints; bound to anything but 127.0.0.1/localhost/::1 it warns first (127.0.0.2 is
    still loopback on Linux, so the test exposes nothing)."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}

    def argv(host: str, port: int) -> list[str]:
        return [*CLI, "server", "--host", host, "--port", str(port)]

    started = servers.start(argv, tmp_path / "prefect-home", env, host=host)
    try:
        assert psutil.Process(started.proc.pid).cmdline()[1:4] == ["-m", "prefect", "server"]
    finally:
        servers.stop(started.proc)
    assert started.proc.returncode is not None
    text = started.log.read_text().splitlines()
    url = started.url
    assert (
        text[0] == f"Prefect UI: {url}   for commands and workers: export PREFECT_API_URL={url}/api"
    )
    warning = f"warning: {host} exposes the API without authentication; set PREFECT_SERVER_"
    assert any(line.startswith(warning) for line in text) == warned, text[:5]


def test_no_subprocess_inherits_the_users_prefect_home(tmp_path: Path) -> None:
    code = "from prefect.settings import get_current_settings as s; print(s().home)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    home = Path(done.stdout.strip())
    assert home != Path("~/.prefect").expanduser()
    assert home.is_relative_to(tmp_path.parent), home  # the session's base directory
