"""Readers for the Netflix Prize files: training_set/mv_*.txt, Kaggle's combined_data_*.txt,
probe, qualifying, titles.

Every reader has a vectorized fast path (pyarrow) and, only when that path finds
something wrong, a line-by-line re-scan that names the first bad line as
``DataFormatError(path, lineno, reason)`` or quarantines the bad lines. Both paths
apply the same rules (``_netflix_rules``). The training_set reader is here; the
combined files' parser is ``_netflix_combined``, the side files' ``_netflix_side``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa

from cflib.errors import DataFormatError, SourceError
from cflib.logs import stage_logger
from cflib.schema import RAW_RATINGS
from cflib.sources._lines import Cleaned, classify, fast_or_quarantine, header_id, scan
from cflib.sources._netflix_combined import combined_lines as combined_lines
from cflib.sources._netflix_combined import parse_combined
from cflib.sources._netflix_csv import MIN_DAY, read_rating_lines
from cflib.sources._netflix_rules import TRAINING
from cflib.sources._netflix_side import TITLES_ENCODING as TITLES_ENCODING
from cflib.sources._netflix_side import read_movie_titles as read_movie_titles
from cflib.sources._netflix_side import read_probe as read_probe
from cflib.sources._netflix_side import read_qualifying as read_qualifying
from cflib.sources.accounting import Report, Tally

logger = stage_logger("ingest")

TRAINING_DIR = "training_set"
PROBE_FILE = "probe.txt"
QUALIFYING_FILE = "qualifying.txt"
TITLES_FILE = "movie_titles.txt"
TRAINING_GLOB = "mv_*.txt"
COMBINED_GLOB = "combined_data_*.txt"

_TRAINING_NAME = re.compile(r"mv_([0-9]+)\.txt")
_DIGIT_RUNS = re.compile(r"([0-9]+)")
# Bytes a training body may hold once CRLF is folded to LF; anything else (spaces, a sign,
# hex digits, a stray CR or colon) sends the shard to the line scan, since pyarrow would
# otherwise accept " 12" or "0x1f" as numbers.
_TRAINING_BYTES = b"0123456789,-\n"


# --- training_set ----------------------------------------------------------------------------


def list_training_files(root: Path) -> list[Path]:
    """The rating files of a Netflix Prize directory, sorted by name.

    Args:
        root: the directory that holds ``training_set/``.

    Returns:
        ``root/training_set/mv_*.txt``, sorted.

    Raises:
        SourceError: the directory is missing or holds no ``mv_*.txt``.
    """
    directory = Path(root) / TRAINING_DIR
    if not directory.is_dir():
        raise SourceError(f"{directory}: directory does not exist")
    paths = sorted(directory.glob(TRAINING_GLOB))
    if not paths:
        raise SourceError(f"{directory}: no {TRAINING_GLOB} files")
    return paths


def _training_header(path: Path, data: bytes) -> tuple[int, int]:
    """Movie id from line 1 and the offset where the body starts."""
    if not data:
        raise DataFormatError(path, 1, "empty file")
    newline = data.find(b"\n")
    end = len(data) if newline < 0 else newline
    line = data[:end].decode("latin-1")
    line = line[:-1] if line.endswith("\r") else line
    movie, reason = header_id(line, first=True)
    if movie is None:
        raise DataFormatError(path, 1, reason)
    named = _TRAINING_NAME.fullmatch(path.name)
    if named is not None and int(named.group(1)) != movie:
        raise DataFormatError(path, 1, f"movie id {movie} does not match file name {path.name}")
    return movie, end + 1


def _blank_lines(data: bytes) -> int:
    """Number of empty lines after a training file's header (pyarrow skips them)."""
    body = data[data.find(b"\n") + 1 :].replace(b"\r\n", b"\n") if b"\n" in data else b""
    newline = np.frombuffer(body + b"\n", np.uint8) == ord("\n")
    # A line is empty where a newline starts the body or follows another newline; the
    # appended newline ends a last line that lacks one (and adds no empty line itself).
    return int(newline[0] and len(body) > 0) + int(np.count_nonzero(newline[1:-1] & newline[:-2]))


