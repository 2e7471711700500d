"""`cfpipe run --config FILE`: the file's options, overridden by the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cflib.config import PipelineConfig
from flows.app import cli


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[PipelineConfig]:
    seen: list[PipelineConfig] = []

    def fake(source: Path, work: Path, cfg: PipelineConfig, registry: Any) -> None:
        seen.append(cfg)

    monkeypatch.setattr(cli, "_run_pipeline", fake)
    return seen


def test_file_options_with_command_line_overrides(
    tmp_path: Path, captured: list[PipelineConfig]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "ingest: {split: temporal, test_fraction: 0.2}\n"
        "train: {epochs: 3, embedding_dim: 16}\nevaluate: {seed: 5}\n"
    )
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main([*argv, "--epochs", "7", "--test-fraction", "0.1"]) == 0
    [cfg] = captured
    assert (cfg.train.epochs, cfg.train.embedding_dim) == (7, 16)  # typed beats file
    assert (cfg.ingest.split, cfg.ingest.test_fraction) == ("temporal", 0.1)
    assert cfg.evaluate.seed == 5 and cfg.train.model == "biased-mf"  # file, then defaults


def test_json_file_works_too(tmp_path: Path, captured: list[PipelineConfig]) -> None:
    path = tmp_path / "cfg.json"
    path.write_text('{"train": {"model": "dot"}}')
    assert (
        cli.main(["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]) == 0
    )
    assert captured[0].train.model == "dot"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: {embeddng_dim: 8}", "train.embeddng_dim: Extra inputs are not permitted"),
        ("trian: {}", "trian: Extra inputs are not permitted"),
        ("train: {epochs: 0}", "train.epochs: Input should be greater than 0"),
        ("- 1\n- 2", "expected a mapping of options"),
        ("train: {epochs: [", "not valid YAML or JSON"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(
    tmp_path: Path,
    captured: list[PipelineConfig],
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main(argv) == 2 and not captured
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cfpipe: error: --config {path}: ")
    assert message in err[0]


def test_missing_config_file(tmp_path: Path, captured: list[PipelineConfig]) -> None:
    missing = tmp_path / "nope.yaml"
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(missing)]
    assert cli.main(argv) == 2 and not captured


def test_the_temporary_server_gets_minutes_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first start migrates a new database: under load that took longer than Prefect's
    20 s default and failed the whole run. A value the user set wins."""
    import os

    from prefect.settings import get_current_settings

    saved = dict(os.environ)  # the other process defaults must not leak into later tests
    try:
        monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
        cli._set_process_defaults()
        assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "180"
        settings = get_current_settings().__class__()  # read from the environment now
        assert settings.server.ephemeral.startup_timeout_seconds == 180
        monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "45")
        cli._set_process_defaults()
        assert os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] == "45"
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_timeout_limits_every_stage_and_the_file_sets_one_per_stage(
    tmp_path: Path, captured: list[PipelineConfig]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("ingest: {seed: 4}\ntrain: {timeout: 600}\nevaluate: {timeout: 5}\n")
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--timeout", "30", "--seed", "3"]) == 0
    assert cli.main(["run", str(tmp_path), "--out", str(tmp_path / "w"), "--timeout", "9"]) == 0
    from_file, typed, alone = captured
    stages = ("ingest", "train", "evaluate", "publish")
    assert [getattr(from_file, s).timeout for s in stages] == [None, 600, 5, None]
    assert [getattr(typed, s).timeout for s in stages] == [30, 30, 30, 30]  # typed beats file
    assert [getattr(alone, s).timeout for s in stages] == [9, 9, 9, 9]
    # --seed is the training's: the file's ingest seed stays.
    assert (typed.train.seed, typed.ingest.seed) == (3, 4)


@pytest.mark.parametrize("value", ["0", "-5"])
@pytest.mark.parametrize("command", ["ingest", "train", "evaluate", "publish", "run"])
def test_a_timeout_out_of_range_is_one_line_naming_it(
    tmp_path: Path,
    captured: list[PipelineConfig],
    capsys: pytest.CaptureFixture[str],
    command: str,
    value: str,
) -> None:
    """Refused before anything starts (no Prefect server: the stage's paths do not exist)."""
    paths = {
        "ingest": [str(tmp_path / "src"), "--out", str(tmp_path / "data")],
        "train": [str(tmp_path / "data"), "--out", str(tmp_path / "run")],
        "evaluate": [str(tmp_path / "run")],
        "publish": [str(tmp_path / "run"), "--registry", str(tmp_path / "reg")],
        "run": [str(tmp_path / "src"), "--out", str(tmp_path / "w")],
    }
    assert cli.main([command, *paths[command], "--timeout", value]) == 2 and not captured
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"cfpipe: error: --timeout {float(value)}: Input should be greater than 0"]


def test_a_timeout_out_of_range_in_the_file_names_the_stage(
    tmp_path: Path, captured: list[PipelineConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("publish: {timeout: 0}\n")
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main(argv) == 2 and not captured
    err = capsys.readouterr().err.strip()
    assert err == f"cfpipe: error: --config {path}: publish.timeout: Input should be greater than 0"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--tune-budget", "0", "--tune-budget 0.0: Input should be greater than 0"),
        ("--tune-budget", "-5", "--tune-budget -5.0: Input should be greater than 0"),
        ("--tune-budget", "1e9", "--tune-budget 1000000000.0: Input should be less than or"),
        ("--patience", "-1", "--patience -1: Input should be greater than or equal to 0"),
    ],
)
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_search_option_out_of_range_is_one_line_naming_it(
    tmp_path: Path,
    captured: list[PipelineConfig],
    capsys: pytest.CaptureFixture[str],
    command: str,
    option: str,
    value: str,
    message: str,
) -> None:
    where = [str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert cli.main([command, *where, option, value]) == 2 and not captured
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"cfpipe: error: {message}"), err


def test_the_search_options_reach_the_pipeline_config(
    tmp_path: Path, captured: list[PipelineConfig]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {tune_budget: 30, tune: true}\n")
    argv = ["run", str(tmp_path), "--out", str(tmp_path / "w"), "--config", str(path)]
    assert cli.main([*argv, "--no-tune"]) == 0
    assert cli.main(argv) == 0
    typed, from_file = captured
    assert (typed.train.tune, typed.train.tune_budget) == (False, 30)  # typed beats file
    assert (from_file.train.tune, from_file.train.tune_budget) == (True, 30)
