"""What a registry holds: one row per published artifact, and which run is ``latest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cflib.errors import CfpipeError, ConfigError
from cflib.logs import stage_logger
from cflib.registry.artifact import ARTIFACT_FILE, read_info
from cflib.registry.store import Location, latest_name, locate

log = stage_logger("registry")


def _subdirs(where: Location) -> list[Location]:
    """Visible subdirectories (not links, not hidden), sorted by name."""
    if where.local:
        names = [p.name for p in Path(where.path).iterdir() if p.is_dir() and not p.is_symlink()]
    else:
        entries = where.fs.ls(where.path, detail=True)
        names = [
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        ]
    return [where.join(n) for n in sorted(names) if not n.startswith(".")]


def _info(run: Location) -> dict[str, Any] | None:
    """``artifact.json`` of ``run``, or None if it is not an artifact."""
    if run.local:
        path = Path(run.path)
        return read_info(path) if (path / ARTIFACT_FILE).is_file() else None
    target = run.join(ARTIFACT_FILE).path
    if not run.fs.isfile(target):
        return None
    try:
        info = json.loads(run.fs.cat_file(target))
    except ValueError as exc:
        raise ConfigError(f"{run.join(ARTIFACT_FILE)}: not valid JSON ({exc})") from None
    return info if isinstance(info, dict) else None


def list_artifacts(registry: str | Path) -> list[dict[str, Any]]:
    """Every artifact under ``registry`` (a path or an fsspec URL), by dataset and model.

    Each row: ``dataset``, ``model``, ``run_id``, ``rmse``, ``published_at``,
    ``latest`` (bool), ``promotion`` (the recorded decision, or None) and ``path``.
    Directories without ``artifact.json`` (a staging directory, say) are skipped, and
    so, with a warning, are unreadable ones.

    Raises:
        ConfigError: ``registry`` is not a directory.
    """
    root = locate(registry)
    exists = Path(root.path).is_dir() if root.local else root.fs.isdir(root.path)
    if not exists:
        raise ConfigError(f"--registry {registry}: not a directory")
    rows = []
    for dataset in _subdirs(root):
        for model in _subdirs(dataset):
            try:
                latest = latest_name(model)
            except CfpipeError as exc:
                log.warning("%s: %s", model, exc)
                latest = None
            for run in _subdirs(model):
                try:
                    info = _info(run)
                except CfpipeError as exc:
                    log.warning("skipping %s: %s", run, exc)
                    continue
                if info is None:
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
