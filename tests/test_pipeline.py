"""End to end under a Prefect test server: the Dask ingest flow, training, evaluation and
publishing, and the CLI's one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cflib import registry, schema
from cflib.cli import main
from cflib.config import IngestConfig, PipelineConfig, SynthConfig, TrainConfig
from cflib.errors import DataFormatError
from tests.conftest import MOVIES, write_netflix

pytestmark = pytest.mark.slow

TINY = SynthConfig(movies=80, users=600, ratings=40_000, probe_fraction=0.05, seed=7)


@pytest.fixture(scope="module")
def synth_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cflib.synth import generate_netflix

    src = tmp_path_factory.mktemp("synth") / "netflix"
    generate_netflix(src, TINY)
    return src


def test_pipeline_beats_global_mean_and_publishes(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    from flows.pipeline import pipeline_flow

    work = tmp_path / "work"
    cfg = PipelineConfig(
        ingest=IngestConfig(n_workers=2, shard_mb=0.05),
        train=TrainConfig(epochs=6, batch_size=1024, learning_rate=0.01),
    )
    result = pipeline_flow(str(synth_source), str(work), cfg)

    truth = json.loads((synth_source / "truth.json").read_text())
    metrics = result["metrics"]
    assert metrics["n_test"] == truth["n_probe"]
    assert metrics["rmse"] < metrics["baselines"]["global_mean"]["rmse"]
    assert metrics["oracle_rmse"] == pytest.approx(truth["oracle_rmse_probe"])
    on_disk = json.loads((Path(result["run"]) / schema.METRICS_FILE).read_text())
    assert on_disk["rmse"] == metrics["rmse"]
    text = (Path(result["run"]) / schema.REPORT_FILE).read_text()
    for section in ("## Test metrics", "## Training", "## Data", "## Configuration"):
        assert section in text

    artifact = Path(result["published"]["artifact"])
    assert artifact.parent == work / "registry" / "netflix" / "biased-mf"
    assert registry.verify(artifact)["rmse"] == metrics["rmse"]
    assert (artifact.parent / "latest").resolve() == artifact.resolve()


def test_ingest_flow_on_dask_reports_malformed_line(prefect_harness: None, tmp_path: Path) -> None:
    from flows.ingest import run_ingest

    src = write_netflix(tmp_path / "src", {**MOVIES, 3: ["20,1,2002-06-30", "40,x,2001-01-15"]})
    with pytest.raises(DataFormatError) as err:
        run_ingest(str(src), str(tmp_path / "data"), IngestConfig(shard_mb=1e-6))
    assert err.value.path.endswith("mv_0000003.txt") and err.value.lineno == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_malformed_line_is_one_line_exit_2(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_netflix(tmp_path / "src", {**MOVIES, 2: ["10,4,2003-01-01", "30,4"]})
    assert main(["ingest", str(src), "--out", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cfpipe: error: ") and "mv_0000002.txt:3" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["ingest", "{tmp}/missing", "--out", "{tmp}/data"],
            "missing: source directory does not exist",
        ),
        (["train", "{tmp}", "--out", "{tmp}/run", "--model", "nope"], "--model"),
        (["train", "{tmp}", "--out", "{tmp}/run", "--epochs", "0"], "--epochs 0"),
        (["train", "{tmp}", "--out", "{tmp}/run"], "_manifest.json: no manifest"),
        (["train", "{tmp}", "--out", "{tmp}/run", "--dropout", "1"], "--dropout 1.0"),
        (["train", "{tmp}", "--out", "{tmp}/run", "--hidden", "0"], "--hidden '0'"),
        (["train", "{tmp}", "--out", "{tmp}/run", "--lr-decay", "0"], "--lr-decay 0.0"),
        (["evaluate", "{tmp}/run"], "run directory does not exist"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # Never reached.
    proc = subprocess.run(
        [sys.executable, "-m", "cflib.cli", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfpipe: error: ") and needle in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_training_epochs_reach_the_prefect_run_logs(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterName
    from prefect.settings import get_current_settings

    from cflib.ingest.parallel import ingest_local

    data, run = tmp_path / "data", tmp_path / "run"
    ingest_local(synth_source, data, IngestConfig())
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    argv = ["train", str(data), "--out", str(run), "--epochs", "2", "--run-id", "logs-test"]
    proc = subprocess.run(
        [sys.executable, "-m", "cflib.cli", *argv], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    async def cflib_logs() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                LogFilter(name=LogFilterName(any_=["cflib.train"])), limit=200, offset=0
            )
        return [log.message for log in logs]

    messages = asyncio.run(cflib_logs())
    assert any(m.startswith("epoch 1: loss") for m in messages)
    assert any(m.startswith("logs-test: best epoch") for m in messages)


def test_cli_model_incompatible_with_the_dataset(tmp_path: Path) -> None:
    from tests.test_train import write_planted

    data = write_planted(tmp_path / "data")  # no user_map.parquet / item_map.parquet
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # Never reached.
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--model", "two-tower"]
    proc = subprocess.run(
        [sys.executable, "-m", "cflib.cli", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfpipe: error: --model two-tower needs")
    assert not (tmp_path / "run").exists()
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--dropout", "0.2"]
    proc = subprocess.run(
        [sys.executable, "-m", "cflib.cli", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and "--dropout does not apply to --model biased-mf" in proc.stderr