def read_training_files(paths: Sequence[Path], report: Report | None = None) -> pa.Table:
    """Parse Netflix ``mv_*.txt`` rating files into one table.

    The bodies of all files are concatenated and parsed by one ``pyarrow.csv`` call
    (the per-call cost dominates small files); the movie id of each row comes from its
    file's header. Rows keep file order, then line order.

    Args:
        paths: rating files; each starts with ``MovieID:`` then holds
            ``CustomerID,Rating,YYYY-MM-DD`` lines.
        report: where each file's tally goes and, unless it is strict, its bad lines
            (a file whose header is bad is quarantined whole). None: raise at the first.

    Returns:
        A table with schema ``RAW_RATINGS``.

    Raises:
        DataFormatError: a malformed line, with its file and 1-based line number
            (without a report, or with a strict one).
    """
    paths = [Path(p) for p in paths]
    datas = [path.read_bytes() for path in paths]

    def fast() -> tuple[pa.Table, list[tuple[Path, Tally]]]:
        table, tallies = _training_table(paths, datas)
        return table, list(zip(paths, tallies, strict=True))

    return fast_or_quarantine(
        report, fast, clean=lambda report: _clean_training(paths, datas, report)
    )


def _clean_training(paths: list[Path], datas: list[bytes], report: Report) -> pa.Table:
    """Quarantine the bad lines of each file, then parse what is left."""
    keep_paths, keep_datas = [], []
    for path, data in zip(paths, datas, strict=True):
        cleaned = _classify_training(path, data, report)
        if cleaned.lines:  # the header is valid
            keep_paths.append(path)
            keep_datas.append(cleaned.text().encode("latin-1"))
    if not keep_paths:
        return RAW_RATINGS.empty_table()
    return _training_table(keep_paths, keep_datas)[0]


def _classify_training(path: Path, data: bytes, report: Report) -> Cleaned:
    """The line-by-line reading of one training file (header checked against its name)."""
    named = _TRAINING_NAME.fullmatch(path.name)

    def check(movie: int) -> str | None:
        if named is None or int(named.group(1)) == movie:
            return None
        return f"movie id {movie} does not match file name {path.name}"

    return classify(path, data.decode("latin-1"), TRAINING, report, check_header=check)


def training_lines(path: Path) -> Iterator[tuple[str, int, str, int, int]]:
    """(file, line number, line, customer, movie) of each rating line a read keeps."""
    cleaned = _classify_training(path, path.read_bytes(), Report())
    if cleaned.lines:
        movie = int(cleaned.lines[0][:-1])
        for lineno, line in zip(cleaned.numbers[1:], cleaned.lines[1:], strict=True):
            yield str(path), lineno, line, int(line.split(",", 1)[0]), movie


def _training_table(paths: list[Path], datas: list[bytes]) -> tuple[pa.Table, list[Tally]]:
    """The fast path of ``read_training_files`` over the files' bytes, and their tallies."""
    movies = np.empty(len(paths), np.int64)
    counts = np.empty(len(paths), np.int64)
    parts: list[bytes | memoryview] = []
    for i, (path, data) in enumerate(zip(paths, datas, strict=True)):
        movies[i], start = _training_header(path, data)
        counts[i] = data.count(b"\n", start)
        parts.append(memoryview(data)[start:])
        if start < len(data) and data[-1:] != b"\n":
            counts[i] += 1
            parts.append(b"\n")
    lines = counts + 1  # each file's lines, its header included
    buf = b"".join(parts)
    del parts
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    table = _parse_bodies(buf)
    del buf
    if table is not None and table.num_rows != counts.sum():
        # pyarrow skips blank lines, which the line counts include: recount without them.
        for i, data in enumerate(datas):
            counts[i] -= _blank_lines(data)
    if table is None or table.num_rows != counts.sum():
        _scan_training(paths, range(len(paths)))
    users = table.column("raw_user").to_numpy()
    ratings = table.column("rating").to_numpy()
    dates = table.column("date").combine_chunks()
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False)
    bad = (users < 1) | (ratings < 1) | (ratings > 5) | (days < MIN_DAY)
    if bad.any():
        row = int(np.argmax(bad))
        _scan_training(paths, [int(np.searchsorted(np.cumsum(counts), row, side="right"))])
    tallies = [
        Tally(lines=int(n), kept=int(k), headers=1, blank=int(n - 1 - k))
        for n, k in zip(lines, counts, strict=True)
    ]
    table = pa.Table.from_arrays(
        [
            pa.array(users, pa.int64()),
            pa.array(np.repeat(movies, counts), pa.int64()),
            pa.array(ratings.astype(np.float32), pa.float32()),
            dates,
        ],
        schema=RAW_RATINGS,
    )
    return table, tallies


