"""Publishing runs: atomic copies, checksums, the SavedModel and seen pairs, refs, names."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from cflib import registry, schema
from cflib.config import PublishConfig
from cflib.errors import ConfigError, DatasetError
from cflib.registry import ArtifactError, RefError, promote
from tests._artifacts import ingest_tiny, make_run
from tests.conftest import held_elsewhere, write_netflix


class _LogSignal(logging.Handler):
    """Sets an event when a log record containing ``text`` is emitted (from any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text, self.seen = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()

    def wait(self, timeout: float) -> bool:
        return self.seen.wait(timeout)


@pytest.fixture
def data(netflix_dir: Path, tmp_path: Path) -> Path:
    return ingest_tiny(netflix_dir, tmp_path / "data")


def test_publish_copies_exports_verifies_and_points_latest(data: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    run = make_run(tmp_path / "runs", data, "r1")
    result = registry.publish(run, reg, PublishConfig())
    artifact = reg / "tiny" / "biased-mf" / "r1"
    assert result["artifact"] == str(artifact)
    assert (artifact / schema.MODEL_FILE).read_bytes() == (run / schema.MODEL_FILE).read_bytes()
    for name in (schema.USER_MAP_FILE, schema.ITEM_MAP_FILE, "data_manifest.json"):
        assert (artifact / name).read_bytes() == (
            data / (schema.MANIFEST_FILE if name == "data_manifest.json" else name)
        ).read_bytes()
    info = registry.verify(artifact)
    assert info["run_id"] == "r1" and info["rmse"] == 0.9
    assert (artifact / "report.html").read_text() == "<h1>report</h1>\n"
    files = set(info["files"])
    assert {"model.keras", "train.json", "metrics.json", "report.md", "seen.parquet"} <= files
    assert {"saved_model/saved_model.pb", "saved_model/variables/variables.index"} <= files
    assert {"scoring/scoring.json", "scoring/user_embedding.npy", "scoring/item_bias.npy"} <= files
    assert info["scoring"]["kind"] == "biased-mf" and info["format_version"] == 3
    assert info["versions"]["tensorflow"] and info["versions"]["keras"]
    assert {"cfpipe", "pyarrow", "prefect"} <= set(info["versions"])
    assert info["train_config"]["embedding_dim"] == 4
    assert info["seen"] == {"rows": 8, "splits": ["train", "validation"]}  # 11 minus 3 probe
    assert info["serving"]["fallback"]["item_bias"] is True
    assert info["promotion"]["promoted"] is True
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r1"
    assert result["latest"] == str(reg / "tiny" / "biased-mf" / "latest")

    registry.publish(make_run(tmp_path / "runs", data, "r2"), reg, PublishConfig())
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r2"
    # A publisher killed mid-way (SIGKILL, a --timeout) left its staging directory: the
    # next publish, under the registry's lock, removes it.
    stale = reg / "tiny" / "biased-mf" / ".r9.tmp-0123abcd"
    (stale / "scoring").mkdir(parents=True)
    (stale / "model.keras").write_bytes(b"half")
    run3 = make_run(tmp_path / "runs", data, "r3")
    out = registry.publish(run3, reg, PublishConfig(promote=False))
    assert not stale.exists()
    assert out["latest"] is None and out["promotion"]["reason"] == "--no-promote"
    assert os.readlink(reg / "tiny" / "biased-mf" / "latest") == "r2"
    assert not [p for p in (reg / "tiny" / "biased-mf").iterdir() if p.name.startswith(".")]


def test_a_second_publisher_waits_for_the_first(
    data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the registry's publish lock (a publish under way), a
    publish writes nothing and waits; it completes once the lock is let go."""
    reg = tmp_path / "reg"
    registry.publish(make_run(tmp_path / "runs", data, "r1"), reg, PublishConfig())
    model_dir = reg / "tiny" / "biased-mf"
    before = sorted(p.name for p in model_dir.iterdir())
    # The promotion decision is the first thing done under the lock: record whether the
    # lock had been let go (``released`` is written just before the holder is killed).
    released, decided = tmp_path / "released", threading.Event()
    under_lock: list[bool] = []
    real_decide = promote.decide

    def decide(*args: Any, **kwargs: Any) -> dict[str, Any]:
        under_lock.append(released.exists())
        decided.set()
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(promote, "decide", decide)
    with held_elsewhere(
        "import fcntl, time\n"
        f"fh = open({str(reg / '.publish.lock')!r}, 'a')\n"
        "fcntl.flock(fh, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    ):
        run2 = make_run(tmp_path / "runs", data, "r2")
        done: list[dict[str, Any]] = []
        second = threading.Thread(
            target=lambda: done.append(registry.publish(run2, reg, PublishConfig()))
        )
        waiting = _LogSignal("another publisher holds .publish.lock; waiting")
        logger = logging.getLogger("cflib.publish")
        logger.addHandler(waiting)
        try:
            with caplog.at_level(logging.INFO, logger="cflib.publish"):
                second.start()
                # The signal, not a time window: it logs this just before it blocks on
                # the lock, which the other process holds until the block ends.
                assert waiting.wait(timeout=600), "the second publisher never said it waits"
                assert second.is_alive() and not done
                assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing staged
                # A chance for a publisher that does not wait to show it (a broken lock
                # decides at once); a correct one cannot fail here, however slow.
                decided.wait(timeout=2)
                released.touch()
        finally:
            logger.removeHandler(waiting)
    second.join(timeout=600)
    assert not second.is_alive()
    assert under_lock == [True], "the second publisher decided while the lock was held"
    assert done and done[0]["artifact"] == str(model_dir / "r2")
    assert os.readlink(model_dir / "latest") == "r2"
    registry.verify(model_dir / "r2")


def test_republishing_a_run_is_refused(data: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", data, "r1")
    registry.publish(run, tmp_path / "reg", PublishConfig())
    with pytest.raises(ConfigError, match="already exists"):
        registry.publish(run, tmp_path / "reg", PublishConfig())


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding one published run, r1 (latest); tests change copies of it."""
    root = tmp_path_factory.mktemp("published")
    data = ingest_tiny(write_netflix(root / "netflix"), root / "data")
    registry.publish(make_run(root / "runs", data, "r1"), root / "reg", PublishConfig())
    return root / "reg"


@pytest.fixture
def artifact(published: Path, tmp_path: Path) -> Path:
    """A private copy of the published registry; its artifact r1."""
    shutil.copytree(published, tmp_path / "reg", symlinks=True)
    return tmp_path / "reg" / "tiny" / "biased-mf" / "r1"


def test_tampered_model_fails_verification(artifact: Path) -> None:
    (artifact / schema.MODEL_FILE).write_bytes(b"evil")
    with pytest.raises(ArtifactError, match="model.keras: checksum mismatch"):
        registry.verify(artifact)


def test_tampered_saved_model_fails_verification(artifact: Path) -> None:
    path = artifact / "saved_model" / "variables" / "variables.data-00000-of-00001"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="variables.data.*checksum mismatch"):
        registry.verify(artifact)


def test_missing_or_added_file_fails_verification(artifact: Path) -> None:
    (artifact / "saved_model" / "extra.pb").write_bytes(b"")
    with pytest.raises(ArtifactError, match="extra.pb: not listed"):
        registry.verify(artifact)
    (artifact / "saved_model" / "extra.pb").unlink()
    (artifact / registry.SEEN_FILE).unlink()
    with pytest.raises(ArtifactError, match="seen.parquet: listed in artifact.json but missing"):
        registry.verify(artifact)


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "a/../../b"])
def test_checksum_table_naming_a_path_outside_is_refused(artifact: Path, name: str) -> None:
    info = json.loads((artifact / registry.ARTIFACT_FILE).read_text())
    info["files"][name] = "0" * 64
    (artifact / registry.ARTIFACT_FILE).write_text(json.dumps(info))
    with pytest.raises(ArtifactError, match="outside the artifact"):
        registry.verify(artifact)


