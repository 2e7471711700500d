"""Filesystem helpers: atomic directory publication and content checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from cflib.errors import ConfigError


def staging_dir(final: Path, tag: str = "tmp") -> Path:
    """A fresh hidden directory next to ``final`` (same filesystem, so rename is atomic)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    path = final.parent / f".{final.name}.{tag}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def publish_dir(staged: Path, final: Path) -> None:
    """Move a completed staging directory to ``final``, replacing what was there.

    The old directory is first renamed aside, so readers see the old tree or the new
    one, never a partial one; it is deleted only after the new one is in place.
    """
    final = Path(final)
    old: Path | None = None
    if final.exists() or final.is_symlink():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    try:
        os.rename(staged, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path, *, overwrite: bool = False, what: str = "--out") -> Iterator[Path]:
    """Yield a staging directory that becomes ``final`` only if the block completes.

    Args:
        final: the directory to create.
        overwrite: replace an existing non-empty ``final``; otherwise refuse it.
        what: the option that named ``final``, for the error message.

    Raises:
        ConfigError: ``final`` exists, is not empty and ``overwrite`` is false.
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise ConfigError(f"{what} {final}: exists and is not a directory")
    if not overwrite and final.is_dir() and any(final.iterdir()):
        raise ConfigError(f"{what} {final}: already exists and is not empty")
    staged = staging_dir(final)
    try:
        yield staged
        publish_dir(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


@contextlib.contextmanager
def exclusive(target: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``target`` (a directory that may not exist yet).

    The lock is ``flock`` on ``.<name>.lock`` next to ``target``, removed on release. The
    kernel drops the lock when the process dies, so a crash never leaves it stuck (a
    stale file is simply locked again). It guards one writer per output directory or
    registry entry, across processes on a machine (and on shared filesystems whose
    ``flock`` is honoured, such as NFSv4).

    Raises:
        ConfigError: another process holds the lock; names it (pid, since when).
    """
    import fcntl
    import time

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}.lock"
    while True:
        fh = open(path, "a+")  # noqa: SIM115 - held until the block ends
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ConfigError(
                f"{what} {target}: another cfpipe process is writing it ({holder}); "
                "wait for it to finish"
            ) from None
        try:  # the holder before us may have removed the file we opened: lock the new one
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        fh.truncate(0)
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        fh.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: no one can lock the old file
        fh.close()


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An ``OSError`` raised in the block without a file name gets ``path``'s.

    pyarrow's write errors carry only an errno ("Error writing bytes to file. Detail:
    [errno 28] ..."); a user needs to know which output filled the disk.
    """
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno:
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
