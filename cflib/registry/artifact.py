"""Published artifacts on disk: their layout, references to them, and checksum checks.

An artifact is ``REG/<dataset>/<model>/<run-id>/`` with ``artifact.json`` listing a
sha256 for every other file under it (the SavedModel's files included). A reference
(REF) is the artifact's directory, or the ``latest`` link next to it; with a registry
root it is ``<dataset>/<model>/<run-id|latest>`` under that root.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from cflib.errors import ConfigError, DatasetError
from cflib.fsutil import sha256_file
from cflib.train import runs

ARTIFACT_FILE = "artifact.json"
LATEST = "latest"
SAVED_MODEL_DIR = "saved_model"
#: The model's numpy form (``cflib.registry.npscore``), which predict and recommend use.
SCORING_DIR = "scoring"
SEEN_FILE = "seen.parquet"
DATA_MANIFEST_FILE = "data_manifest.json"
#: 1: the first registry (no SavedModel, no seen items); 2: with them; 3: with
#: ``scoring/`` too (what `publish` writes now).
FORMAT_VERSION = 3


class ArtifactError(DatasetError):
    """An artifact is missing, incomplete, corrupt or tampered with."""


class RefError(ConfigError):
    """A registry reference is malformed or points outside its registry or model."""


def artifact_dir(registry: Path, dataset: str, model: str, run_id: str) -> Path:
    """Where one run is published; every component is checked to stay under ``registry``."""
    parts = [
        runs.check_name(dataset, "dataset name"),
        runs.check_name(model, "model name"),
        runs.check_name(run_id, "run id"),
    ]
    return Path(registry).joinpath(*parts)


def ref_parts(ref: str | Path, registry: str | Path) -> tuple[str, str, str]:
    """``<dataset>/<model>/<run-id|latest>``, each a single safe name.

    Raises:
        RefError: ``ref`` has another shape, or a part that is not a safe name.
    """
    parts = PurePosixPath(str(ref)).parts
    if len(parts) != 3:
        raise RefError(
            f"model reference {str(ref)!r}: expected <dataset>/<model>/<run-id|latest> "
            f"under the registry {registry}"
        )
    try:
        artifact_dir(Path("."), *parts)
    except DatasetError as exc:
        raise RefError(f"model reference {str(ref)!r}: {exc}") from None
    return parts[0], parts[1], parts[2]


def _follow_latest(link: Path) -> Path:
    """The run a ``latest`` link names; it must be a sibling directory of the link."""
    target = os.readlink(link)
    if PurePosixPath(target).name != target or target in (".", "..") or target.startswith("."):
        raise RefError(f"{link}: points to {target!r}, outside {link.parent}; refusing to follow")
    return link.parent / target


def resolve(ref: str | Path, registry: str | Path | None = None) -> Path:
    """The artifact directory that ``ref`` names.

    Args:
        ref: an artifact directory or its ``latest`` link; with ``registry``,
            ``<dataset>/<model>/<run-id|latest>`` relative to it.
        registry: the registry root that ``ref`` is relative to, if any.

    Raises:
        RefError: ``ref`` does not have three safe components under ``registry``, or a
            ``latest`` link points outside its model directory.
        ArtifactError: the directory holds no ``artifact.json``.
    """
    path = Path(registry).joinpath(*ref_parts(ref, registry)) if registry else Path(ref)
    if path.is_symlink():
        path = _follow_latest(path)
    if registry is not None and not path.resolve().is_relative_to(Path(registry).resolve()):
        # A dataset or model directory that is itself a link to somewhere else.
        raise RefError(f"model reference {str(ref)!r}: {path} resolves outside {registry}")
    if not (path / ARTIFACT_FILE).is_file():
        raise ArtifactError(f"{path}: not a published artifact (no {ARTIFACT_FILE})")
    return path


def read_info(artifact: Path) -> dict[str, Any]:
    """``artifact.json``, not checked against the files (see ``verify``)."""
    info = runs.read_json(artifact / ARTIFACT_FILE, f"{artifact} is not a published artifact")
    if not isinstance(info.get("files"), dict):
        raise ArtifactError(f"{artifact / ARTIFACT_FILE}: no 'files' checksum table")
    return info


def _listed_path(artifact: Path, name: str) -> Path:
    """A file named in ``artifact.json``; a name that leaves the artifact is refused."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise ArtifactError(
            f"{artifact / ARTIFACT_FILE}: lists {name!r}, a path outside the artifact; "
            "the artifact is corrupt or tampered"
        )
    return artifact.joinpath(*rel.parts)


def files_under(root: Path) -> list[str]:
    """Every regular file under ``root`` as a sorted relative POSIX path."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def checksums(root: Path, names: list[str]) -> dict[str, str]:
    """sha256 of each named file under ``root``."""
    return {name: sha256_file(root / name) for name in names}


def verify(artifact: Path) -> dict[str, Any]:
    """Check every file of an artifact against ``artifact.json``; return its content.

    Every listed file must exist with its checksum, and no other file may be there
    (besides ``artifact.json``).

    Raises:
        ArtifactError: a file is missing, differs, or is not listed, or a listed name
            points outside the artifact.
    """
    artifact = Path(artifact)
    info = read_info(artifact)
    listed: dict[str, str] = info["files"]
    for name, digest in listed.items():
        path = _listed_path(artifact, name)
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in {ARTIFACT_FILE} but missing")
        if sha256_file(path) != digest:
            raise ArtifactError(f"{path}: checksum mismatch; the artifact is corrupt or tampered")
    extra = sorted(set(files_under(artifact)) - set(listed) - {ARTIFACT_FILE})
    if extra:
        raise ArtifactError(
            f"{artifact / extra[0]}: not listed in {ARTIFACT_FILE}; the artifact was modified"
        )
    return info


def write_info(artifact: Path, info: dict[str, Any]) -> None:
    """Write ``artifact.json``."""
    (artifact / ARTIFACT_FILE).write_text(json.dumps(info, indent=2) + "\n")
