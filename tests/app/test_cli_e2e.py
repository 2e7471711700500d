"""`cfpipe demo` and `cfpipe run` for real, end to end on tiny data (no `_run_pipeline`
faked): what they print, and that it is what they did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cflib.config import SynthConfig
from tests import _prefect_api as api

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "flows.app"]
# Small enough for a quick demo; `cfpipe demo` generates its data only when
# OUT/source/truth.json is missing, so the test writes it first.
TINY = SynthConfig(movies=40, users=300, ratings=12_000, probe_fraction=0.05, seed=11)


def _cfpipe(argv: list[str], tmp_path: Path) -> list[str]:
    env = api.cli_env(tmp_path, api.harness_api_url())
    done = subprocess.run([*CLI, *argv], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def _value(lines: list[str], label: str) -> str:
    [line] = [ln for ln in lines if ln.startswith(label)]
    return line[len(label) :].strip()


def test_demo_then_run_print_latest_or_not_promoted(prefect_harness: None, tmp_path: Path) -> None:
    from cflib.synth import generate_netflix

    work = tmp_path / "demo"
    generate_netflix(work / "source", TINY)
    lines = _cfpipe(["demo", "--out", str(work)], tmp_path)
    assert not any(line.startswith("generating") for line in lines)  # its source was there
    models = work / "registry" / "netflix-demo" / "biased-mf"
    [artifact] = [p for p in models.iterdir() if p.name != "latest"]
    assert _value(lines, "artifact:") == str(artifact)
    assert _value(lines, "latest:") == str(models / "latest")
    assert (models / "latest").resolve() == artifact.resolve()
    run = work / "runs" / artifact.name
    assert _value(lines, "report:") == str(run / "report.html")
    metrics = json.loads((run / "metrics.json").read_text())
    [model_row] = [ln for ln in lines if ln.startswith("biased-mf (this run)")]
    assert model_row.split()[-2:] == [f"{metrics['rmse']:.4f}", f"{metrics['mae']:.4f}"]
    assert any(ln.startswith("oracle (planted model, noise floor)") for ln in lines)
    assert not any(ln.startswith("not promoted:") for ln in lines)

    # `cfpipe run` on the demo's work directory with other training options: a new run,
    # published (the dataset is reused) but, with --no-promote, not promoted.
    argv = ["run", str(work / "source"), "--out", str(work), "--name", "netflix-demo"]
    lines = _cfpipe([*argv, "--epochs", "3", "--no-promote"], tmp_path)
    [second] = [p for p in models.iterdir() if p.name not in ("latest", artifact.name)]
    assert _value(lines, "artifact:") == str(second)
    promotion = json.loads((second / "artifact.json").read_text())["promotion"]
    assert not promotion["promoted"]
    assert _value(lines, "not promoted:") == promotion["reason"]
    assert not any(ln.startswith("latest:") for ln in lines)
    assert (models / "latest").resolve() == artifact.resolve()  # unmoved

    # The same run into another registry, promoted there: trained and evaluated already,
    # so only published; `latest:` names the new registry's link.
    other = tmp_path / "other-registry"
    lines = _cfpipe([*argv, "--epochs", "3", "--registry", str(other)], tmp_path)
    link = other / "netflix-demo" / "biased-mf" / "latest"
    assert _value(lines, "latest:") == str(link)
    assert link.resolve().name == second.name
    assert _value(lines, "artifact:") == str(other / "netflix-demo" / "biased-mf" / second.name)
    assert len(list((work / "runs").iterdir())) == 2  # nothing trained a third time
