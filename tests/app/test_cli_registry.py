"""The registry commands through the CLI: models list/show, predict, recommend, publish."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cflib import registry, schema
from cflib.config import PublishConfig
from cflib.registry.serving import open_artifact
from flows.app.cli import main
from tests._artifacts import ingest_tiny, make_run
from tests._prefect_api import cli_env
from tests.conftest import write_netflix


@pytest.fixture(scope="module", autouse=True)
def _prefect_logging() -> None:
    """Set up Prefect's logging first, on pytest's own stderr.

    Set up inside ``main`` with stderr redirected, its reset of the logging handlers
    would close absl's handler and with it pytest's capture file.
    """
    from prefect.logging.configuration import setup_logging

    setup_logging()


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two runs of one model; r2 is worse and not promoted."""
    root = tmp_path_factory.mktemp("cli")
    data = ingest_tiny(write_netflix(root / "netflix"), root / "data")
    out = root / "reg"
    registry.publish(make_run(root / "runs", data, "r1", rmse=0.8), out, PublishConfig())
    registry.publish(make_run(root / "runs", data, "r2", rmse=0.9, seed=1), out, PublishConfig())
    return out


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)``'s status, stdout and stderr.

    Not through capsys, whose stream is closed after each test: Prefect's console
    handler may keep writing to the stream it was given.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_models_list(reg: Path) -> None:
    code, out, _ = _run(["models", "list", "--registry", str(reg)])
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["dataset", "model", "run", "id"]
    assert rows[0].split()[:4] == ["tiny", "biased-mf", "r1", "0.8000"]
    assert rows[0].endswith("latest") and not rows[1].endswith("latest")
    assert rows[1].split()[:4] == ["tiny", "biased-mf", "r2", "0.9000"]


def test_models_show(reg: Path) -> None:
    code, out, _ = _run(["models", "show", "tiny/biased-mf/r2", "--registry", str(reg)])
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines() if "  " in line)
    assert fields["latest"].strip() == "no"
    n_files = len(registry.read_info(reg / "tiny" / "biased-mf" / "r2")["files"])
    assert f"ok ({n_files} files)" in out
    assert "worse than latest r1's 0.8000" in out and "tensorflow 2." in out
    code, out, _ = _run(["models", "show", str(reg / "tiny" / "biased-mf" / "latest")])
    assert code == 0 and "run id            r1" in out


