"""End to end under a Prefect test server: the Dask ingest flow, training, evaluation and
publishing, and the CLI's one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cflib import registry, schema
from cflib.config import IngestConfig, PipelineConfig, SynthConfig, TrainConfig
from cflib.errors import DataFormatError
from flows.app.cli import main
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
    from flows.pipeline import PipelineParams, pipeline_flow

    work = tmp_path / "work"
    cfg = PipelineConfig(
        ingest=IngestConfig(n_workers=2, shard_mb=0.05),
        train=TrainConfig(epochs=6, batch_size=1024, learning_rate=0.01),
    )
    result = pipeline_flow(PipelineParams(source=str(synth_source), work=str(work), config=cfg))

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
    assert "data:image/png;base64," in (Path(result["run"]) / "report.html").read_text()
    artifacts = _artifacts()
    assert {a.key for a in artifacts} >= {"test-metrics", "run-report", "report-html"}
    progress = [a for a in artifacts if a.type == "progress"]
    assert {a.description for a in progress} >= {"shards parsed", "parts written", "epochs (done)"}
    assert all(a.data == 100.0 for a in progress)
    # The LocalCluster listens on loopback only, and its dashboard link is in the logs.
    dask_lines = [line for line in _logs() if line.startswith("Dask scheduler ")]
    assert dask_lines and all(
        re.fullmatch(
            r"Dask scheduler tcp://127\.0\.0\.1:\d+, dashboard http://127\.0\.0\.1:\d+/status", line
        )
        for line in dask_lines
    ), dask_lines

    artifact = Path(result["published"]["artifact"])
    assert artifact.parent == work / "registry" / "netflix" / "biased-mf"
    assert registry.verify(artifact)["rmse"] == metrics["rmse"]
    assert (artifact.parent / "latest").resolve() == artifact.resolve()

    # A rerun finds every stage done and unchanged: same run, nothing retrained.
    again = pipeline_flow(PipelineParams(source=str(synth_source), work=str(work), config=cfg))
    assert again["run"] == result["run"] and again["metrics"]["rmse"] == metrics["rmse"]
    assert again["published"]["skipped"] and again["published"]["artifact"] == str(artifact)
    assert len(list((work / "runs").iterdir())) == 1


def _artifacts() -> list[Any]:
    """The artifacts the Prefect API holds (what the UI shows on flow runs)."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def read() -> list[Any]:
        async with get_client() as client:
            return list(await client.read_artifacts())

    return asyncio.run(read())


