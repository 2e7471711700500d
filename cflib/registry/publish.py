"""Publishing an evaluated run: the artifact, built and checked in staging, then ``latest``.

An artifact holds everything needed to score raw ids without the training data: the
Keras model file, a SavedModel with a raw-id serving signature, the model's numpy form
(``scoring/``: predict and recommend need no TensorFlow), the id maps, the user's seen
items, the configs, the metrics, the report, the installed versions and
``artifact.json`` with a sha256 per file, checked on the copy before it is renamed
into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.metadata
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cflib import schema
from cflib.config import PublishConfig
from cflib.data.manifest import Manifest, load_manifest
from cflib.errors import ConfigError, DatasetError
from cflib.evaluate.blend import read_spec
from cflib.fsutil import atomic_dir, naming, sha256_file
from cflib.logs import stage_logger
from cflib.registry import promote
from cflib.registry.artifact import (
    ARTIFACT_FILE,
    DATA_MANIFEST_FILE,
    FORMAT_VERSION,
    LATEST,
    SAVED_MODEL_DIR,
    SCORING_DIR,
    SEEN_FILE,
    artifact_dir,
    files_under,
    verify,
    write_info,
)
from cflib.registry.store import Location, latest_name, locate, upload, verify_remote
from cflib.train import runs

_RUN_FILES = (
    schema.MODEL_FILE,
    schema.TRAIN_SUMMARY_FILE,
    schema.METRICS_FILE,
    schema.REPORT_FILE,
)
#: A blend's run files: its weights in place of a model (``cflib.evaluate.blend``).
_BLEND_RUN_FILES = (
    schema.BLEND_FILE,
    schema.TRAIN_SUMMARY_FILE,
    schema.METRICS_FILE,
    schema.REPORT_FILE,
)
_DATA_FILES = (schema.USER_MAP_FILE, schema.ITEM_MAP_FILE, schema.MANIFEST_FILE)
#: Run files copied when the run has them (runs evaluated before they existed do not).
_OPTIONAL_RUN_FILES = (schema.REPORT_HTML_FILE,)
#: Distributions whose installed versions each artifact records.
VERSIONED = (
    "cfpipe",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "pyarrow",
    "prefect",
    "dask",
    "pydantic",
)
log = stage_logger("publish")
_LOCK_FILE = ".publish.lock"
#: Dataset splits whose pairs go into ``seen.parquet`` (the test split stays unseen).
SEEN_SPLITS = ("train", "validation")


def versions() -> dict[str, str | None]:
    """Installed versions of ``VERSIONED`` (None where one is not installed)."""
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


@contextlib.contextmanager
def _registry_lock(registry: Path) -> Iterator[None]:
    """Serialize publishers on one machine: the promotion decision reads ``latest``."""
    registry.mkdir(parents=True, exist_ok=True)
    with open(registry / _LOCK_FILE, "a") as fh:
        # Released when the file closes, or the process dies.
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another publisher holds %s; waiting for it", registry, _LOCK_FILE)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _point_latest(model_dir: Path, run_id: str) -> None:
    """Swap the ``latest`` symlink atomically (a new link renamed over the old one)."""
    tmp = model_dir / f".{LATEST}.{uuid.uuid4().hex[:8]}"
    os.symlink(run_id, tmp)
    os.replace(tmp, model_dir / LATEST)


def _export(
    staged: Path,
    global_mean: float,
    rating_range: tuple[float, float],
    blend: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The SavedModel and the numpy form, from the staged (already copied) Keras model
    and id maps; what each is, for ``artifact.json``. A blend has no SavedModel: its
    numpy form holds its components' (``export_blend_scoring``)."""
    from cflib.models.io import load_model
    from cflib.registry.export import export_blend_scoring, export_saved_model, export_scoring

    if blend is not None:
        return None, export_blend_scoring(blend, staged / SCORING_DIR)
    model = load_model(staged / schema.MODEL_FILE)
    serving = export_saved_model(
        model,
        staged / SAVED_MODEL_DIR,
        user_map=staged / schema.USER_MAP_FILE,
        item_map=staged / schema.ITEM_MAP_FILE,
        global_mean=global_mean,
        rating_range=rating_range,
    )
    return serving, export_scoring(model, staged / SCORING_DIR)


