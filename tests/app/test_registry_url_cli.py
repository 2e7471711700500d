"""`cfpipe publish` and `cfpipe run` into an fsspec URL registry, as real commands.

Publishing runs in a child process of the command's flow, so an in-process filesystem
(``memory://``) cannot show what it wrote. ``simplecache::file://DIR`` is a remote
(non-local) fsspec filesystem whose files land in a local directory: the upload path
(``artifact.json`` last, read back, ``latest`` a file) runs, and the test reads the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cflib.registry import find_published
from cflib.registry.listing import list_artifacts
from cflib.registry.serving import open_artifact
from tests._artifacts import ingest_tiny, make_run
from tests.conftest import write_netflix

pytestmark = pytest.mark.slow


def _cfpipe(*args: object) -> subprocess.CompletedProcess[str]:
    from prefect.settings import get_current_settings

    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    return subprocess.run(
        [sys.executable, "-m", "flows.app", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_cfpipe_publish_to_a_url_registry(prefect_harness: None, tmp_path: Path) -> None:
    data = ingest_tiny(write_netflix(tmp_path / "netflix"), tmp_path / "data")
    reg = tmp_path / "reg"
    url = f"simplecache::file://{reg}"
    run1 = make_run(tmp_path / "runs", data, "r1", rmse=0.8)
    proc = _cfpipe("publish", run1, "--registry", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    artifact = f"{url}/tiny/biased-mf/r1"
    assert proc.stdout.splitlines() == [
        f"published {artifact}",
        f"latest -> {url}/tiny/biased-mf/latest (first promoted run of this model)",
    ]
    # Uploaded as to a remote store: latest is a file naming the run, not a symlink.
    model_dir = reg / "tiny" / "biased-mf"
    assert not (model_dir / "latest").is_symlink()
    assert (model_dir / "latest").read_text() == "r1"
    info = json.loads((model_dir / "r1" / "artifact.json").read_text())
    assert _files(model_dir / "r1") == sorted([*info["files"], "artifact.json"])
    assert not list(reg.rglob(".*"))  # no lock or staging files: nothing renamed there
    # What the command printed opens, and is the artifact find_published verifies.
    served = open_artifact(artifact)
    try:
        assert served.info["run_id"] == "r1" and served.source == artifact
    finally:
        served.close()
    found = find_published(url, "tiny", "biased-mf", "r1")
    assert found is not None and found["artifact"] == artifact

    # A worse run is published but not promoted, through the command too.
    run2 = make_run(tmp_path / "runs", data, "r2", rmse=0.9)
    proc = _cfpipe("publish", run2, "--registry", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == f"published {url}/tiny/biased-mf/r2"
    assert "not promoted: test RMSE 0.9000 is worse" in proc.stdout
    assert (model_dir / "latest").read_text() == "r1"
    assert [(r["run_id"], r["latest"]) for r in list_artifacts(url)] == [
        ("r1", True),
        ("r2", False),
    ]
    # Publishing the same run again is refused: exit 2, one line, nothing changed.
    before = _files(reg)
    proc = _cfpipe("publish", run1, "--registry", url)
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if line.startswith("cfpipe: ")]
    refused = f"published artifact {artifact}: already exists and is not empty"
    assert said == [f"cfpipe: error: {refused}"]
    assert _files(reg) == before


def test_cfpipe_run_publishes_to_a_url_registry_and_a_rerun_finds_it(
    prefect_harness: None, tmp_path: Path
) -> None:
    source = write_netflix(tmp_path / "netflix")
    reg = tmp_path / "reg"
    url = f"simplecache::file://{reg}"
    argv = ["run", source, "--out", tmp_path / "work", "--registry", url, "--name", "tiny"]
    argv += ["--n-workers", "1", "--epochs", "1", "--embedding-dim", "4"]
    proc = _cfpipe(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("artifact: ")]
    artifact = line.removeprefix("artifact: ")
    run_id = artifact.rsplit("/", 1)[1]
    assert artifact == f"{url}/tiny/biased-mf/{run_id}"
    assert f"latest:   {url}/tiny/biased-mf/latest" in proc.stdout.splitlines()
    model_dir = reg / "tiny" / "biased-mf"
    assert (model_dir / "latest").read_text() == run_id
    assert (model_dir / run_id / "artifact.json").is_file()
    assert not (tmp_path / "work" / "registry").exists()  # nothing went to the default

    # The rerun finds every stage done, the artifact included, in the URL registry.
    before = _files(reg)
    proc = _cfpipe(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"artifact: {artifact} (already published)" in proc.stdout.splitlines()
    assert _files(reg) == before
