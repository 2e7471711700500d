"""The library stays below the app: ``cflib`` imports no Prefect, ``flows`` or ``tasks``,
and the CLI and the flows load no TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Every module of cflib, imported in a fresh interpreter where prefect, flows and tasks
# cannot be imported.
BLOCKED_IMPORT = r"""
import importlib, json, pkgutil, sys

BLOCKED = ("prefect", "prefect_dask", "flows", "tasks")

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"cflib imported {name}")
        return None

sys.meta_path.insert(0, Blocked())
import cflib

names = ["cflib"]
for info in pkgutil.walk_packages(cflib.__path__, "cflib."):
    importlib.import_module(info.name)
    names.append(info.name)
print(json.dumps(names))
"""

# What the `cfpipe` process and a flow run's process import before any stage runs.
APP_IMPORTS = r"""
import json, sys
import flows.app.cli, flows.app.deployments, flows.pipeline, flows.compare
import cflib.config, cflib.models.catalog, cflib.train.preflight
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))))
"""


# Scoring a saved model, as evaluation, publishing and serving do: no training code.
SCORING_LOAD = r"""
import json, sys
import numpy as np
from cflib.models.io import load_model
model = load_model(sys.argv[1])
model.predict_on_batch({"user": np.array([0], np.int32), "item": np.array([1], np.int32)})
print(json.dumps(sorted(m for m in sys.modules if m.startswith("cflib.train"))))
"""


def _run(code: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: list[str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_cflib_imports_without_prefect_flows_or_tasks() -> None:
    names = _run(BLOCKED_IMPORT)
    # Every stage's package was walked, not just the top.
    for stage in ("sources", "ingest", "data", "models", "train", "evaluate", "registry"):
        assert f"cflib.{stage}" in names
    assert "cflib.train.loop" in names and "cflib.registry.serving" in names


def test_the_cli_and_the_flows_load_no_tensorflow() -> None:
    assert _run(APP_IMPORTS) == []


def test_a_trained_model_loads_for_scoring_without_the_training_code(tmp_path: Path) -> None:
    from cflib.config import TrainConfig
    from cflib.models.catalog import build_model, resolve
    from cflib.models.io import save_model
    from cflib.models.losses import squared_error
    from cflib.train.optim import make_optimizer

    cfg = resolve(TrainConfig(embedding_dim=2))
    model = build_model(cfg, n_users=3, n_items=2, global_mean=3.5)
    assert cfg.learning_rate is not None
    # Its compile config names SparseAdagrad, which only the training code registers.
    model.compile(optimizer=make_optimizer(cfg, cfg.learning_rate, 1), loss=squared_error)
    save_model(model, tmp_path / "model.keras")
    assert _run(SCORING_LOAD, str(tmp_path / "model.keras")) == []