def _build(
    staged: Path,
    *,
    run: Path,
    data: Path,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    manifest: Manifest,
    cfg: PublishConfig,
    decision: dict[str, Any],
) -> dict[str, Any]:
    """Fill ``staged`` with the artifact's files and ``artifact.json``; verify it."""
    global_mean = float(summary.get("global_mean", manifest.global_mean))
    blend = read_spec(run)
    files = {}
    optional = [run / f for f in _OPTIONAL_RUN_FILES if (run / f).is_file()]
    run_files = [run / f for f in (_RUN_FILES if blend is None else _BLEND_RUN_FILES)]
    for src in run_files + optional + [data / f for f in _DATA_FILES]:
        name = DATA_MANIFEST_FILE if src.name == schema.MANIFEST_FILE else src.name
        files[name] = sha256_file(src)  # Of the source: verify checks the copy.
        shutil.copyfile(src, staged / name)
    serving, scoring = _export(staged, global_mean, manifest.rating_range, blend)
    from cflib.registry.seen import write_seen

    parts = [p for s in SEEN_SPLITS for p in manifest.split_paths(data, s)]
    seen_rows = write_seen(parts, manifest.n_users, staged / SEEN_FILE)
    for name in files_under(staged):
        files.setdefault(name, sha256_file(staged / name))
    info = {
        "format_version": FORMAT_VERSION,
        "run_id": summary["run_id"],
        "dataset": summary["dataset"],
        "model": summary["model"],
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_fingerprint": manifest.fingerprint,
        "rmse": metrics["rmse"],
        "mae": metrics.get("mae"),
        "n_test": metrics["n_test"],
        "val_rmse": summary.get("val_rmse"),
        "n_users": manifest.n_users,
        "n_items": manifest.n_items,
        "global_mean": global_mean,
        "train_config": summary.get("config"),
        "publish_config": cfg.identity(),
        "versions": versions(),
        "serving": serving,
        "scoring": scoring,
        "seen": {"rows": seen_rows, "splits": list(SEEN_SPLITS)},
        "promotion": decision,
        "files": dict(sorted(files.items())),
    }
    write_info(staged, info)
    return verify(staged)  # The copy, not the source, is what gets checked.


def publish(run: Path, registry: str | Path, cfg: PublishConfig) -> dict[str, Any]:
    """Copy an evaluated run into the registry and, if it passes the gate, promote it.

    Args:
        run: the run directory (trained and evaluated).
        registry: the registry root, a path or an fsspec URL; created if missing.
        cfg: publish options (``promote``, ``promote_tolerance``).

    Returns:
        ``{"artifact": path or URL, "latest": path or URL or None, "run_id", "dataset",
        "model", "promotion": {"promoted", "reason", "previous", "previous_rmse",
        "tolerance"}}``.

    Raises:
        DatasetError: the run is not evaluated, or its dataset is gone or was rebuilt
            since training.
        ConfigError: this run id is already published.
    """
    run = Path(run)
    root = locate(registry)
    summary = runs.train_summary(run)
    metrics = runs.metrics(run)
    if not (run / schema.REPORT_FILE).is_file():
        raise DatasetError(f"{run / schema.REPORT_FILE}: missing; run `cfpipe evaluate {run}`")
    data = Path(summary["data_dir"])
    manifest = load_manifest(data)
    trained_on = summary.get("data_fingerprint")
    if trained_on != manifest.fingerprint:
        # The id maps copied from it would not be the ones the model was trained with.
        raise DatasetError(
            f"{data}: fingerprint {manifest.fingerprint[:12]} is not the "
            f"{str(trained_on)[:12]} that run {summary['run_id']} was trained on; the "
            "dataset was rebuilt since, so train and evaluate again"
        )
    names = artifact_dir(Path("."), summary["dataset"], summary["model"], summary["run_id"]).parts
    target = root.join(*names)
    build = functools.partial(
        _build, run=run, data=data, summary=summary, metrics=metrics, manifest=manifest, cfg=cfg
    )
    decide = functools.partial(
        promote.decide,
        target.parent,
        rmse=float(metrics["rmse"]),
        data_fingerprint=manifest.fingerprint,
        cfg=cfg,
        baseline_rmse=_bias_baseline(metrics),
    )
    if root.local:
        with naming(Path(target.path)):
            decision = _publish_local(Path(target.path), build, decide)
    else:
        decision = _publish_remote(target, build, decide)
    latest = str(target.parent.join(LATEST)) if decision["promoted"] else None
    return {
        "artifact": str(target),
        "latest": latest,
        "run_id": summary["run_id"],
        "dataset": summary["dataset"],
        "model": summary["model"],
        "promotion": decision,
    }


