"""The library stays below the app: ``cflib`` imports no Prefect, ``flows`` or ``tasks``,
and the CLI and the flows load no TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def _run(code: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code],
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
