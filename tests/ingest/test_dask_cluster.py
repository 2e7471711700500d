"""Ingest on an existing Dask cluster: real `dask scheduler` and `dask worker` processes
on 127.0.0.1, output identical to the in-process run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cflib import schema
from cflib.config import IngestConfig
from cflib.ingest.parallel import ingest_local

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))


def _wait_for(path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@contextlib.contextmanager
def _cluster(tmp_path: Path, workers: int, *extra: str) -> Iterator[tuple[str, list[Any]]]:
    """A `dask scheduler` and ``workers`` `dask worker` processes on 127.0.0.1."""
    # The workers get no PREFECT_API_URL: they run plain cflib functions, not Prefect tasks.
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning"}
    env.pop("PREFECT_API_URL", None)
    info = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    scheduler = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0"]
    procs = [subprocess.Popen([*scheduler, f"--scheduler-file={info}", *common], env=env)]
    try:
        _wait_for(info)
        worker = [DASK, "worker", f"--scheduler-file={info}", "--nthreads", "1"]
        for _ in range(workers):
            procs.append(
                subprocess.Popen([*worker, "--host", "127.0.0.1", *common, *extra], env=env)
            )
        address = json.loads(info.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=300) as client:
            client.wait_for_workers(workers, timeout=300)
        yield address, procs[1:]
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def cluster(prefect_harness: None, tmp_path: Path) -> Iterator[str]:
    with _cluster(tmp_path, 1) as (address, _):
        yield address


def test_ingest_on_existing_cluster_matches_local(
    cluster: str, netflix_dir: Path, tmp_path: Path
) -> None:
    from flows.ingest import run_ingest

    assert cluster.startswith("tcp://127.0.0.1:")
    remote, local = tmp_path / "remote", tmp_path / "local"
    cfg = IngestConfig(shard_mb=1e-6, bucket_rows=4)
    manifest = run_ingest(
        str(netflix_dir), str(remote), cfg.model_copy(update={"dask_address": cluster})
    )
    ingest_local(netflix_dir, local, cfg)
    assert sum(s["rows"] for s in manifest["splits"].values()) == 11
    parts = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert parts == sorted(p.relative_to(remote) for p in remote.rglob("*.parquet"))
    for rel in parts:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes(), rel
    # The same files, plus the Dask performance report; the same manifest but its time
    # and the scheduler's address.
    files = {p.relative_to(local) for p in local.rglob("*") if p.is_file()}
    report = Path(schema.PERFORMANCE_REPORT_FILE)
    assert {p.relative_to(remote) for p in remote.rglob("*") if p.is_file()} == files | {report}
    assert all(
        (local / f).read_bytes() == (remote / f).read_bytes()
        for f in files - {Path(schema.MANIFEST_FILE)}
    )
    mine, theirs = (json.loads((d / schema.MANIFEST_FILE).read_text()) for d in (remote, local))
    mine["ingest_config"]["dask_address"] = None
    assert {**mine, "created_at": None} == {**theirs, "created_at": None}
    # The report covers the ingest's tasks, and opens without a network (Bokeh inline).
    html = (remote / report).read_text()
    assert "Dask Performance Report" in html and "parse_shard" in html
    assert "cdn.bokeh.org" not in html and "Bokeh" in html


def test_worker_killed_mid_ingest_gives_identical_output(
    prefect_harness: None, tmp_path: Path
) -> None:
    """SIGKILL one of two workers while shards are being parsed: Dask reruns its tasks on
    the other, and the dataset is byte-identical to an undisturbed run."""
    from cflib.config import SynthConfig
    from cflib.synth import generate_netflix
    from flows.ingest import run_ingest

    src = tmp_path / "src"
    generate_netflix(src, SynthConfig(movies=300, users=2000, ratings=300_000, seed=3))
    cfg = IngestConfig(shard_mb=0.05, bucket_rows=20_000)
    remote, local = tmp_path / "remote", tmp_path / "local"
    killed: list[int] = []
    with _cluster(tmp_path, 2, "--no-nanny") as (address, workers):

        def kill_when_parsing() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if any(tmp_path.glob(".remote.tmp-*/scratch/raw/shard-*.arrow")):
                    os.kill(workers[0].pid, signal.SIGKILL)
                    killed.append(workers[0].pid)
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_when_parsing)
        killer.start()
        manifest = run_ingest(
            str(src), str(remote), cfg.model_copy(update={"dask_address": address})
        )
        killer.join()
        assert killed and workers[0].wait(timeout=120) == -signal.SIGKILL
    ingest_local(src, local, cfg)
    assert sum(s["rows"] for s in manifest["splits"].values()) == 300_000
    parts = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert len(parts) > 5
    assert parts == sorted(p.relative_to(remote) for p in remote.rglob("*.parquet"))
    for rel in parts:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes(), rel
