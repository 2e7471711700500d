"""What a registry holds: one row per published artifact, and which run is ``latest``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cflib.errors import CfpipeError, ConfigError
from cflib.registry.artifact import ARTIFACT_FILE, LATEST, read_info

log = logging.getLogger(__name__)


def _visible_dirs(path: Path) -> list[Path]:
    return sorted(
        p for p in path.iterdir() if p.is_dir() and not p.is_symlink() and p.name[0] != "."
    )


def latest_run(model_dir: Path) -> str | None:
    """The run id that ``model_dir/latest`` names, or None."""
    link = model_dir / LATEST
    return os.readlink(link) if link.is_symlink() else None


def list_artifacts(registry: Path) -> list[dict[str, Any]]:
    """Every artifact under ``registry``, by dataset, model and publication time.

    Each row: ``dataset``, ``model``, ``run_id``, ``rmse``, ``published_at``,
    ``latest`` (bool), ``promotion`` (the recorded decision, or None) and ``path``.
    Directories without ``artifact.json`` (a staging directory, say) are skipped.

    Raises:
        ConfigError: ``registry`` is not a directory.
    """
    registry = Path(registry)
    if not registry.is_dir():
        raise ConfigError(f"--registry {registry}: not a directory")
    rows = []
    for dataset in _visible_dirs(registry):
        for model in _visible_dirs(dataset):
            latest = latest_run(model)
            for run in _visible_dirs(model):
                if not (run / ARTIFACT_FILE).is_file():
                    continue
                try:
                    info = read_info(run)
                except CfpipeError as exc:
                    log.warning("skipping %s: %s", run, exc)
                    continue
                rows.append(
                    {
                        "dataset": dataset.name,
                        "model": model.name,
                        "run_id": run.name,
                        "rmse": info.get("rmse"),
                        "published_at": info.get("published_at", ""),
                        "latest": run.name == latest,
                        "promotion": info.get("promotion"),
                        "path": str(run),
                    }
                )
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["published_at"], r["run_id"]))
    return rows
