"""Publishing runs: atomic copies, checksums, the latest pointer, unsafe names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cflib import registry, schema
from cflib.config import IngestConfig, PublishConfig
from cflib.errors import ConfigError, DatasetError
from cflib.ingest.parallel import ingest_local


def _fake_run(root: Path, data: Path, run_id: str, rmse: float = 0.9) -> Path:
    """A run directory as train + evaluate leave it (the model file is opaque bytes here)."""
    manifest = json.loads((data / schema.MANIFEST_FILE).read_text())
    run = root / run_id
    run.mkdir(parents=True)
    (run / schema.MODEL_FILE).write_bytes(b"model-bytes-" + run_id.encode())
    summary = {
        "run_id": run_id,
        "model": "biased-mf",
        "dataset": manifest["name"],
        "data_dir": str(data),
        "data_fingerprint": manifest["fingerprint"],
    }
    (run / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary))
    (run / schema.METRICS_FILE).write_text(json.dumps({"rmse": rmse, "n_test": 3}))
    (run / schema.REPORT_FILE).write_text("# report\n")
    return run


@pytest.fixture
def data(netflix_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig(name="tiny"))
    return out


def test_publish_copies_verifies_and_points_latest(data: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    run = _fake_run(tmp_path / "runs", data, "r1")
    result = registry.publish(run, reg, PublishConfig())
    artifact = reg / "tiny" / "biased-mf" / "r1"
    assert result["artifact"] == str(artifact)
    assert (artifact / schema.MODEL_FILE).read_bytes() == b"model-bytes-r1"
    for name in (schema.USER_MAP_FILE, schema.ITEM_MAP_FILE, "data_manifest.json"):
        assert (artifact / name).read_bytes() == (
            data / (schema.MANIFEST_FILE if name == "data_manifest.json" else name)
        ).read_bytes()
    info = registry.verify(artifact)
    assert info["run_id"] == "r1" and len(info["files"]) == 7
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r1"

    run2 = _fake_run(tmp_path / "runs", data, "r2")
    registry.publish(run2, reg, PublishConfig())
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r2"
    run3 = _fake_run(tmp_path / "runs", data, "r3")
    assert registry.publish(run3, reg, PublishConfig(promote=False))["latest"] is None
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r2"
    assert not [p for p in (reg / "tiny" / "biased-mf").iterdir() if p.name.startswith(".")]


def test_republishing_a_run_is_refused(data: Path, tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs", data, "r1")
    registry.publish(run, tmp_path / "reg", PublishConfig())
    with pytest.raises(ConfigError, match="already exists"):
        registry.publish(run, tmp_path / "reg", PublishConfig())


def test_tampered_artifact_fails_verification(data: Path, tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs", data, "r1")
    artifact = Path(registry.publish(run, tmp_path / "reg", PublishConfig())["artifact"])
    (artifact / schema.MODEL_FILE).write_bytes(b"evil")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        registry.verify(artifact)


@pytest.mark.parametrize("run_id", ["../escape", ".hidden", "a/b", ""])
def test_unsafe_names_are_rejected(data: Path, tmp_path: Path, run_id: str) -> None:
    with pytest.raises(DatasetError, match="run id"):
        registry.artifact_dir(tmp_path / "reg", "tiny", "biased-mf", run_id)


def test_unevaluated_run_is_refused(data: Path, tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "runs", data, "r1")
    (run / schema.METRICS_FILE).unlink()
    with pytest.raises(DatasetError, match="cfpipe evaluate"):
        registry.publish(run, tmp_path / "reg", PublishConfig())
    assert not (tmp_path / "reg").exists()
