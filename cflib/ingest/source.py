"""What a source directory holds for ingest: its variant and files, their fingerprint,
and the shards its ratings are parsed in. The readers are the variant's
(``cflib.sources.FORMATS``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cflib.errors import ConfigError, SourceError
from cflib.sources.formats import FORMAT_NAMES, FORMATS, Shard, SourceFiles, detect

__all__ = ["Shard", "SourceFiles", "detect_format", "find_source", "fingerprint", "plan_shards"]


def detect_format(root: Path) -> str:
    """Name the format of a source directory.

    Raises:
        SourceError: the directory is missing, empty or in no known format.
    """
    return detect(root).format


def find_source(root: Path, fmt: str = "auto") -> SourceFiles:
    """List the files of ``root`` for format ``fmt`` ('auto' detects it)."""
    root = Path(root)
    if fmt not in ("auto", *FORMAT_NAMES):
        choices = ", ".join(FORMAT_NAMES)
        raise ConfigError(f"--format {fmt!r}: unknown; choose from auto, {choices}")
    variant = detect(root)
    if fmt != "auto" and fmt != variant.format:
        raise SourceError(
            f"{root}: --format {fmt} given but the directory looks like {variant.format}"
        )
    return variant.locate(root)


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


def plan_shards(files: SourceFiles, shard_bytes: int) -> list[Shard]:
    """Parse jobs of about ``shard_bytes`` each, in source order.

    Netflix's training_set shards are consecutive runs of whole files; big files (a
    MovieLens ratings file, Kaggle's combined_data_*.txt) are cut into byte ranges (the
    readers align them to lines). Either way, concatenating the shards in order gives
    the same rows whatever the shard size.
    """
    return FORMATS[files.variant].plan_shards(files.ratings, shard_bytes)
