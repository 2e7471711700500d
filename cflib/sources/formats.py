"""One format object per source variant, and the table that ingest dispatches on.

A variant is one layout of a source directory: Netflix's per-movie ``training_set/``
files, Kaggle's ``combined_data_*.txt``, and the MovieLens layouts ``ml-100k``,
``ml-1m`` (ML-10M's too) and ``ml-csv`` (ml-latest, 20M, 25M, 32M). Each object knows
its files (the locator), how its ratings are cut into shards for parallel parsing, its
ratings line rules, and its readers. ``format`` is what ``--format`` and the dataset
manifest call it: both Netflix variants are ``netflix``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from cflib import schema
from cflib.errors import SourceError
from cflib.sources import _movielens_rules, _netflix_rules, movielens, netflix
from cflib.sources._lines import Layout
from cflib.sources._movielens_parse import parse_ratings, range_lines
from cflib.sources._ranges import byte_ranges
from cflib.sources.accounting import Report

#: A kept rating line: its file, line number, text, raw user id and raw item id.
RatingLine = tuple[str, int, str, int, int]
#: A side-table reader: the file, and where its tally and bad lines go.
SideReader = Callable[[Path, Report | None], pa.Table]


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
    variant: str  # the key of its format object in ``FORMATS``
    ratings: list[Path]
    probe: Path | None = None
    qualifying: Path | None = None
    items: Path | None = None
    users: Path | None = None

    def all_files(self) -> list[Path]:
        """Every file that contributes to the dataset, in a stable order."""
        extra = (self.probe, self.qualifying, self.items, self.users)
        return [*self.ratings, *(p for p in extra if p is not None)]


def _optional(root: Path, name: str | None) -> Path | None:
    """``root/name`` if it is a file."""
    path = None if name is None else root / name
    return path if path is not None and path.is_file() else None


class SourceVariant(ABC):
    """One layout of a source directory: its files, its shards and its readers."""

    key: str  # its name in ``FORMATS``
    ratings_rules: Layout  # the line rules of its ratings files

    @property
    @abstractmethod
    def format(self) -> str:
        """What ``--format`` and the dataset manifest call it."""

    @abstractmethod
    def present(self, root: Path) -> bool:
        """Whether ``root`` is laid out this way (judged by its ratings files)."""

    @abstractmethod
    def locate(self, root: Path) -> SourceFiles:
        """The files of ``root`` that ingest reads; SourceError if the ratings are missing."""

    @abstractmethod
    def plan_shards(self, ratings: list[Path], shard_bytes: int) -> list[Shard]:
        """Parse jobs of about ``shard_bytes`` each, in source order.

        Concatenating the shards' rows in order gives the same rows whatever the size.
        """

    @abstractmethod
    def read_shard(self, shard: Shard, report: Report | None = None) -> pa.Table:
        """The ratings of one shard, in ``schema.RAW_RATINGS``.

        ``report`` takes each file's tally and, unless it is strict, the bad lines.
        """

    @abstractmethod
    def shard_lines(self, shard: Shard) -> Iterator[RatingLine]:
        """Every rating line of a shard that ``read_shard`` keeps, in order, line by line.

        The slow path, for naming the lines of repeated ratings: their rows carry no line.
        """

    @abstractmethod
    def read_items(self, path: Path, report: Report | None = None) -> pa.Table:
        """The item side table, in ``schema.RAW_ITEMS_GENRES``."""

    def read_users(self, path: Path, report: Report | None = None) -> pa.Table:
        """The user side table, in ``schema.RAW_USERS``."""
        raise SourceError(f"{path}: format {self.format} has no user table")


class _ByteRanges(SourceVariant):
    """Ratings in big files, cut into byte ranges (the readers align them to lines)."""

    def plan_shards(self, ratings: list[Path], shard_bytes: int) -> list[Shard]:
        return [
            Shard(path=str(path), start=start, end=end)
            for path in ratings
            for start, end in byte_ranges(path, shard_bytes)
        ]

    def read_shard(self, shard: Shard, report: Report | None = None) -> pa.Table:
        assert shard.path is not None  # these shards are byte ranges of one file
        return self.read_range(Path(shard.path), shard.start, shard.end, report)

    def shard_lines(self, shard: Shard) -> Iterator[RatingLine]:
        assert shard.path is not None
        return self.range_lines(Path(shard.path), shard.start, shard.end)

    @abstractmethod
    def read_range(
        self, path: Path, start: int, end: int | None, report: Report | None
    ) -> pa.Table:
        """The ratings of the lines that start in ``[start, end)`` of ``path``."""

    @abstractmethod
    def range_lines(self, path: Path, start: int, end: int | None) -> Iterator[RatingLine]:
        """The kept rating lines of a byte range, line by line."""


class _Netflix(SourceVariant):
    """The Netflix Prize side files, beside either layout of its ratings."""

    format = "netflix"

    def _locate(self, root: Path, ratings: list[Path]) -> SourceFiles:
        return SourceFiles(
            root=root,
            format=self.format,
            variant=self.key,
            ratings=ratings,
            probe=_optional(root, netflix.PROBE_FILE),
            qualifying=_optional(root, netflix.QUALIFYING_FILE),
            items=_optional(root, netflix.TITLES_FILE),
        )

    def read_items(self, path: Path, report: Report | None = None) -> pa.Table:
        """Movie titles with an empty genre list (Netflix lists no genres)."""
        titles = netflix.read_movie_titles(path, report)
        empty = pa.array([[]] * titles.num_rows, pa.list_(pa.string()))
        return titles.append_column("genres", empty).cast(schema.RAW_ITEMS_GENRES)


class NetflixTrainingSet(_Netflix):
    """``training_set/mv_*.txt``: one file per movie, shards are runs of whole files."""

    key = "netflix-training-set"
    ratings_rules = _netflix_rules.TRAINING

    def present(self, root: Path) -> bool:
        return (root / netflix.TRAINING_DIR).is_dir()

    def locate(self, root: Path) -> SourceFiles:
        return self._locate(root, netflix.list_training_files(root))

    def plan_shards(self, ratings: list[Path], shard_bytes: int) -> list[Shard]:
        shards: list[Shard] = []
        current: list[str] = []
        size = 0
        for path in ratings:
            current.append(str(path))
            size += path.stat().st_size
            if size >= shard_bytes:
                shards.append(Shard(files=current))
                current, size = [], 0
        if current:
            shards.append(Shard(files=current))
        return shards

    def read_shard(self, shard: Shard, report: Report | None = None) -> pa.Table:
        return netflix.read_training_files([Path(p) for p in shard.files], report)

    def shard_lines(self, shard: Shard) -> Iterator[RatingLine]:
        for path in shard.files:
            yield from netflix.training_lines(Path(path))


class NetflixCombined(_Netflix, _ByteRanges):
    """Kaggle's ``combined_data_*.txt``: the training files concatenated, read in ranges."""

    key = "netflix-combined"
    ratings_rules = _netflix_rules.COMBINED

    def present(self, root: Path) -> bool:
        return any(root.glob(netflix.COMBINED_GLOB))

    def locate(self, root: Path) -> SourceFiles:
        return self._locate(root, netflix.list_combined_files(root))

    def read_range(
        self, path: Path, start: int, end: int | None, report: Report | None
    ) -> pa.Table:
        return netflix.read_combined_range(path, start=start, end=end, report=report)

    def range_lines(self, path: Path, start: int, end: int | None) -> Iterator[RatingLine]:
        return netflix.combined_lines(path, start, end)


