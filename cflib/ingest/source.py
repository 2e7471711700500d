"""What a source directory holds: its format, its files, how its ratings split into
shards for parallel parsing, and one reader per kind of file."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from cflib import schema
from cflib.errors import ConfigError, SourceError
from cflib.sources import netflix
from cflib.sources.accounting import Report

FORMATS = ("netflix", "ml-100k", "ml-1m", "ml-csv")


class Shard(BaseModel):
    """One parse job: whole files (Netflix) or a byte range of one file (MovieLens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    files: list[str] = []
    path: str | None = None
    start: int = 0
    end: int | None = None


@dataclass(frozen=True)
class SourceFiles:
    """The files of one source directory that ingest reads."""

    root: Path
    format: str
    ratings: list[Path]
    probe: Path | None = None
    qualifying: Path | None = None
    items: Path | None = None
    users: Path | None = None
    ranged: bool = False  # Ratings files are parsed in byte ranges (one big file, many tasks).

    def all_files(self) -> list[Path]:
        """Every file that contributes to the dataset, in a stable order."""
        extra = (self.probe, self.qualifying, self.items, self.users)
        return [*self.ratings, *(p for p in extra if p is not None)]


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
    if (root / netflix.TRAINING_DIR).is_dir() or any(root.glob(netflix.COMBINED_GLOB)):
        return "netflix"
    from cflib.sources import movielens

    variant = movielens.detect_variant(root)
    if variant is not None:
        return variant
    raise SourceError(
        f"{root}: no known source format (expected a Netflix Prize directory with "
        f"{netflix.TRAINING_DIR}/ or {netflix.COMBINED_GLOB}, or a MovieLens directory with "
        f"{movielens.ML100K_RATINGS}, "
        f"{movielens.ML1M_RATINGS} or {movielens.CSV_RATINGS})"
    )


def find_source(root: Path, fmt: str = "auto") -> SourceFiles:
    """List the files of ``root`` for format ``fmt`` ('auto' detects it)."""
    root = Path(root)
    if fmt not in ("auto", *FORMATS):
        raise ConfigError(f"--format {fmt!r}: unknown; choose from auto, {', '.join(FORMATS)}")
    detected = detect_format(root)
    if fmt != "auto" and fmt != detected:
        raise SourceError(f"{root}: --format {fmt} given but the directory looks like {detected}")

    def optional(name: str) -> Path | None:
        path = root / name
        return path if path.is_file() else None

    if detected == "netflix":
        # Kaggle's combined_data_*.txt hold the same blocks as training_set/ concatenated.
        combined = not (root / netflix.TRAINING_DIR).is_dir()
        return SourceFiles(
            root=root,
            format=detected,
            ratings=(
                netflix.list_combined_files(root) if combined else netflix.list_training_files(root)
            ),
            ranged=combined,
            probe=optional(netflix.PROBE_FILE),
            qualifying=optional(netflix.QUALIFYING_FILE),
            items=optional(netflix.TITLES_FILE),
        )
    from cflib.sources import movielens as ml

    names = {
        "ml-100k": (ml.ML100K_RATINGS, ml.ML100K_ITEMS, ml.ML100K_USERS),
        "ml-1m": (ml.ML1M_RATINGS, ml.ML1M_ITEMS, ml.ML1M_USERS),
        "ml-csv": (ml.CSV_RATINGS, ml.CSV_ITEMS, None),
    }[detected]
    return SourceFiles(
        root=root,
        format=detected,
        ratings=[root / names[0]],
        items=optional(names[1]),
        users=None if names[2] is None else optional(names[2]),
        ranged=True,
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


def plan_shards(files: SourceFiles, shard_bytes: int) -> list[Shard]:
    """Parse jobs of about ``shard_bytes`` each, in source order.

    Netflix's training_set shards are consecutive runs of whole files; big files (a
    MovieLens ratings file, Kaggle's combined_data_*.txt) are cut into byte ranges (the
    readers align them to lines). Either way, concatenating the
    shards in order gives the same rows whatever the shard size.
    """
    if files.ranged:
        from cflib.sources import movielens

        return [
            Shard(path=str(path), start=start, end=end)
            for path in files.ratings
            for start, end in movielens.byte_ranges(path, shard_bytes)
        ]
    shards: list[Shard] = []
    current: list[str] = []
    size = 0
    for path in files.ratings:
        current.append(str(path))
        size += path.stat().st_size
        if size >= shard_bytes:
            shards.append(Shard(files=current))
            current, size = [], 0
    if current:
        shards.append(Shard(files=current))
    return shards


def read_shard(fmt: str, shard: Shard, report: Report | None = None) -> pa.Table:
    """The ratings of one shard, in ``schema.RAW_RATINGS``.

    ``report`` takes each file's tally and, unless it is strict, the bad lines.
    """
    if fmt == "netflix" and shard.path is not None:
        path, start, end = Path(shard.path), shard.start, shard.end
        return netflix.read_combined_range(path, start=start, end=end, report=report)
    if fmt == "netflix":
        return netflix.read_training_files([Path(p) for p in shard.files], report)
    from cflib.sources import movielens as ml

    assert shard.path is not None  # MovieLens shards are byte ranges of one file.
    path, start, end = Path(shard.path), shard.start, shard.end
    return ml.read_ratings(fmt, path, start=start, end=end, report=report)


#: A kept rating line: its file, line number, text, raw user id and raw item id.
RatingLine = tuple[str, int, str, int, int]


def rating_lines(fmt: str, shard: Shard) -> Iterator[RatingLine]:
    """Every rating line of a shard that ``read_shard`` keeps, in order, line by line.

    The slow path, for naming the lines of repeated ratings: their rows carry no line.
    """
    if fmt == "netflix" and shard.path is not None:
        yield from netflix.combined_lines(Path(shard.path), shard.start, shard.end)
    elif fmt == "netflix":
        for path in shard.files:
            yield from netflix.training_lines(Path(path))
    else:
        from cflib.sources import movielens as ml

        assert shard.path is not None
        yield from ml.rating_lines(Path(shard.path), shard.start, shard.end, fmt)


def read_items(fmt: str, path: Path, report: Report | None = None) -> pa.Table:
    """The item side table, in ``schema.RAW_ITEMS_GENRES`` (Netflix lists no genres)."""
    if fmt == "netflix":
        titles = netflix.read_movie_titles(path, report)
        empty = pa.array([[]] * titles.num_rows, pa.list_(pa.string()))
        return titles.append_column("genres", empty).cast(schema.RAW_ITEMS_GENRES)
    from cflib.sources import movielens as ml

    reader = {"ml-100k": ml.read_items_100k, "ml-1m": ml.read_items_1m, "ml-csv": ml.read_items_csv}
    return reader[fmt](path, report)


def read_users(fmt: str, path: Path, report: Report | None = None) -> pa.Table:
    """The user side table, in ``schema.RAW_USERS`` (MovieLens 100K and 1M only)."""
    from cflib.sources import movielens as ml

    reader = {"ml-100k": ml.read_users_100k, "ml-1m": ml.read_users_1m}
    if fmt not in reader:
        raise SourceError(f"{path}: format {fmt} has no user table")
    return reader[fmt](path, report)
