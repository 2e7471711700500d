"""Ingest on an existing Dask cluster: real `dask scheduler` and `dask worker` processes
on 127.0.0.1, output identical to the in-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cflib.config import IngestConfig
from cflib.ingest.parallel import ingest_local

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file() or not path.read_text().strip():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.2)


@pytest.fixture
def cluster(prefect_harness: None, tmp_path: Path) -> Iterator[str]:
    # The workers get no PREFECT_API_URL: they run plain cflib functions, not Prefect tasks.
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning"}
    env.pop("PREFECT_API_URL", None)
    info = tmp_path / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                f"--scheduler-file={info}",
                *common,
            ],
            env=env,
        )
    ]
    try:
        _wait_for(info)
        procs.append(
            subprocess.Popen(
                [
                    DASK,
                    "worker",
                    f"--scheduler-file={info}",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    *common,
                ],
                env=env,
            )
        )
        address = json.loads(info.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


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
