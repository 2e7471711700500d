"""End to end under a Prefect test server: the Dask ingest flow, training, evaluation and
publishing, and the CLI's one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib import registry, schema
from cflib.config import IngestConfig, PipelineConfig, SynthConfig, TrainConfig
from cflib.errors import DataFormatError
from flows.app.cli import main
from tests import _prefect_api as api
from tests.conftest import MOVIES, write_netflix

pytestmark = pytest.mark.slow

TINY = SynthConfig(movies=80, users=600, ratings=40_000, probe_fraction=0.05, seed=7)


@pytest.fixture(scope="module")
def synth_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cflib.synth import generate_netflix

    src = tmp_path_factory.mktemp("synth") / "netflix"
    generate_netflix(src, TINY)
    return src


def test_pipeline_learns_the_factors_and_publishes(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    from flows.pipeline import PipelineParams, pipeline_flow

    work = tmp_path / "work"
    cfg = PipelineConfig(
        ingest=IngestConfig(n_workers=2, shard_mb=0.05),
        train=TrainConfig(epochs=20, batch_size=1024),
    )
    params = PipelineParams(source=str(synth_source), work=str(work), config=cfg)
    state = pipeline_flow(params, return_state=True)
    result = state.result()
    flow_run = state.state_details.flow_run_id

    truth = json.loads((synth_source / "truth.json").read_text())
    metrics = result["metrics"]
    assert metrics["n_test"] == truth["n_probe"]
    assert metrics["oracle_rmse"] == pytest.approx(truth["oracle_rmse_probe"])
    assert metrics["cinematch_rmse"] is None  # the real probe set's figure: not beside these
    # The ratings are planted low-rank: the model must beat what biases alone can do on
    # the same split (fitted here, independently of cflib) by a quarter of the gap to
    # the planted model. A model whose p.q learns nothing stays at the bias-only RMSE.
    bias_only = _bias_only_rmse(work / "data")
    assert bias_only < metrics["baselines"]["global_mean"]["rmse"]
    bar = bias_only - 0.25 * (bias_only - truth["oracle_rmse_probe"])
    assert metrics["rmse"] < bar, (metrics["rmse"], bias_only, truth["oracle_rmse_probe"])
    on_disk = json.loads((Path(result["run"]) / schema.METRICS_FILE).read_text())
    assert on_disk["rmse"] == metrics["rmse"]
    text = (Path(result["run"]) / schema.REPORT_FILE).read_text()
    for section in ("## Test metrics", "## Training", "## Data", "## Configuration"):
        assert section in text
    assert "data:image/png;base64," in (Path(result["run"]) / "report.html").read_text()
    # This flow run's artifacts (its subflows' and their tasks'), not the session's.
    artifacts = api.artifacts(flow_run)
    assert {a.key for a in artifacts} >= {"test-metrics", "run-report", "report-html"}
    progress = [a for a in artifacts if a.type == "progress"]
    assert {a.description for a in progress} >= {"shards parsed", "parts written", "epochs (done)"}
    assert all(a.data == 100.0 for a in progress)
    # The LocalCluster listens on loopback only; no dashboard link (it died with the
    # cluster): the performance report is kept in the dataset and named by its path.
    lines = api.wait_for_logs(flow_run, lambda ls: any(m.startswith("Dask scheduler ") for m in ls))
    dask_lines = [line for line in lines if line.startswith("Dask scheduler ")]
    assert len(dask_lines) == 1 and re.fullmatch(
        r"Dask scheduler tcp://127\.0\.0\.1:\d+", dask_lines[0]
    ), dask_lines
    assert not [line for line in lines if "dashboard" in line.lower()]
    perf = (work / "data" / schema.PERFORMANCE_REPORT_FILE).resolve()
    assert "Dask Performance Report" in perf.read_text()
    by_key = {a.key: a for a in artifacts}
    assert f"`{perf}`" in str(by_key["dask-performance-report"].data)
    # The report's figures in the UI (data: images), the HTML report named by its path.
    assert str(by_key["run-report"].data).count("](data:image/png;base64,") == 4
    html = str(by_key["report-html"].data)
    assert f"`{(Path(result['run']) / 'report.html').resolve()}`" in html
    assert "file://" not in html and "file://" not in str(by_key["run-report"].data)

    # The parent run itself carries the summary: a line per stage, the metrics, the report.
    own = {a.key: a for a in artifacts if a.flow_run_id == flow_run}
    assert {"pipeline-metrics", "pipeline-summary"} <= set(own), sorted(own)
    assert own["pipeline-metrics"].data  # the table, model first
    assert "biased-mf (this run)" in str(own["pipeline-metrics"].data)
    summary = str(own["pipeline-summary"].data)
    assert "## Test metrics" in summary and f"test RMSE {metrics['rmse']:.4f}" in summary
    assert summary.count("](data:image/png;base64,") == 4
    # The HTML report named is the copy kept with the published artifact.
    kept = Path(result["published"]["artifact"]) / "report.html"
    assert kept.read_bytes() == (Path(result["run"]) / "report.html").read_bytes()
    assert f"`{kept.resolve()}`" in summary
    stages = ("ingest: netflix, ", "train: ", "evaluate: test RMSE ", "publish: ")
    parent_lines = api.wait_for_logs(
        flow_run, lambda ls: all(any(m.startswith(s) for m in ls) for s in stages)
    )
    assert f"evaluate: test RMSE {metrics['rmse']:.4f}" in "\n".join(parent_lines)

    artifact = Path(result["published"]["artifact"])
    assert artifact.parent == work / "registry" / "netflix" / "biased-mf"
    assert registry.verify(artifact)["rmse"] == metrics["rmse"]
    assert (artifact.parent / "latest").resolve() == artifact.resolve()

    # A rerun finds every stage done and unchanged: same run, nothing retrained.
    again = pipeline_flow(params)
    assert again["run"] == result["run"] and again["metrics"]["rmse"] == metrics["rmse"]
    assert again["published"]["skipped"] and again["published"]["artifact"] == str(artifact)
    assert len(list((work / "runs").iterdir())) == 1


def _bias_only_rmse(data: Path) -> float:
    """Test RMSE of mean + user bias + item bias fitted on the train split by alternating
    ridge-regularized means (numpy only; not cflib's damped-means baseline)."""
    splits = {}
    for split in ("train", "test"):
        path = data / "ratings" / f"split={split}"
        table = pq.read_table(path, columns=["user", "item", "rating"])
        splits[split] = [table[c].to_numpy() for c in ("user", "item", "rating")]
    (u, i, r), (tu, ti, tr) = splits["train"], splits["test"]
    r, tr = r.astype(np.float64), tr.astype(np.float64)
    n_users, n_items = int(max(u.max(), tu.max())) + 1, int(max(i.max(), ti.max())) + 1
    mu, lam = r.mean(), 5.0
    b_user, b_item = np.zeros(n_users), np.zeros(n_items)
    for _ in range(20):
        b_item = np.bincount(i, r - mu - b_user[u], n_items) / (np.bincount(i, None, n_items) + lam)
        b_user = np.bincount(u, r - mu - b_item[i], n_users) / (np.bincount(u, None, n_users) + lam)
    pred = np.clip(mu + b_user[tu] + b_item[ti], 1, 5)
    return float(np.sqrt(np.mean((pred - tr) ** 2)))


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
    assert f" 1 line (see {out / 'quarantine.parquet'})" in summary
    assert re.search(rf"\n  Dask report +{re.escape(str(out))}/dask-performance\.html\n", summary)
    assert "Dask Performance Report" in (out / "dask-performance.html").read_text()
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
    tmp = tmp_path / "cwd"
    tmp.mkdir()
    argv = [a.replace("{tmp}", str(tmp)) for a in args]
    env = api.cli_env(tmp_path, "http://127.0.0.1:9/api")  # Never reached.
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cfpipe: error: ") and needle in lines[0]
    assert sorted(p.name for p in tmp.iterdir()) == []


def test_cli_training_epochs_reach_the_prefect_run_logs(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    import uuid

    from cflib.ingest.parallel import ingest_local

    data, run = tmp_path / "data", tmp_path / "run"
    ingest_local(synth_source, data, IngestConfig())
    run_id = f"logs-{uuid.uuid4().hex[:8]}"  # finds this command's flow run on the server
    env = api.cli_env(tmp_path, api.harness_api_url())
    argv = ["train", str(data), "--out", str(run), "--epochs", "2", "--run-id", run_id]
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def epochs_and_best(lines: list[str]) -> bool:
        epoch = any(m.startswith("epoch 1: loss") for m in lines)
        return epoch and any(m.startswith(f"{run_id}: best epoch") for m in lines)

    flow_run = api.flow_run_by_parameter("train", "run_id", run_id)
    api.wait_for_logs(flow_run, epochs_and_best)
    # Shown under the stage's name, not the module's (cflib.train.checkpoint).
    named = dict((m, name) for name, m in api.named_logs(flow_run))
    assert {named[m] for m in named if m.startswith(("epoch ", f"{run_id}: best"))} == {"train"}


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
    real_train = pipeline.run_train

    def corrupt_then_train(data: str, *args: Any, **kwargs: Any) -> Any:
        part = sorted(Path(data, "ratings", "split=train").glob("*.parquet"))[0]
        saved[part] = part.read_bytes()
        part.write_bytes(saved[part][:100])
        return real_train(data, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_train", corrupt_then_train)
    cfg = PipelineConfig(train=TrainConfig(epochs=1, batch_size=1024))
    params = PipelineParams(source=str(synth_source), work=str(work), config=cfg)
    state = pipeline_flow(params, return_state=True)
    [(part, good)] = saved.items()
    assert state.is_failed()
    with pytest.raises(DatasetError, match=f"{part}: corrupt or truncated Parquet part"):
        state.result()
    flow_run = state.state_details.flow_run_id
    api.wait_for_logs(
        flow_run, lambda lines: any(f"{part}: corrupt or truncated" in m for m in lines)
    )

    part.write_bytes(good)  # the fix
    manifest = work / "data" / schema.MANIFEST_FILE
    before = manifest.stat().st_mtime_ns
    monkeypatch.setattr(pipeline, "run_train", real_train)
    result = pipeline_flow(params)
    assert manifest.stat().st_mtime_ns == before  # ingest was up to date: skipped
    assert result["metrics"]["n_test"] > 0


def test_compare_models_trains_each_blends_and_publishes_a_table(
    prefect_harness: None, synth_source: Path, tmp_path: Path
) -> None:
    from flows.compare import CompareParams, compare_flow

    cfg = PipelineConfig(train=TrainConfig(epochs=1, batch_size=1024))
    # A ridge penalty this large leaves the blend its intercept, the mean rating: worse
    # than either model, so it is evaluated and shown but not published.
    params = CompareParams(
        source=str(synth_source),
        work=str(tmp_path),
        models=["dot", "biased-mf"],
        config=cfg,
        blend_l2=1e6,
    )
    state = compare_flow(params, return_state=True)
    rows = state.result()
    assert sorted(r["model"] for r in rows) == ["biased-mf", "blend", "dot"]
    assert [r["test_rmse"] for r in rows] == sorted(r["test_rmse"] for r in rows)
    singles = [r for r in rows if r["model"] != "blend"]
    for row in singles:
        assert registry.verify(Path(row["artifact"]))["model"] == row["model"]
    [mixed] = [r for r in rows if r["model"] == "blend"]
    from cflib.registry.listing import list_artifacts

    published = list_artifacts(tmp_path / "registry")
    assert mixed["artifact"] is None
    assert sorted(r["model"] for r in published) == ["biased-mf", "dot"]
    best = min(singles, key=lambda r: r["test_rmse"])
    assert mixed["test_rmse"] > best["test_rmse"]
    assert mixed["note"].startswith("not published: test RMSE ")
    assert f"is not better than the best single model's ({best['model']}, " in mixed["note"]
    assert re.fullmatch(
        r"dot -?0\.0\d\d, biased-mf -?0\.0\d\d, intercept \d\.\d{4}", mixed["weights"]
    )
    blend_run = tmp_path / "runs" / mixed["run_id"]
    spec = json.loads((blend_run / "blend.json").read_text())
    assert [c["model"] for c in spec["components"]] == ["dot", "biased-mf"]
    assert "## Blend" in (blend_run / schema.REPORT_FILE).read_text()
    flow_run = state.state_details.flow_run_id
    by_key = {a.key: a for a in api.artifacts(flow_run)}
    assert [r["model"] for r in json.loads(by_key["model-comparison"].data)] == [
        r["model"] for r in rows
    ]
    assert f"- blend: {mixed['note']}" in by_key["model-comparison-report"].data
    api.wait_for_logs(
        flow_run, lambda lines: any(f"blend {mixed['run_id']}: not published" in m for m in lines)
    )


def test_cli_disk_full_is_one_line_and_keeps_the_previous_dataset(
    prefect_harness: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    import cflib.ingest.compact as steps

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
    from tests.train.test_train import write_planted

    data = write_planted(tmp_path / "data")  # no user_map.parquet / item_map.parquet
    env = api.cli_env(tmp_path, "http://127.0.0.1:9/api")  # Never reached.
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
