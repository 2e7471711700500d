"""The promotion gate: latest moves only for a run no worse than it on the same data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cflib import registry
from cflib.config import PublishConfig
from cflib.registry.promote import decide
from tests._artifacts import ingest_tiny, make_run


def _latest(model_dir: Path) -> str:
    return os.readlink(model_dir / "latest")


def _promotion(artifact: str) -> dict[str, object]:
    return json.loads((Path(artifact) / registry.ARTIFACT_FILE).read_text())["promotion"]


def test_gate_on_the_same_data(netflix_dir: Path, tmp_path: Path) -> None:
    data = ingest_tiny(netflix_dir, tmp_path / "data")
    reg, runs = tmp_path / "reg", tmp_path / "runs"
    model_dir = reg / "tiny" / "biased-mf"

    first = registry.publish(make_run(runs, data, "r1", rmse=0.90), reg, PublishConfig())
    assert first["promotion"]["reason"] == "first promoted run of this model"

    worse = registry.publish(make_run(runs, data, "r2", rmse=0.95), reg, PublishConfig())
    assert worse["latest"] is None and _latest(model_dir) == "r1"
    assert (model_dir / "r2" / registry.ARTIFACT_FILE).is_file()  # published all the same
    recorded = _promotion(worse["artifact"])
    assert recorded == worse["promotion"]
    assert recorded["promoted"] is False and recorded["previous"] == "r1"
    assert recorded["previous_rmse"] == 0.90 and recorded["tolerance"] == 0.0
    assert "0.9500 is worse than latest r1's 0.9000" in str(recorded["reason"])

    tolerant = PublishConfig(promote_tolerance=0.06)
    within = registry.publish(make_run(runs, data, "r3", rmse=0.95), reg, tolerant)
    assert within["promotion"]["promoted"] and _latest(model_dir) == "r3"
    assert "within 0.06 of latest r1's 0.9000" in within["promotion"]["reason"]

    equal = registry.publish(make_run(runs, data, "r4", rmse=0.95), reg, PublishConfig())
    assert equal["promotion"]["promoted"] and _latest(model_dir) == "r4"


def test_latest_on_other_data_is_replaced_and_the_reason_recorded(
    netflix_dir: Path, tmp_path: Path
) -> None:
    old = ingest_tiny(netflix_dir, tmp_path / "old", validation_fraction=0.2)
    new = ingest_tiny(netflix_dir, tmp_path / "new", validation_fraction=0.3)
    reg, runs = tmp_path / "reg", tmp_path / "runs"
    registry.publish(make_run(runs, old, "r1", rmse=0.5), reg, PublishConfig())
    result = registry.publish(make_run(runs, new, "r2", rmse=0.9), reg, PublishConfig())
    assert result["promotion"]["promoted"] is True
    assert "tested on other data" in result["promotion"]["reason"]
    assert _latest(reg / "tiny" / "biased-mf") == "r2"


@pytest.mark.parametrize(
    ("rmse", "tolerance", "promoted"),
    [(0.80, 0.0, True), (0.8000001, 0.0, False), (0.85, 0.05, True), (0.86, 0.05, False)],
)
def test_decide_thresholds(tmp_path: Path, rmse: float, tolerance: float, promoted: bool) -> None:
    run = tmp_path / "reg" / "d" / "m" / "r1"
    run.mkdir(parents=True)
    info = {"run_id": "r1", "rmse": 0.80, "data_fingerprint": "fp", "files": {}}
    (run / registry.ARTIFACT_FILE).write_text(json.dumps(info))
    os.symlink("r1", run.parent / "latest")
    cfg = PublishConfig(promote_tolerance=tolerance)
    decision = decide(run.parent, rmse=rmse, data_fingerprint="fp", cfg=cfg)
    assert decision["promoted"] is promoted


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="promote_tolerance"):
        PublishConfig(promote_tolerance=-0.1)


@pytest.mark.parametrize(
    ("rmse", "baseline", "promoted"),
    [(0.80, 0.81, True), (0.81, 0.81, False), (1.2812, 1.2627, False), (float("nan"), 0.9, False)],
)
def test_never_promoted_unless_better_than_the_bias_baseline(
    tmp_path: Path, rmse: float, baseline: float, promoted: bool
) -> None:
    # The first run of a model (no latest yet) is gated too: a diverged first training
    # must not become latest.
    decision = decide(
        tmp_path / "reg" / "d" / "m", rmse=rmse, data_fingerprint="fp", cfg=PublishConfig(),
        baseline_rmse=baseline,
    )  # fmt: skip
    assert decision["promoted"] is promoted
    if not promoted:
        assert decision["reason"] == (
            f"test RMSE {rmse:.4f} is not better than the user + item bias baseline {baseline:.4f}"
        )


def test_publish_keeps_latest_on_a_model_worse_than_the_bias_baseline(
    netflix_dir: Path, tmp_path: Path
) -> None:
    data = ingest_tiny(netflix_dir, tmp_path / "data")
    reg, runs = tmp_path / "reg", tmp_path / "runs"
    model_dir = reg / "tiny" / "biased-mf"
    good = make_run(runs, data, "r1", rmse=0.90, bias_baseline=0.95)
    assert registry.publish(good, reg, PublishConfig())["promotion"]["promoted"]
    # Better than latest, but not than the biases on its own split: published, not promoted.
    bad = make_run(runs, data, "r2", rmse=0.85, bias_baseline=0.80)
    result = registry.publish(bad, reg, PublishConfig(promote_tolerance=0.5))
    assert result["latest"] is None and _latest(model_dir) == "r1"
    assert (model_dir / "r2" / registry.ARTIFACT_FILE).is_file()
    assert _promotion(result["artifact"])["reason"] == (
        "test RMSE 0.8500 is not better than the user + item bias baseline 0.8000"
    )
