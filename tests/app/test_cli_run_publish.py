"""`cfpipe run`'s publish options, alone and over a --config file's publish section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cflib.config import PipelineConfig
from flows.app import cli


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[PipelineConfig, Any]]:
    seen: list[tuple[PipelineConfig, Any]] = []

    def fake(source: Path, work: Path, cfg: PipelineConfig, registry: Any) -> None:
        seen.append((cfg, registry))

    monkeypatch.setattr(cli, "_run_pipeline", fake)
    return seen


def test_publish_options_reach_the_pipeline(tmp_path: Path, captured: list[Any]) -> None:
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--registry", "memory://reg"]
    assert cli.main([*argv, "--no-promote", "--promote-tolerance", "0.02"]) == 0
    [(cfg, registry)] = captured
    assert (cfg.publish.promote, cfg.publish.promote_tolerance) == (False, 0.02)
    assert registry == "memory://reg"  # a URL, not mangled into a path


def test_config_file_publish_section_under_typed_options(
    tmp_path: Path, captured: list[Any]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("publish: {promote: false, promote_tolerance: 0.2}\n")
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--promote-tolerance", "0.1"]) == 0
    (file_only, _), (typed, _) = captured
    assert (file_only.publish.promote, file_only.publish.promote_tolerance) == (False, 0.2)
    assert (typed.publish.promote, typed.publish.promote_tolerance) == (False, 0.1)


def test_negative_tolerance_is_one_line_exit_2(
    tmp_path: Path, captured: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--promote-tolerance", "-1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "cfpipe: error: --promote-tolerance -1.0: Input should be greater than or equal to 0"
    ]
    assert captured == []