@dataclass(frozen=True)
class MovieLens(_ByteRanges):
    """One MovieLens layout: one ratings file, read in byte ranges, and its side tables."""

    key: str
    ratings_file: str
    ratings_rules: Layout
    items_file: str
    items_reader: SideReader
    users_file: str | None = None
    users_reader: SideReader | None = None

    @property
    def format(self) -> str:
        return self.key

    def present(self, root: Path) -> bool:
        return (root / self.ratings_file).is_file()

    def locate(self, root: Path) -> SourceFiles:
        return SourceFiles(
            root=root,
            format=self.format,
            variant=self.key,
            ratings=[root / self.ratings_file],
            items=_optional(root, self.items_file),
            users=_optional(root, self.users_file),
        )

    def read_range(
        self, path: Path, start: int, end: int | None, report: Report | None
    ) -> pa.Table:
        return parse_ratings(path, start, end, self.ratings_rules, report)

    def range_lines(self, path: Path, start: int, end: int | None) -> Iterator[RatingLine]:
        return range_lines(path, start, end, self.ratings_rules)

    def read_items(self, path: Path, report: Report | None = None) -> pa.Table:
        return self.items_reader(path, report)

    def read_users(self, path: Path, report: Report | None = None) -> pa.Table:
        if self.users_reader is None:
            return super().read_users(path, report)
        return self.users_reader(path, report)


#: Every variant by key, in the order detection tries them: a directory with
#: ``training_set/`` is read from it even beside ``combined_data_*.txt``.
FORMATS: dict[str, SourceVariant] = {
    variant.key: variant
    for variant in (
        NetflixTrainingSet(),
        NetflixCombined(),
        MovieLens(
            key="ml-100k",
            ratings_file=movielens.ML100K_RATINGS,
            ratings_rules=_movielens_rules.ML100K_RATINGS,
            items_file=movielens.ML100K_ITEMS,
            items_reader=movielens.read_items_100k,
            users_file=movielens.ML100K_USERS,
            users_reader=movielens.read_users_100k,
        ),
        # ML-10M shares ML-1M's layout with half-star ratings, so ml-1m accepts them.
        MovieLens(
            key="ml-1m",
            ratings_file=movielens.ML1M_RATINGS,
            ratings_rules=_movielens_rules.ML10M_RATINGS,
            items_file=movielens.ML1M_ITEMS,
            items_reader=movielens.read_items_1m,
            users_file=movielens.ML1M_USERS,
            users_reader=movielens.read_users_1m,
        ),
        MovieLens(
            key="ml-csv",
            ratings_file=movielens.CSV_RATINGS,
            ratings_rules=_movielens_rules.CSV_RATINGS,
            items_file=movielens.CSV_ITEMS,
            items_reader=movielens.read_items_csv,
        ),
    )
}
#: The ``--format`` names, in the table's order.
FORMAT_NAMES = tuple(dict.fromkeys(variant.format for variant in FORMATS.values()))


def detect(root: Path) -> SourceVariant:
    """The variant of a source directory: the first in ``FORMATS`` that it matches.

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
    for variant in FORMATS.values():
        if variant.present(root):
            return variant
    raise SourceError(
        f"{root}: no known source format (expected a Netflix Prize directory with "
        f"{netflix.TRAINING_DIR}/ or {netflix.COMBINED_GLOB}, or a MovieLens directory with "
        f"{movielens.ML100K_RATINGS}, "
        f"{movielens.ML1M_RATINGS} or {movielens.CSV_RATINGS})"
    )
