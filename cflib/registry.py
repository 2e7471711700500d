"""The model registry: versioned artifacts under ``REG/<dataset>/<model>/<run-id>/``.

An artifact holds everything needed to score raw ids without the training data: the
Keras model file, the id maps, the configs, the metrics, the report and
``artifact.json`` with a sha256 per file, checked after every copy.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cflib import runs, schema
from cflib.config import PublishConfig
from cflib.dataset import load_manifest
from cflib.errors import DatasetError
from cflib.fsutil import atomic_dir, sha256_file

ARTIFACT_FILE = "artifact.json"
LATEST = "latest"
_RUN_FILES = (
    schema.MODEL_FILE,
    schema.TRAIN_SUMMARY_FILE,
    schema.METRICS_FILE,
    schema.REPORT_FILE,
)
_DATA_FILES = (schema.USER_MAP_FILE, schema.ITEM_MAP_FILE, schema.MANIFEST_FILE)


def artifact_dir(registry: Path, dataset: str, model: str, run_id: str) -> Path:
    """Where one run is published; every component is checked to stay under ``registry``."""
    parts = [
        runs.check_name(dataset, "dataset name"),
        runs.check_name(model, "model name"),
        runs.check_name(run_id, "run id"),
    ]
    return Path(registry).joinpath(*parts)


def verify(artifact: Path) -> dict[str, Any]:
    """Check every file of an artifact against ``artifact.json``.

    Raises:
        DatasetError: a file is missing or its checksum does not match.
    """
    info = runs.read_json(artifact / ARTIFACT_FILE, f"{artifact} is not a published artifact")
    for name, digest in info["files"].items():
        path = artifact / name
        if not path.is_file():
            raise DatasetError(f"{path}: listed in {ARTIFACT_FILE} but missing")
        if sha256_file(path) != digest:
            raise DatasetError(f"{path}: checksum mismatch; the artifact is corrupt or tampered")
    return info


def _point_latest(model_dir: Path, run_id: str) -> None:
    """Swap the ``latest`` symlink atomically (a new link renamed over the old one)."""
    tmp = model_dir / f".{LATEST}.{uuid.uuid4().hex[:8]}"
    os.symlink(run_id, tmp)
    os.replace(tmp, model_dir / LATEST)


def publish(run: Path, registry: Path, cfg: PublishConfig) -> dict[str, Any]:
    """Copy an evaluated run into the registry and, if asked, point ``latest`` at it.

    Args:
        run: the run directory (trained and evaluated).
        registry: the registry root; created if missing.
        cfg: publish options.

    Returns:
        ``{"artifact": path, "latest": path or None, "run_id", "dataset", "model"}``.
    """
    run, registry = Path(run), Path(registry)
    summary = runs.train_summary(run)
    metrics = runs.metrics(run)
    if not (run / schema.REPORT_FILE).is_file():
        raise DatasetError(f"{run / schema.REPORT_FILE}: missing; run `cfpipe evaluate {run}`")
    data = Path(summary["data_dir"])
    manifest = load_manifest(data)
    target = artifact_dir(registry, summary["dataset"], summary["model"], summary["run_id"])
    sources = [run / f for f in _RUN_FILES] + [data / f for f in _DATA_FILES]
    with atomic_dir(target, what="published artifact") as staged:
        files = {}
        for src in sources:
            name = "data_manifest.json" if src.name == schema.MANIFEST_FILE else src.name
            digest = sha256_file(src)
            shutil.copyfile(src, staged / name)
            files[name] = digest
        info = {
            "run_id": summary["run_id"],
            "dataset": summary["dataset"],
            "model": summary["model"],
            "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_fingerprint": manifest.fingerprint,
            "rmse": metrics["rmse"],
            "n_test": metrics["n_test"],
            "files": files,
        }
        (staged / ARTIFACT_FILE).write_text(json.dumps(info, indent=2) + "\n")
        verify(staged)  # The copy, not the source, is what gets checked.
    latest = None
    if cfg.promote:
        _point_latest(target.parent, summary["run_id"])
        latest = target.parent / LATEST
    return {
        "artifact": str(target),
        "latest": None if latest is None else str(latest),
        "run_id": summary["run_id"],
        "dataset": summary["dataset"],
        "model": summary["model"],
    }
