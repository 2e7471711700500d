"""No secret from the environment is written anywhere: a whole `cfpipe run` with
credentials in its environment, then every byte it wrote searched for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cflib.config import SynthConfig
from cflib.synth import generate_netflix

pytestmark = pytest.mark.slow

SECRETS = {
    # Prefect's client credentials, and a cloud store's, as a nightly job would have them.
    "PREFECT_API_AUTH_STRING": "cfpipe:AUTH-SECRET-7f3a9",
    "AWS_SECRET_ACCESS_KEY": "AWS-SECRET-91c2e",
    "CFPIPE_TEST_TOKEN": "TOKEN-SECRET-5d0b1",
}


def test_cli_run_writes_no_secret_from_its_environment(tmp_path: Path) -> None:
    source = tmp_path / "netflix"
    generate_netflix(source, SynthConfig(movies=40, users=300, ratings=8_000, seed=3))
    home, work = tmp_path / "prefect", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env |= SECRETS | {"PREFECT_HOME": str(home)}  # the temporary server's database here
    argv = ["run", str(source), "--out", str(work), "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], env=env, capture_output=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = [p for root in (work, home) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in written)  # Prefect's records are searched
    assert any(p.name == "artifact.json" for p in written)
    for secret in SECRETS.values():
        needle = secret.encode()
        assert needle not in done.stdout + done.stderr
        assert [p for p in written if needle in p.read_bytes()] == []