def test_predict_and_recommend(reg: Path) -> None:
    art = open_artifact(reg / "tiny" / "biased-mf" / "latest")
    code, out, _ = _run(["predict", "--model", "tiny/biased-mf/latest", "--registry", str(reg),
                         "30", "3"])  # fmt: skip
    assert code == 0 and out.strip() == f"{art.predict(30, 3):.4f}"

    code, out, _ = _run(["recommend", "--model", str(art.path), "--user", "60", "-k", "2"])
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["rank", "item", "rating", "title"] and len(rows) == 2
    best = art.recommend(60, k=2)
    assert rows[0].split()[:3] == ["1", str(best[0]["item"]), f"{best[0]['rating']:.3f}"]
    titles = {
        1: "Dinosaur Planet (2003)",
        2: "Isle of Man TT, 2004 Review",
        3: "Caf\xe9 Noir (1997)",
    }
    assert rows[0].endswith(titles[best[0]["item"]])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predict", "--model", "{art}", "11", "1"], "user 11: not in the model's user map"),
        (["predict", "--model", "{art}", "10", "9"], "item 9: not in the model's item map"),
        (["recommend", "--model", "{art}", "--user", "99"], "user 99: not in the model's"),
        (["recommend", "--model", "{art}", "--user", "10", "-k", "0"], "-k 0"),
        (["predict", "--model", "../../etc", "--registry", "{reg}", "1", "1"], "model reference"),
        (["models", "show", "tiny/biased-mf/../../x", "--registry", "{reg}"], "model reference"),
        (["models", "show", "{reg}/tiny"], "not a published artifact"),
        (["models", "list", "--registry", "{reg}/nope"], "not a directory"),
    ],
)
def test_bad_input_exits_2_with_one_line(reg: Path, args: list[str], needle: str) -> None:
    art = str(reg / "tiny" / "biased-mf" / "r1")
    argv = [a.replace("{art}", art).replace("{reg}", str(reg)) for a in args]
    code, out, err = _run(argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("cfpipe: error: ") and needle in lines[0]


def test_tampered_artifact_and_escaping_link_exit_2(reg: Path, tmp_path: Path) -> None:
    import shutil

    model_dir = tmp_path / "reg" / "tiny" / "biased-mf"
    shutil.copytree(reg / "tiny" / "biased-mf", model_dir, symlinks=True)
    seen = model_dir / "r1" / registry.SEEN_FILE
    seen.write_bytes(seen.read_bytes()[:-1] + b"\0")
    code, _, err = _run(["predict", "--model", str(model_dir / "r1"), "10", "1"])
    assert code == 2 and "seen.parquet: checksum mismatch" in err.strip()

    (model_dir / "latest").unlink()
    os.symlink(str(reg / "tiny" / "biased-mf" / "r2"), model_dir / "latest")
    code, _, err = _run(["recommend", "--model", str(model_dir / "latest"), "--user", "10"])
    assert code == 2 and "outside" in err and len(err.strip().splitlines()) == 1


def test_cli_error_is_one_line_in_a_fresh_process(reg: Path, tmp_path: Path) -> None:
    argv = ["predict", "--model", str(reg / "tiny" / "biased-mf" / "latest"), "77", "1"]
    env = cli_env(tmp_path, "http://127.0.0.1:9/api")  # Never reached.
    proc = subprocess.run(
        [sys.executable, "-m", "flows.app", *argv], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"cfpipe: error: user 77: not in the model's user map ({reg / 'tiny' / 'biased-mf' / 'r1'})"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "--model", "{art}", "30", "3"],
        ["recommend", "--model", "{art}", "--user", "60", "-k", "2"],
        ["models", "show", "{art}"],
        ["models", "list", "--registry", "{reg}"],
        ["--help"],
        ["train", "--help"],
        ["run", "--help"],
    ],
)
def test_commands_that_run_no_flow_import_neither_prefect_nor_tensorflow(
    reg: Path, tmp_path: Path, argv: list[str]
) -> None:
    """The real command in a fresh process: what it imported, from ``-X importtime``."""
    art = reg / "tiny" / "biased-mf" / "latest"
    argv = [a.replace("{art}", str(art)).replace("{reg}", str(reg)) for a in argv]
    env = cli_env(tmp_path, "http://127.0.0.1:9/api")  # Never reached.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.app", *argv],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"typer", "cflib", "flows"} <= imported  # the list is the real one
    assert not imported & {"prefect", "tensorflow", "keras", "sqlalchemy", "fastapi"}
    if argv[0] == "predict":
        assert proc.stdout.strip() == f"{open_artifact(art).predict(30, 3):.4f}"


@pytest.mark.slow
def test_cli_publish_reports_the_gate(prefect_harness: None, tmp_path: Path) -> None:
    data = ingest_tiny(write_netflix(tmp_path / "netflix"), tmp_path / "data")
    out = tmp_path / "reg"
    run1 = make_run(tmp_path / "runs", data, "r1", rmse=0.8)
    code, stdout, _ = _run(["publish", str(run1), "--registry", str(out)])
    assert code == 0 and "latest -> " in stdout and "first promoted run" in stdout
    run2 = make_run(tmp_path / "runs", data, "r2", rmse=0.85)
    code, stdout, _ = _run(["publish", str(run2), "--registry", str(out)])
    assert code == 0 and "not promoted: test RMSE 0.8500 is worse" in stdout
    argv = ["publish", str(run2.parent / "r3"), "--registry", str(out), "--promote-tolerance"]
    run3 = make_run(tmp_path / "runs", data, "r3", rmse=0.85)
    code, stdout, _ = _run([*argv, "0.1"])
    assert (
        code == 0 and "latest -> " in stdout and os.readlink(out / "tiny/biased-mf/latest") == "r3"
    )
    info = json.loads((out / "tiny/biased-mf/r3" / registry.ARTIFACT_FILE).read_text())
    assert info["publish_config"] == {"promote": True, "promote_tolerance": 0.1}
    assert run3.is_dir() and (run3 / schema.MODEL_FILE).is_file()