def test_ingest_flow_on_dask_reports_malformed_line(prefect_harness: None, tmp_path: Path) -> None:
    from flows.ingest import run_ingest

    src = write_netflix(tmp_path / "src", {**MOVIES, 3: ["20,1,2002-06-30", "40,x,2001-01-15"]})
    with pytest.raises(DataFormatError) as err:
        run_ingest(str(src), str(tmp_path / "data"), IngestConfig(shard_mb=1e-6, strict=True))
    assert err.value.path.endswith("mv_0000003.txt") and err.value.lineno == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cli_malformed_line_quarantined_or_strict_exit_2(
    prefect_harness: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_netflix(tmp_path / "src", {**MOVIES, 2: ["10,4,2003-01-01", "30,4"]})
    assert main(["ingest", str(src), "--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cfpipe: error: ") and "mv_0000002.txt:3" in err
    assert not (tmp_path / "strict").exists()

    out = tmp_path / "data"
    assert main(["ingest", str(src), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert f"1 lines (see {out / 'quarantine.parquet'})" in summary
    [bad] = pq.read_table(out / "quarantine.parquet").to_pylist()
    assert (bad["file"], bad["line"], bad["text"]) == ("training_set/mv_0000002.txt", 3, "30,4")


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
        [sys.executable, "-m", "flows.app", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfpipe: error: ") and needle in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_training_epochs_reach_the_prefect_run_logs(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    import asyncio
    import time
    from datetime import UTC, datetime

    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp
    from prefect.settings import get_current_settings

    from cflib.ingest.parallel import ingest_local

    data, run = tmp_path / "data", tmp_path / "run"
    ingest_local(synth_source, data, IngestConfig())
    start = datetime.now(UTC)
    env = {**os.environ, "PREFECT_API_URL": str(get_current_settings().api.url)}
    argv = ["train", str(data), "--out", str(run), "--epochs", "2", "--run-id", "logs-test"]
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    async def cflib_logs() -> list[str]:
        """cflib's log lines since the command started (the API filters by time only)."""
        async with get_client() as client:
            logs = await client.read_logs(
                LogFilter(timestamp=LogFilterTimestamp(after_=start)), limit=200, offset=0
            )
        return [
            log.message
            for log in logs
            if log.name in ("cflib.train.loop", "cflib.train.checkpoint")
        ]

    # The server stores logs a moment after it receives them (more under load): poll.
    deadline = time.monotonic() + 30
    while True:
        messages = asyncio.run(cflib_logs())
        epoch = any(m.startswith("epoch 1: loss") for m in messages)
        best = any(m.startswith("logs-test: best epoch") for m in messages)
        if epoch and best or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert epoch and best, messages


def test_corrupt_part_fails_the_run_and_the_fixed_rerun_skips_ingest(
    prefect_harness: None, synth_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part damaged between ingest and training fails the flow run with a message naming
    it (in the Prefect logs too); once it is restored, a rerun does not ingest again."""
    import flows.pipeline as pipeline
    from cflib.errors import DatasetError
    from flows.pipeline import PipelineParams, pipeline_flow

    work = tmp_path / "work"
    saved: dict[Path, bytes] = {}
    real_train = pipeline.train_flow

    def corrupt_then_train(data: str, *args: Any, **kwargs: Any) -> Any:
        part = sorted(Path(data, "ratings", "split=train").glob("*.parquet"))[0]
        saved[part] = part.read_bytes()
        part.write_bytes(saved[part][:100])
        return real_train(data, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_flow", corrupt_then_train)
    cfg = PipelineConfig(train=TrainConfig(epochs=1, batch_size=1024))
    params = PipelineParams(source=str(synth_source), work=str(work), config=cfg)
    state = pipeline_flow(params, return_state=True)
    [(part, good)] = saved.items()
    assert state.is_failed()
    with pytest.raises(DatasetError, match=f"{part}: corrupt or truncated Parquet part"):
        state.result()
    assert _logged(f"{part}: corrupt or truncated")

    part.write_bytes(good)  # the fix
    manifest = work / "data" / schema.MANIFEST_FILE
    before = manifest.stat().st_mtime_ns
    monkeypatch.setattr(pipeline, "train_flow", real_train)
    result = pipeline_flow(params)
    assert manifest.stat().st_mtime_ns == before  # ingest was up to date: skipped
    assert result["metrics"]["n_test"] > 0


def _logged(needle: str, timeout: float = 30.0) -> bool:
    """Whether a log line with ``needle`` reaches the API; Prefect ships logs in batches
    from a background worker, so a busy machine can take a few seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not any(needle in line for line in _logs()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _logs() -> list[str]:
    """Every log line the Prefect API holds (the flow runs' logs in the UI)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import LogSort

    async def read() -> list[str]:
        # Newest first: the API returns one page (200 lines), and the session's other
        # flow runs share this server.
        async with get_client() as client:
            return [log.message for log in await client.read_logs(sort=LogSort.TIMESTAMP_DESC)]

    return asyncio.run(read())


def test_compare_models_trains_each_and_publishes_a_table(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    from flows.compare import CompareParams, compare_flow

    cfg = PipelineConfig(train=TrainConfig(epochs=1, batch_size=1024))
    params = CompareParams(
        source=str(synth_source), work=str(tmp_path), models=["dot", "biased-mf"], config=cfg
    )
    rows = compare_flow(params)
    assert sorted(r["model"] for r in rows) == ["biased-mf", "dot"]
    assert rows[0]["test_rmse"] <= rows[1]["test_rmse"]
    for row in rows:
        assert registry.verify(Path(row["artifact"]))["model"] == row["model"]
    [table] = [a for a in _artifacts() if a.key == "model-comparison"][:1]
    assert json.loads(table.data)[0]["model"] == rows[0]["model"]


def test_cli_disk_full_is_one_line_and_keeps_the_previous_dataset(
    prefect_harness: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    import cflib.ingest.steps as steps

    src = write_netflix(tmp_path / "src")
    out = tmp_path / "data"
    assert main(["ingest", str(src), "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(args[1]))

    monkeypatch.setattr(steps.pq, "write_table", full)
    capsys.readouterr()
    assert main(["ingest", str(src), "--out", str(out), "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cfpipe: error: ") and err[-1].endswith("No space left on device")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "src"]


def test_cli_model_incompatible_with_the_dataset(tmp_path: Path) -> None:
    from tests.test_train import write_planted

    data = write_planted(tmp_path / "data")  # no user_map.parquet / item_map.parquet
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # Never reached.
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--model", "two-tower"]
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfpipe: error: --model two-tower needs")
    assert not (tmp_path / "run").exists()
    argv = ["train", str(data), "--out", str(tmp_path / "run"), "--dropout", "0.2"]
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and "--dropout does not apply to --model biased-mf" in proc.stderr
