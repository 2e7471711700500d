"""The README's headline: the demo's model is within 5% of the planted model's RMSE.

``cfpipe demo`` generates ``DEMO_SYNTH`` and runs the pipeline with every default. The
same stages run here in-process, without Prefect or Dask (whose output does not depend
on the number of shards or workers: see test_ingest), on the same data and options.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cflib.config import EvaluateConfig, IngestConfig, TrainConfig
from cflib.evaluate.scoring import evaluate
from cflib.ingest.parallel import ingest_local
from cflib.synth import generate_netflix
from cflib.train.loop import train
from flows.app.cli import DEMO_SYNTH

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _claimed_margin() -> float:
    """The "within N% of the planted model's RMSE" of the README's opening, as a ratio."""
    match = re.search(r"within (\d+)% of the planted\s+model's RMSE", README)
    assert match, "the README no longer states how close the demo gets to the planted model"
    return 1 + int(match.group(1)) / 100


def test_the_readme_example_output_keeps_the_claim() -> None:
    rows = dict(
        re.findall(r"^(biased-mf \(this run\)|oracle \(planted model\))\s+([0-9.]+)", README, re.M)
    )
    assert len(rows) == 2, rows
    assert float(rows["biased-mf (this run)"]) <= _claimed_margin() * float(
        rows["oracle (planted model)"]
    )


@pytest.mark.slow
def test_demo_settings_come_within_the_claimed_margin_of_the_planted_model(
    tmp_path: Path,
) -> None:
    generate_netflix(tmp_path / "source", DEMO_SYNTH)
    ingest_local(tmp_path / "source", tmp_path / "data", IngestConfig(name="netflix-demo"))
    train(tmp_path / "data", tmp_path / "run", TrainConfig())
    metrics = evaluate(tmp_path / "run", EvaluateConfig())
    truth = json.loads((tmp_path / "source" / "truth.json").read_text())
    assert metrics["oracle_rmse"] == truth["oracle_rmse_probe"]
    # 0.8231 against 0.7861 (4.7%) on this stack (0.8240 without the refit), and the
    # bias baseline 0.9063.
    assert metrics["rmse"] <= _claimed_margin() * metrics["oracle_rmse"]
    assert metrics["rmse"] < metrics["baselines"]["user_item_bias"]["rmse"] - 0.05
