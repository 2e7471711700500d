"""Registry roots as fsspec URLs: memory:// for a filesystem without renames, file://."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from cflib import registry
from cflib.config import PublishConfig
from cflib.errors import ConfigError
from cflib.registry import ArtifactError, RefError
from cflib.registry.listing import list_artifacts
from cflib.registry.serving import open_artifact
from flows.app.cli import main
from tests._artifacts import ingest_tiny, make_run
from tests.conftest import write_netflix


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fsspec")
    return ingest_tiny(write_netflix(root / "netflix"), root / "data")


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh registry root in fsspec's in-process memory filesystem."""
    name = f"reg-{uuid.uuid4().hex[:8]}"
    yield f"memory://{name}"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def test_publish_to_memory_then_list_and_score(data: Path, mem: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    run1 = make_run(tmp_path / "runs", data, "r1", rmse=0.8)
    result = registry.publish(run1, mem, PublishConfig())
    assert result["artifact"] == f"{mem}/tiny/biased-mf/r1"
    assert result["latest"] == f"{mem}/tiny/biased-mf/latest"
    model_dir = mem.removeprefix("memory:/") + "/tiny/biased-mf"
    assert fs.cat_file(f"{model_dir}/latest") == b"r1"
    info = json.loads(fs.cat_file(f"{model_dir}/r1/artifact.json"))
    assert sorted(f.removeprefix(f"{model_dir}/r1/") for f in fs.find(f"{model_dir}/r1")) == sorted(
        [*info["files"], "artifact.json"]
    )

    worse = registry.publish(
        make_run(tmp_path / "runs", data, "r2", rmse=0.9), mem, PublishConfig()
    )
    assert worse["latest"] is None and "worse than latest r1" in worse["promotion"]["reason"]
    assert fs.cat_file(f"{model_dir}/latest") == b"r1"

    rows = list_artifacts(mem)
    assert [(r["run_id"], r["latest"]) for r in rows] == [("r1", True), ("r2", False)]

    remote = open_artifact("tiny/biased-mf/latest", mem)
    assert remote.source == f"{mem}/tiny/biased-mf/r1"
    local = open_artifact(registry.publish(run1, tmp_path / "reg", PublishConfig())["artifact"])
    assert remote.predict(30, 3) == local.predict(30, 3)
    assert remote.recommend(60, 3) == local.recommend(60, 3)
    assert remote.path.is_dir()
    remote.close()
    assert not remote.path.exists()  # the downloaded copy is removed

    with pytest.raises(ConfigError, match="already exists"):
        registry.publish(run1, mem, PublishConfig())


def test_tampered_remote_artifact_and_escaping_latest(data: Path, mem: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    registry.publish(make_run(tmp_path / "runs", data, "r1"), mem, PublishConfig())
    model_dir = mem.removeprefix("memory:/") + "/tiny/biased-mf"
    fs.pipe_file(f"{model_dir}/r1/report.md", b"# edited\n")
    with pytest.raises(ArtifactError, match="report.md: checksum mismatch"):
        open_artifact(f"{mem}/tiny/biased-mf/r1")
    fs.pipe_file(f"{model_dir}/latest", b"../../elsewhere")
    with pytest.raises(RefError, match="outside"):
        open_artifact("tiny/biased-mf/latest", mem)
    with pytest.raises(RefError, match="model reference"):
        open_artifact("tiny/../r1", mem)


def test_failed_upload_leaves_no_artifact_and_latest_unmoved(
    data: Path, mem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = fsspec.filesystem("memory")
    registry.publish(make_run(tmp_path / "runs", data, "r1", rmse=0.9), mem, PublishConfig())
    real_put = type(fs).put_file
    calls = []

    def flaky_put(self, lpath, rpath, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(rpath)
        if len(calls) == 3:
            raise OSError("connection reset")
        return real_put(self, lpath, rpath, *args, **kwargs)

    monkeypatch.setattr(type(fs), "put_file", flaky_put)
    with pytest.raises(OSError, match="connection reset"):
        registry.publish(make_run(tmp_path / "runs", data, "r2", rmse=0.5), mem, PublishConfig())
    model_dir = mem.removeprefix("memory:/") + "/tiny/biased-mf"
    assert not fs.exists(f"{model_dir}/r2")
    assert fs.cat_file(f"{model_dir}/latest") == b"r1"


def test_file_url_is_a_local_registry(data: Path, tmp_path: Path) -> None:
    result = registry.publish(
        make_run(tmp_path / "runs", data, "r1"), f"file://{tmp_path}/reg", PublishConfig()
    )
    assert result["artifact"] == f"{tmp_path}/reg/tiny/biased-mf/r1"
    assert os.readlink(tmp_path / "reg" / "tiny" / "biased-mf" / "latest") == "r1"
    assert open_artifact(f"file://{tmp_path}/reg/tiny/biased-mf/latest").info["run_id"] == "r1"


def test_cli_on_a_memory_registry(data: Path, mem: str, tmp_path: Path) -> None:
    from prefect.logging.configuration import setup_logging

    setup_logging()  # On pytest's stderr, before main (see tests/app/test_cli_registry.py).
    registry.publish(make_run(tmp_path / "runs", data, "r1", rmse=0.8), mem, PublishConfig())
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["models", "list", "--registry", mem]) == 0
        assert main(["predict", "--model", f"{mem}/tiny/biased-mf/latest", "30", "3"]) == 0
        assert main(["models", "show", "tiny/biased-mf/latest", "--registry", mem]) == 0
        assert main(["predict", "--model", f"{mem}/tiny/biased-mf/nope", "30", "3"]) == 2
    lines = out.getvalue().splitlines()
    assert lines[1].split()[:4] == ["tiny", "biased-mf", "r1", "0.8000"]
    assert float(lines[2]) == pytest.approx(
        open_artifact(f"{mem}/tiny/biased-mf/r1").predict(30, 3), abs=1e-4
    )
    assert f"path              {mem}/tiny/biased-mf/r1" in out.getvalue()
    assert err.getvalue().strip() == (
        f"cfpipe: error: {mem}/tiny/biased-mf/nope: not a published artifact (no artifact.json)"
    )


def test_an_unknown_url_protocol_is_a_config_error() -> None:
    from cflib.registry.store import locate

    with pytest.raises(ConfigError, match="nosuchfs://reg: not a usable filesystem URL"):
        locate("nosuchfs://reg")


def test_a_password_in_a_registry_url_is_refused_and_not_repeated(
    netflix_dir: Path, tmp_path: Path
) -> None:
    """It would be recorded with the URL (the flow run's parameters, logs): refused
    before any flow starts or anything connects, with the password masked."""
    url = "ftp://cf:hunter2-SECRET@127.0.0.1:9/reg"
    masked = "ftp://cf:***@127.0.0.1:9/reg"
    commands = [
        ["run", str(netflix_dir), "--out", str(tmp_path / "w"), "--registry", url],
        ["publish", str(tmp_path), "--registry", url],
        ["models", "list", "--registry", url],
        ["predict", "--model", f"simplecache::{url}/tiny/biased-mf/latest", "30", "3"],
    ]
    for argv in commands:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        line = err.getvalue().strip()
        assert code == 2 and "\n" not in line, (argv, line)
        assert masked in line and "a password in the URL" in line, (argv, line)
        assert "hunter2" not in line
    assert not (tmp_path / "w").exists()


def test_find_published_in_memory(data: Path, mem: str, tmp_path: Path) -> None:
    assert registry.find_published(mem, "tiny", "biased-mf", "r1") is None
    registry.publish(make_run(tmp_path / "runs", data, "r1"), mem, PublishConfig())
    found = registry.find_published(mem, "tiny", "biased-mf", "r1")
    assert found is not None and found["latest"] == f"{mem}/tiny/biased-mf/latest"
    fs = fsspec.filesystem("memory")
    fs.pipe_file(mem.removeprefix("memory:/") + "/tiny/biased-mf/r1/report.md", b"x")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        registry.find_published(mem, "tiny", "biased-mf", "r1")


def test_upload_order_artifact_json_last_then_read_back_then_latest(
    data: Path, mem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file is up before ``artifact.json`` (so a reader that finds it finds them
    all, and one that comes earlier finds no artifact), each is read back after it, and
    ``latest`` moves last."""
    fs = fsspec.filesystem("memory")
    cls = type(fs)
    model_dir = mem.removeprefix("memory:/") + "/tiny/biased-mf"
    artifact = f"{model_dir}/r1"
    events: list[tuple[str, str]] = []
    real_put, real_open, real_pipe = cls.put_file, cls.open, cls.pipe_file

    def rel(path: str) -> str:
        return path.removeprefix(f"{artifact}/") if path.startswith(artifact) else path

    def put_file(self, lpath, rpath, *args, **kwargs):  # type: ignore[no-untyped-def]
        # What a reader arriving now would find: the files already up, and no artifact
        # before artifact.json itself.
        up = sorted(rel(p) for p in fs.find(artifact)) if fs.exists(artifact) else []
        events.append(("put", rel(rpath)))
        events.append(("there", ",".join(up)))
        with pytest.raises(ArtifactError, match="not a published artifact"):
            open_artifact(f"{mem}/tiny/biased-mf/r1")
        return real_put(self, lpath, rpath, *args, **kwargs)

    def open_(self, path, mode="rb", *args, **kwargs):  # type: ignore[no-untyped-def]
        if mode == "rb" and path.startswith(f"{artifact}/"):
            events.append(("read", rel(path)))
        return real_open(self, path, mode, *args, **kwargs)

    def pipe_file(self, path, value, *args, **kwargs):  # type: ignore[no-untyped-def]
        events.append(("pipe", rel(path)))
        return real_pipe(self, path, value, *args, **kwargs)

    monkeypatch.setattr(cls, "put_file", put_file)
    monkeypatch.setattr(cls, "open", open_)
    monkeypatch.setattr(cls, "pipe_file", pipe_file)
    registry.publish(make_run(tmp_path / "runs", data, "r1"), mem, PublishConfig())
    monkeypatch.undo()

    info = json.loads(fs.cat_file(f"{artifact}/artifact.json"))
    listed = sorted(info["files"])
    puts = [name for kind, name in events if kind == "put"]
    assert puts[-1] == "artifact.json" and sorted(puts[:-1]) == listed
    # When artifact.json went up, every file it lists was there already.
    [there] = [events[i + 1][1] for i, e in enumerate(events) if e == ("put", "artifact.json")]
    assert there.split(",") == listed
    # The read-back covers every listed file, after the whole upload; then latest.
    last_put = events.index(("put", "artifact.json"))
    reads = [i for i, (kind, _) in enumerate(events) if kind == "read"]
    assert reads and min(reads) > last_put
    assert sorted(events[i][1] for i in reads) == listed
    pipes = [i for i, (kind, _) in enumerate(events) if kind == "pipe"]
    assert [events[i] for i in pipes] == [("pipe", f"{model_dir}/latest")]
    assert pipes[0] > max(reads)
    assert fs.cat_file(f"{model_dir}/latest") == b"r1"


def test_a_corrupted_upload_fails_the_publish_and_keeps_latest(
    data: Path, mem: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-back checksum: a file changed on its way up (here one flipped byte of
    the model) fails the publish naming the file, removes the partial artifact and
    leaves ``latest`` where it was."""
    fs = fsspec.filesystem("memory")
    registry.publish(make_run(tmp_path / "runs", data, "r1", rmse=0.9), mem, PublishConfig())
    real_put = type(fs).put_file

    def damaging_put(self, lpath, rpath, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not rpath.endswith("/model.keras"):
            return real_put(self, lpath, rpath, *args, **kwargs)
        damaged = bytearray(Path(lpath).read_bytes())
        damaged[len(damaged) // 2] ^= 0x01
        self.pipe_file(rpath, bytes(damaged))

    monkeypatch.setattr(type(fs), "put_file", damaging_put)
    run2 = make_run(tmp_path / "runs", data, "r2", rmse=0.5)  # better: it would be promoted
    with pytest.raises(ArtifactError) as caught:
        registry.publish(run2, mem, PublishConfig())
    assert str(caught.value) == (
        f"{mem}/tiny/biased-mf/r2/model.keras: checksum mismatch after upload"
    )
    model_dir = mem.removeprefix("memory:/") + "/tiny/biased-mf"
    assert not fs.exists(f"{model_dir}/r2")
    assert fs.cat_file(f"{model_dir}/latest") == b"r1"
    assert [r["run_id"] for r in list_artifacts(mem)] == ["r1"]


def test_a_chained_url_is_named_as_given() -> None:
    """What publish and ``models list`` print for a chained URL opens again: the outer
    filesystem's protocol alone (``simplecache://...``) names no target."""
    from cflib.registry.store import locate

    root = locate("simplecache::memory://reg-chain")
    where = root.join("tiny", "biased-mf", "r1")
    assert str(where) == "simplecache::memory:///reg-chain/tiny/biased-mf/r1"
    again = locate(str(where))
    assert (type(again.fs), again.path) == (type(root.fs), where.path)
    assert str(where.parent) == "simplecache::memory:///reg-chain/tiny/biased-mf"
    assert str(locate("memory://reg-chain").join("r1")) == "memory://reg-chain/r1"
