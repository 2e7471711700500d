"""What a rerun of the pipeline skips: a run trained on the same data with the same
config, metrics from the same evaluate config; never a crashed or changed run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cflib import schema
from cflib.config import EvaluateConfig, TrainConfig
from cflib.models.catalog import resolve
from cflib.train import runs

CONFIG = resolve(TrainConfig()).identity()
OTHER = resolve(TrainConfig(learning_rate=0.01)).identity()
EVAL = EvaluateConfig().identity()


def trained_run(
    runs_dir: Path, run_id: str, config: dict[str, Any], *, fingerprint: str = "fp-1"
) -> Path:
    """A run directory as a finished ``cfpipe train`` leaves it (the model a stand-in)."""
    run = runs_dir / run_id
    run.mkdir(parents=True)
    summary = {"run_id": run_id, "config": config, "data_fingerprint": fingerprint}
    (run / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary))
    (run / schema.MODEL_FILE).write_bytes(b"model")
    return run


def evaluated(run: Path, config: dict[str, Any]) -> Path:
    """``run`` as a finished ``cfpipe evaluate`` leaves it."""
    (run / schema.METRICS_FILE).write_text(json.dumps({"rmse": 0.9, "config": config}))
    (run / schema.REPORT_FILE).write_text("# report\n")
    (run / schema.REPORT_HTML_FILE).write_text("<html></html>\n")
    return run


def test_the_run_with_the_same_data_and_config_is_found(tmp_path: Path) -> None:
    old = trained_run(tmp_path, "20261101T000000Z-aaaaaa", CONFIG)
    new = trained_run(tmp_path, "20261102T000000Z-bbbbbb", CONFIG)
    other = trained_run(tmp_path, "20261103T000000Z-cccccc", OTHER)
    assert runs.find_trained(tmp_path, "fp-1", CONFIG) == new  # the newest of two
    assert runs.find_trained(tmp_path, "fp-1", OTHER) == other
    assert old.is_dir()


def test_changed_options_or_data_train_again(tmp_path: Path) -> None:
    trained_run(tmp_path, "20261101T000000Z-aaaaaa", CONFIG)
    assert runs.find_trained(tmp_path, "fp-1", OTHER) is None
    # Any one option counts, even one of the resolved defaults.
    assert runs.find_trained(tmp_path, "fp-1", {**CONFIG, "epochs": CONFIG["epochs"] + 1}) is None
    assert runs.find_trained(tmp_path, "fp-1", {**CONFIG, "embedding_dim": 16}) is None
    assert runs.find_trained(tmp_path, "fp-2", CONFIG) is None
    assert runs.find_trained(tmp_path / "missing", "fp-1", CONFIG) is None


def test_a_tuned_run_is_found_by_its_options_before_the_search(tmp_path: Path) -> None:
    """train.json's ``config`` holds the search's choice; a rerun resolves the options as
    they were asked (``request``), and must find the run by those."""
    run = trained_run(tmp_path, "20261101T000000Z-aaaaaa", {**CONFIG, "embedding_dim": 64})
    summary = json.loads((run / schema.TRAIN_SUMMARY_FILE).read_text())
    (run / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps({**summary, "request": CONFIG}))
    assert runs.find_trained(tmp_path, "fp-1", CONFIG) == run
    assert runs.find_trained(tmp_path, "fp-1", {**CONFIG, "embedding_dim": 64}) is None


def test_a_crashed_training_is_not_taken_for_a_finished_one(tmp_path: Path) -> None:
    # Killed mid-run: checkpoints, no train.json.
    (tmp_path / "20261101T000000Z-aaaaaa" / "checkpoints").mkdir(parents=True)
    # A train.json without its model (deleted since, or a partial copy of the run).
    (trained_run(tmp_path, "20261102T000000Z-bbbbbb", CONFIG) / schema.MODEL_FILE).unlink()
    # A half-written or foreign train.json.
    trained_run(tmp_path, "20261103T000000Z-cccccc", CONFIG)
    (tmp_path / "20261103T000000Z-cccccc" / schema.TRAIN_SUMMARY_FILE).write_text('{"run_id": ')
    trained_run(tmp_path, "20261104T000000Z-dddddd", CONFIG)
    (tmp_path / "20261104T000000Z-dddddd" / schema.TRAIN_SUMMARY_FILE).write_text("[1, 2]")
    assert runs.find_trained(tmp_path, "fp-1", CONFIG) is None
    good = trained_run(tmp_path, "20261031T000000Z-eeeeee", CONFIG)  # older, but complete
    assert runs.find_trained(tmp_path, "fp-1", CONFIG) == good


def test_evaluation_is_skipped_only_for_the_same_config_and_complete_reports(
    tmp_path: Path,
) -> None:
    run = trained_run(tmp_path, "20261101T000000Z-aaaaaa", CONFIG)
    assert not runs.is_evaluated(run, EVAL)  # never evaluated
    evaluated(run, EVAL)
    assert runs.is_evaluated(run, EVAL)
    assert not runs.is_evaluated(run, {**EVAL, "seed": EVAL["seed"] + 1})
    assert not runs.is_evaluated(run, EvaluateConfig(batch_size=1024).model_dump(mode="json"))
    # Evaluation crashed after metrics.json, before the HTML report.
    (run / schema.REPORT_HTML_FILE).unlink()
    assert not runs.is_evaluated(run, EVAL)
    evaluated(run, EVAL)
    (run / schema.METRICS_FILE).write_text('{"rmse": ')  # half-written
    assert not runs.is_evaluated(run, EVAL)


def _interrupted_run(runs_dir: Path, run_id: str, config: dict[str, Any], fp: str) -> Path:
    """A run directory as a training stopped before its end leaves it."""
    ckpt = runs_dir / run_id / runs.CHECKPOINT_DIR
    ckpt.mkdir(parents=True)
    started = {"run_id": run_id, "config": config, "data_fingerprint": fp}
    (ckpt / runs.RUN_FILE).write_text(json.dumps(started))
    return ckpt.parent


def test_an_interrupted_training_of_the_same_data_and_config_is_resumed(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    assert runs.find_interrupted(runs_dir, "fp-1", CONFIG) is None
    older = _interrupted_run(runs_dir, "20261101T000000Z-aaaaaa", CONFIG, "fp-1")
    _interrupted_run(runs_dir, "20261102T000000Z-bbbbbb", OTHER, "fp-1")
    _interrupted_run(runs_dir, "20261103T000000Z-cccccc", CONFIG, "fp-2")
    assert runs.find_interrupted(runs_dir, "fp-1", CONFIG) == older
    newer = _interrupted_run(runs_dir, "20261104T000000Z-dddddd", CONFIG, "fp-1")
    assert runs.find_interrupted(runs_dir, "fp-1", CONFIG) == newer
    # Once it has finished, it is a trained run, not an interrupted one.
    (newer / schema.TRAIN_SUMMARY_FILE).write_text("{}")
    assert runs.find_interrupted(runs_dir, "fp-1", CONFIG) == older
    (older / runs.CHECKPOINT_DIR / runs.RUN_FILE).write_text("{not json")
    assert runs.find_interrupted(runs_dir, "fp-1", CONFIG) is None


def test_a_time_limit_is_not_part_of_a_runs_identity(tmp_path: Path) -> None:
    """A rerun with another --timeout (or none) skips, or resumes, the same run."""
    limited = resolve(TrainConfig(timeout=30)).identity()
    assert limited == CONFIG and "timeout" not in limited
    run = trained_run(tmp_path, "20261101T000000Z-aaaaaa", limited)
    assert runs.find_trained(tmp_path, "fp-1", CONFIG) == run
    evaluated(run, EvaluateConfig(timeout=5).identity())
    assert runs.is_evaluated(run, EvaluateConfig().identity())