def _publish_local(
    target: Path,
    build: Callable[..., dict[str, Any]],
    decide: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Build in a hidden sibling directory, rename it into place, swap the symlink."""
    with _registry_lock(target.parents[2]):
        _sweep_stale_staging(target.parent)
        decision = decide()
        with atomic_dir(target, what="published artifact") as staged:
            build(staged, decision=decision)
        if decision["promoted"]:
            _point_latest(target.parent, target.name)
    return decision


def _sweep_stale_staging(model_dir: Path) -> None:
    """Remove the hidden staging directories a publisher killed mid-way left behind
    (``.<run-id>.tmp-*``, ``.<run-id>.old-*``): under the registry's lock, no other
    publisher is building one."""
    if not model_dir.is_dir():
        return
    for path in model_dir.glob(".*.*-*"):
        if (
            path.is_dir()
            and not path.is_symlink()
            and (".tmp-" in path.name or ".old-" in path.name)
        ):
            shutil.rmtree(path, ignore_errors=True)


def _publish_remote(
    target: Location,
    build: Callable[..., dict[str, Any]],
    decide: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Build locally, upload with ``artifact.json`` last, check the upload, write latest.

    There is no lock: two publishers of one model at once may both compare against
    the same ``latest``.
    """
    fs = target.fs
    if fs.exists(target.path):
        raise ConfigError(f"published artifact {target}: already exists and is not empty")
    decision = decide()
    with tempfile.TemporaryDirectory(prefix="cfpipe-publish-") as tmp:
        staged = Path(tmp) / target.name
        staged.mkdir()
        info = build(staged, decision=decision)
        try:
            upload(staged, target, [*info["files"], ARTIFACT_FILE])
            verify_remote(target, info)
        except BaseException:
            with contextlib.suppress(Exception):
                fs.rm(target.path, recursive=True)
            raise
    if decision["promoted"]:
        fs.pipe_file(target.parent.join(LATEST).path, target.name.encode())
    return decision


def find_published(
    registry: str | Path, dataset: str, model: str, run_id: str
) -> dict[str, Any] | None:
    """The registry's artifact of a run, verified, as ``publish`` describes it; or None.

    Returns:
        None if the run is not published there; else ``publish``'s result for it, with
        ``latest`` set only if ``latest`` names this run and the recorded ``promotion``.

    Raises:
        ArtifactError: the artifact is there but fails verification.
    """
    root = locate(registry)
    where = root.join(*artifact_dir(Path("."), dataset, model, run_id).parts)
    if where.local:
        if not (Path(where.path) / ARTIFACT_FILE).is_file():
            return None
        info = verify(Path(where.path))
    else:
        if not where.fs.isfile(where.join(ARTIFACT_FILE).path):
            return None
        info = json.loads(where.fs.cat_file(where.join(ARTIFACT_FILE).path))
        verify_remote(where, info)
    is_latest = latest_name(where.parent) == run_id
    return {
        "artifact": str(where),
        "latest": str(where.parent.join(LATEST)) if is_latest else None,
        "run_id": run_id,
        "dataset": dataset,
        "model": model,
        "promotion": info.get("promotion"),
    }


def _bias_baseline(metrics: dict[str, Any]) -> float | None:
    """The user + item bias baseline's test RMSE from ``metrics.json``, if it has one."""
    value = metrics.get("baselines", {}).get("user_item_bias", {}).get("rmse")
    return None if value is None else float(value)
