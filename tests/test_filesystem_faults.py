"""A really full disk and a really read-only mount under `cfpipe ingest` and `publish`.

The work directory is a small tmpfs mounted in a private mount namespace
(``unshare --mount``), so nothing leaks to the machine even if the test dies. Filling it
(``posix_fallocate``) gives the writers a true ENOSPC at whatever write comes first, and
remounting it read-only a true EROFS, which root cannot bypass as it bypasses
permission bits. Each failure must be one line naming the cause, exit status 1, and
leave the previous dataset and published model byte for byte as they were, with no
staging files left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._artifacts import ingest_tiny, make_run
from tests.conftest import write_netflix
from tests.flows.test_pipeline import TINY

pytestmark = pytest.mark.slow

# Runs inside the mount namespace: mounts WORK, runs the CLI there, reports as JSON.
DRIVER = r"""
import hashlib, json, os, subprocess, sys
from pathlib import Path

work, source, run1, run2 = map(Path, sys.argv[1:5])
report = {}


def mount(*options):
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(work)],
                   check=True)


def cfpipe(*args):
    proc = subprocess.run([sys.executable, "-m", "flows.app", *map(str, args)],
                          capture_output=True, text=True)
    said = [line for line in proc.stderr.splitlines() if line.startswith("cfpipe: ")]
    return {"rc": proc.returncode, "said": said}


def tree(root):
    return {str(p.relative_to(work)): os.readlink(p) if p.is_symlink()
            else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def free():
    stat = os.statvfs(work)
    return stat.f_bavail * stat.f_frsize


def attempt(step):
    before = {"data": tree(work / "data"), "registry": tree(work / "registry")}
    names, space = sorted(os.listdir(work)), free()
    with (source / "training_set" / "mv_0000001.txt").open("a") as fh:
        fh.write(f"{70 + len(report)},3,2005-01-01\n")  # new data: ingest must rewrite
    report[step] = {
        "ingest": cfpipe("ingest", source, "--out", work / "data"),
        "publish": cfpipe("publish", run2, "--registry", work / "registry"),
        "same_data": tree(work / "data") == before["data"],
        "same_registry": tree(work / "registry") == before["registry"],
        "same_names": sorted(os.listdir(work)) == names,
        "space_back": free() == space,
    }


mount("size=64m")
report["setup"] = {
    "ingest": cfpipe("ingest", source, "--out", work / "data"),
    "publish": cfpipe("publish", run1, "--registry", work / "registry"),
}
with open(work / "filler", "wb") as fh:  # leave 16 KiB: the first data file write fails
    os.posix_fallocate(fh.fileno(), 0, free() - 16 * 1024)
attempt("full")
os.remove(work / "filler")
mount("remount", "ro")
attempt("read_only")
mount("remount", "rw")
report["fixed"] = {
    "ingest": cfpipe("ingest", source, "--out", work / "data"),
    "publish": cfpipe("publish", run2, "--registry", work / "registry"),
    "latest": os.readlink(next((work / "registry").glob("*/*/latest"))),
}
print("REPORT " + json.dumps(report))
"""


def _can_mount(tmp: Path) -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", tmp],
        capture_output=True,
    )
    return probe.returncode == 0


@pytest.mark.required_in_ci("the only test of publish and ingest on a real ENOSPC and EROFS")
def test_full_disk_and_read_only_mount_keep_dataset_and_registry(
    prefect_harness: None, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from prefect.settings import get_current_settings

    from cflib.synth import generate_netflix

    if not _can_mount(tmp_path_factory.mktemp("probe")):
        pytest.skip("needs root and a private mount namespace (unshare --mount) for tmpfs")
    source = tmp_path / "netflix"
    generate_netflix(source, TINY)
    data = ingest_tiny(write_netflix(tmp_path / "tiny"), tmp_path / "tiny-data")
    run1, run2 = (
        make_run(tmp_path / "runs", data, r, rmse=e) for r, e in (("r1", 0.9), ("r2", 0.8))
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    args = [sys.executable, "-c", DRIVER, work, source, run1, run2]
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    report: dict[str, Any] = json.loads(line.removeprefix("REPORT "))

    assert report["setup"]["ingest"]["rc"] == 0 and report["setup"]["publish"]["rc"] == 0
    for step, cause in (
        ("full", "No space left on device"),
        ("read_only", "Read-only file system"),
    ):
        got = report[step]
        for command in ("ingest", "publish"):
            assert got[command]["rc"] == 1, (step, command, got[command])
            [said] = got[command]["said"]  # one line, naming the cause and where
            assert said.startswith("cfpipe: error: ") and said.endswith(cause), (step, said)
            assert f"{work}/" in said, (step, said)
        # Nothing changed or left behind: same files, same bytes, and all space given back.
        assert got["same_data"] and got["same_registry"] and got["same_names"], (step, got)
        assert got["space_back"], (step, got)
    # Once the disk is writable again, both go through.
    assert report["fixed"]["ingest"]["rc"] == 0 and report["fixed"]["publish"]["rc"] == 0
    assert report["fixed"]["latest"] == "r2"
    assert not list(work.iterdir())  # the tmpfs went with its namespace
