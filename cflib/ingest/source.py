"""Finding out what a source directory holds, and fingerprinting it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cflib.errors import ConfigError, SourceError
from cflib.sources import netflix

FORMATS = ("netflix",)


@dataclass(frozen=True)
class SourceFiles:
    """The files of one source directory that ingest reads."""

    root: Path
    format: str
    ratings: list[Path]
    probe: Path | None = None
    qualifying: Path | None = None
    titles: Path | None = None

    def all_files(self) -> list[Path]:
        """Every file that contributes to the dataset, in a stable order."""
        extra = [p for p in (self.probe, self.qualifying, self.titles) if p is not None]
        return [*self.ratings, *extra]


def detect_format(root: Path) -> str:
    """Name the format of a source directory.

    Raises:
        SourceError: the directory is missing, empty or in no known format.
    """
    root = Path(root)
    if not root.exists():
        raise SourceError(f"{root}: source directory does not exist")
    if not root.is_dir():
        raise SourceError(f"{root}: source is not a directory")
    if not any(root.iterdir()):
        raise SourceError(f"{root}: source directory is empty")
    if (root / netflix.TRAINING_DIR).is_dir():
        return "netflix"
    raise SourceError(
        f"{root}: no known source format (expected a Netflix Prize directory with "
        f"{netflix.TRAINING_DIR}/{netflix.TRAINING_GLOB})"
    )


def find_source(root: Path, fmt: str = "auto") -> SourceFiles:
    """List the files of ``root`` for format ``fmt`` ('auto' detects it)."""
    root = Path(root)
    detected = detect_format(root)
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"--format {fmt!r}: unknown; choose from auto, {', '.join(FORMATS)}")
    if fmt != "auto" and fmt != detected:
        raise SourceError(f"{root}: --format {fmt} given but the directory looks like {detected}")

    def optional(name: str) -> Path | None:
        path = root / name
        return path if path.is_file() else None

    return SourceFiles(
        root=root,
        format=detected,
        ratings=netflix.list_training_files(root),
        probe=optional(netflix.PROBE_FILE),
        qualifying=optional(netflix.QUALIFYING_FILE),
        titles=optional(netflix.TITLES_FILE),
    )


def fingerprint(files: SourceFiles) -> tuple[str, int]:
    """sha256 over each file's relative name, size and mtime, and the total size.

    Size and mtime (as make and rsync use) notice every ordinary edit without reading
    gigabytes of input on each run.
    """
    digest = hashlib.sha256(files.format.encode())
    total = 0
    for path in files.all_files():
        st = path.stat()
        total += st.st_size
        rel = path.relative_to(files.root).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest(), total
