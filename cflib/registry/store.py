"""Registry roots as paths or fsspec URLs, and artifacts on filesystems without renames.

A plain path or a ``file://`` URL is a local registry: artifacts are renamed into place
and ``latest`` is a symlink (see ``publish.py``). Any other fsspec URL (``memory://``,
``s3://``, ...) is a remote registry: an artifact is uploaded file by file with
``artifact.json`` last, so a reader that finds ``artifact.json`` finds every file it
lists (a reader that comes during the upload sees no artifact yet); ``latest`` is a
small file holding the run id, replaced in one write. Remote artifacts are downloaded
to a local directory and verified there before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from cflib.errors import ConfigError, DatasetError
from cflib.registry.artifact import (
    ARTIFACT_FILE,
    LATEST,
    ArtifactError,
    RefError,
    read_info,
    ref_parts,
    resolve,
)


class Location(NamedTuple):
    """A path on a filesystem: ``fs`` is None for the local filesystem.

    ``chain`` is what a chained URL (``simplecache::s3://...``) puts before the path, so
    that ``str()`` names a URL fsspec opens again; empty for a plain URL.
    """

    fs: Any
    path: str
    chain: str = ""

    @property
    def local(self) -> bool:
        return self.fs is None

    def join(self, *parts: str) -> Location:
        if self.fs is None:
            return Location(None, str(Path(self.path).joinpath(*parts)))
        return self._replace(path=posixpath.join(self.path, *parts))

    @property
    def parent(self) -> Location:
        if self.fs is None:
            return Location(None, str(Path(self.path).parent))
        return self._replace(path=posixpath.dirname(self.path.rstrip("/")))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def __str__(self) -> str:
        if self.fs is None:
            return self.path
        if self.chain:
            return self.chain + self.path
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self.path.lstrip('/')}"


def locate(root: str | Path) -> Location:
    """Where ``root`` is: a local path (plain, or a ``file://`` URL) or an fsspec URL."""
    text = str(root)
    if "://" not in text:
        return Location(None, text)
    _refuse_password(text)
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    try:
        fs, path = fsspec.core.url_to_fs(text)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"{text}: not a usable filesystem URL ({exc})") from None
    if isinstance(fs, LocalFileSystem):
        return Location(None, path)
    outer, _, inner = text.rpartition("::")
    # The outer filesystem's protocol alone ("simplecache://...") names no target.
    chain = f"{outer}::{inner.split('://', 1)[0]}://" if outer else ""
    return Location(fs, path, chain)


def _refuse_password(url: str) -> None:
    """A password inside a URL would be recorded wherever the URL is: the flow run's
    parameters in Prefect, logs, messages. Refuse it, naming the URL without it."""
    parts = url.split("::")  # fsspec chains: simplecache::sftp://user:pw@host/path
    masked = False
    for i, part in enumerate(parts):
        split = urllib.parse.urlsplit(part)
        if split.password is not None:
            userinfo, _, hostport = split.netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            parts[i] = split._replace(netloc=f"{user}:***@{hostport}").geturl()
            masked = True
    if masked:
        raise ConfigError(
            f"{'::'.join(parts)}: a password in the URL would be recorded with it (in the "
            "flow run's parameters and logs); give the credentials through the "
            "filesystem's environment variables or fsspec's configuration instead"
        )


def _safe_name(value: str, what: str) -> str:
    from cflib.train import runs

    try:
        return runs.check_name(value, what)
    except DatasetError as exc:
        raise RefError(str(exc)) from None


def remote_latest(model_dir: Location) -> str | None:
    """The run id in a remote ``latest`` file, or None if there is none."""
    link = model_dir.join(LATEST)
    if not model_dir.fs.isfile(link.path):
        return None
    target = model_dir.fs.cat_file(link.path).decode("utf-8", "replace").strip()
    if PurePosixPath(target).name != target:
        raise RefError(f"{link}: names {target!r}, outside {model_dir}; refusing to follow")
    return _safe_name(target, f"{link}: run id")


def latest_name(model_dir: Location) -> str | None:
    """The run id that ``latest`` names (a local symlink or a remote file), or None."""
    if model_dir.local:
        link = Path(model_dir.path) / LATEST
        return os.readlink(link) if link.is_symlink() else None
    return remote_latest(model_dir)


def locate_artifact(ref: str | Path, registry: str | Path | None = None) -> Location:
    """The artifact that ``ref`` names, locally or remotely, ``latest`` followed.

    See ``cflib.registry.artifact.resolve`` for the forms of ``ref``; here ``ref`` or
    ``registry`` may also be fsspec URLs.

    Raises:
        RefError: ``ref`` is malformed or leaves its registry or model directory.
        ArtifactError: there is no artifact there.
    """
    base = locate(registry) if registry is not None else locate(ref)
    if base.local:
        path = resolve(ref, base.path) if registry is not None else resolve(base.path)
        return Location(None, str(path))
    where = base.join(*ref_parts(ref, registry)) if registry is not None else base
    if where.name == LATEST and where.fs.isfile(where.path):
        where = where.parent.join(remote_latest(where.parent) or LATEST)
    if not where.fs.isfile(where.join(ARTIFACT_FILE).path):
        raise ArtifactError(f"{where}: not a published artifact (no {ARTIFACT_FILE})")
    return where


def download(where: Location, dest: Path) -> Path:
    """Copy a remote artifact's files under ``dest/<run-id>``; return that directory."""
    local = dest / where.name
    local.mkdir(parents=True)
    prefix = where.path.rstrip("/") + "/"
    for remote in where.fs.find(where.path):
        rel = PurePosixPath(remote[len(prefix) :] if remote.startswith(prefix) else remote)
        if not remote.startswith(prefix) or any(p in ("", ".", "..") for p in rel.parts):
            raise ArtifactError(f"{where}: holds {remote!r}, outside the artifact")
        target = local.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        where.fs.get_file(remote, str(target))
    return local


def upload(staged: Path, where: Location, names: list[str]) -> None:
    """Put the files ``names`` of ``staged`` under ``where``, in that order."""
    for name in names:
        remote = where.join(*PurePosixPath(name).parts)
        where.fs.makedirs(remote.parent.path, exist_ok=True)
        where.fs.put_file(str(staged / name), remote.path)


def verify_remote(where: Location, info: dict[str, Any]) -> None:
    """Re-read every uploaded file and compare its sha256 with ``info['files']``."""
    for name, digest in info["files"].items():
        remote = where.join(*PurePosixPath(name).parts)
        sha = hashlib.sha256()
        with where.fs.open(remote.path, "rb") as fh:
            while block := fh.read(1 << 20):
                sha.update(block)
        if sha.hexdigest() != digest:
            raise ArtifactError(f"{remote}: checksum mismatch after upload")


def latest_info(model_dir: Location) -> dict[str, Any] | None:
    """``artifact.json`` of the run that ``latest`` names (None when there is none).

    Raises:
        CfpipeError: ``latest`` names a run whose ``artifact.json`` is unreadable.
    """
    if model_dir.local:
        link = Path(model_dir.path) / LATEST
        return read_info(resolve(link)) if link.is_symlink() else None
    run = remote_latest(model_dir)
    if run is None:
        return None
    path = model_dir.join(run, ARTIFACT_FILE)
    try:
        info = json.loads(model_dir.fs.cat_file(path.path))
    except FileNotFoundError:
        raise ArtifactError(
            f"{path}: missing; {model_dir.join(LATEST)} names no artifact"
        ) from None
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return info