def _parse_bodies(buf: bytes) -> pa.Table | None:
    """One pyarrow parse of concatenated bodies, or None when they break the rules."""
    if buf.translate(None, _TRAINING_BYTES):
        return None
    return read_rating_lines(buf)


def _scan_training(paths: Sequence[Path], which: Sequence[int]) -> NoReturn:
    """Raise the first line error among ``paths[i]`` for i in ``which``."""
    for i in which:
        text = paths[i].read_bytes().decode("latin-1")
        found = scan(text, TRAINING)
        if found is not None:
            raise DataFormatError(paths[i], *found)
    raise DataFormatError(
        paths[which[0]],
        None,
        "pyarrow refused these rating files but no line breaks the format rules",
    )


# --- combined_data_*.txt (Kaggle) ------------------------------------------------------------


def _natural_key(path: Path) -> list[str | int]:
    """Sort key that orders digit runs by value: combined_data_9 before combined_data_10."""
    return [int(run) if run.isdigit() else run for run in _DIGIT_RUNS.split(path.name)]


def list_combined_files(root: Path) -> list[Path]:
    """The ``combined_data_*.txt`` files of Kaggle's Netflix Prize directory, in order.

    Args:
        root: the directory that holds ``combined_data_1.txt`` .. ``combined_data_4.txt``.

    Returns:
        ``root/combined_data_*.txt``, sorted naturally (``_10`` after ``_9``).

    Raises:
        SourceError: the directory is missing or holds no ``combined_data_*.txt``.
    """
    directory = Path(root)
    if not directory.is_dir():
        raise SourceError(f"{directory}: directory does not exist")
    paths = sorted((p for p in directory.glob(COMBINED_GLOB) if p.is_file()), key=_natural_key)
    if not paths:
        raise SourceError(f"{directory}: no {COMBINED_GLOB} files")
    return paths


def read_combined_range(
    path: Path, *, start: int = 0, end: int | None = None, report: Report | None = None
) -> pa.Table:
    """Parse the lines of a ``combined_data_*.txt`` file that start in ``[start, end)``.

    The file is the training files concatenated: ``MovieID:`` lines, each followed by its
    ``CustomerID,Rating,YYYY-MM-DD`` lines. Cut it with ``movielens.byte_ranges``; the
    ranges together read every line once, whatever the cuts. A range that starts inside
    a block takes the movie id from the last header before it, searching backwards.

    Args:
        path: the combined file.
        start: first byte of the range; the range reads the lines that start in it.
        end: end of the range (exclusive); None reads to the end of the file.
        report: where the range's tally and (unless strict) its bad lines go; a bad
            header's whole block is quarantined. None: raise at the first bad line.

    Returns:
        A table with schema ``RAW_RATINGS`` (``raw_item`` is the block's movie id), in
        file order.

    Raises:
        DataFormatError: a malformed line, numbered in the whole file; a data line
            before any header (the file's first such line); or an out-of-range id in
            the header of the block the range starts inside.
        ValueError: ``start`` or ``end`` name no range.
    """
    return parse_combined(Path(path), start, end, report)