@pytest.mark.parametrize("run_id", ["../escape", ".hidden", "a/b", ""])
def test_unsafe_names_are_rejected(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(DatasetError, match="run id"):
        registry.artifact_dir(tmp_path / "reg", "tiny", "biased-mf", run_id)


def test_refs_resolve_under_the_registry(artifact: Path) -> None:
    reg = artifact.parents[2]
    assert registry.resolve("tiny/biased-mf/latest", reg) == artifact
    assert registry.resolve("tiny/biased-mf/r1", reg) == artifact
    assert registry.resolve(artifact.parent / "latest") == artifact
    assert registry.resolve(str(artifact)) == artifact
    with pytest.raises(ArtifactError, match="not a published artifact"):
        registry.resolve("tiny/biased-mf/r9", reg)


@pytest.mark.parametrize("ref", ["../../x", "tiny/../biased-mf/r1", "tiny/biased-mf", "/etc/x/y"])
def test_refs_that_escape_the_registry_are_refused(artifact: Path, ref: str) -> None:
    with pytest.raises(RefError, match="model reference"):
        registry.resolve(ref, artifact.parents[2])


def test_a_linked_dataset_directory_does_not_lead_out(artifact: Path, tmp_path: Path) -> None:
    reg = artifact.parents[2]
    os.symlink(reg / "tiny", reg / "alias")  # inside: fine
    assert registry.resolve("alias/biased-mf/r1", reg) == reg / "alias" / "biased-mf" / "r1"
    os.rename(reg / "tiny", tmp_path / "outside")
    os.symlink(tmp_path / "outside", reg / "tiny")
    with pytest.raises(RefError, match="resolves outside"):
        registry.resolve("tiny/biased-mf/r1", reg)


@pytest.mark.parametrize("target", ["../../elsewhere", "/tmp", ".hidden", ".."])
def test_latest_link_pointing_outside_is_refused(artifact: Path, target: str) -> None:
    link = artifact.parent / "latest"
    link.unlink()
    os.symlink(target, link)
    with pytest.raises(RefError, match="outside"):
        registry.resolve(link)


def test_unevaluated_run_is_refused(data: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", data, "r1")
    (run / schema.METRICS_FILE).unlink()
    with pytest.raises(DatasetError, match="cfpipe evaluate"):
        registry.publish(run, tmp_path / "reg", PublishConfig())
    assert not (tmp_path / "reg").exists()


def test_a_run_whose_dataset_was_rebuilt_is_refused(data: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", data, "r1")
    summary = json.loads((run / schema.TRAIN_SUMMARY_FILE).read_text())
    summary["data_fingerprint"] = "0" * 64
    (run / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary))
    with pytest.raises(DatasetError, match="was trained on; the dataset was rebuilt"):
        registry.publish(run, tmp_path / "reg", PublishConfig())


def test_find_published(artifact: Path) -> None:
    reg = artifact.parents[2]
    found = registry.find_published(reg, "tiny", "biased-mf", "r1")
    assert found is not None and found["artifact"] == str(artifact)
    assert found["latest"] == str(artifact.parent / "latest")
    assert found["promotion"]["promoted"] is True
    assert registry.find_published(reg, "tiny", "biased-mf", "r2") is None
    (artifact / schema.REPORT_FILE).write_text("changed\n")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.find_published(reg, "tiny", "biased-mf", "r1")
