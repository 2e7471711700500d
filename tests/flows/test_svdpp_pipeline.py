"""``cfpipe run --model svdpp`` end to end: ingest with qualifying pairs, N(u), training,
evaluation, publishing with the numpy form, and ``predict`` from the artifact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cflib import registry
from cflib.config import SynthConfig
from cflib.data import implicit
from cflib.data.manifest import load_manifest
from cflib.registry.serving import open_artifact
from tests import _prefect_api as api

pytestmark = pytest.mark.slow

TINY = SynthConfig(movies=60, users=300, ratings=15_000, probe_fraction=0.05, seed=3)


def test_cfpipe_run_model_svdpp(prefect_harness: None, tmp_path: Path) -> None:
    from cflib.synth import generate_netflix

    src, work = tmp_path / "netflix", tmp_path / "work"
    generate_netflix(src, TINY)
    env = api.cli_env(tmp_path, api.harness_api_url())
    argv = ["run", str(src), "--out", str(work), "--model", "svdpp", "--epochs", "3",
            "--batch-size", "1024", "--n-workers", "1"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Published (promoted or not: three epochs may not pass the bias baseline's gate).
    (artifact,) = (p for p in (work / "registry" / "netflix" / "svdpp").iterdir() if p.is_dir())
    assert f"artifact: {artifact}" in proc.stdout
    info = registry.verify(artifact)
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert info["model"] == "svdpp" and info["rmse"] < metrics["baselines"]["global_mean"]["rmse"]
    (run,) = (work / "runs").iterdir()
    summary = json.loads((run / "train.json").read_text())
    assert summary["model"] == "svdpp" and summary["refit"]["epochs"] == summary["best_epoch"]
    # N(u) counted the qualifying pairs (without ratings) with every split's.
    manifest = load_manifest(work / "data")
    assert manifest.qualifying_rows > 0
    sets = implicit.load(
        work / "data" / implicit.CACHE_DIR / manifest.fingerprint[:16], manifest.n_items
    )
    rated = sum(s.rows for s in manifest.splits.values())
    assert rated < len(sets.items) <= rated + manifest.qualifying_rows
    # Served from the numpy form, as the Keras model scores.
    art = open_artifact(artifact)
    assert art.info["scoring"]["kind"] == "svdpp"
    assert art.info["scoring"]["max_abs_diff"] <= 1e-5
    user, item = int(art.raw_users[0]), int(art.raw_items[0])
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", "predict", "--model", str(artifact), str(user),
         str(item)], env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) == pytest.approx(art.predict(user, item), abs=1e-3)
