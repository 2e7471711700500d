"""Readers for the Netflix Prize files: training_set/mv_*.txt, Kaggle's combined_data_*.txt,
probe, qualifying, titles.

Every reader has a vectorized fast path (pyarrow) and, only when that path finds
something wrong, a line-by-line re-scan that names the first bad line as
``DataFormatError(path, lineno, reason)``. Both paths apply the same rules, which
live in the field checkers below.

Line rules shared by all the files:

* ``\\n`` or ``\\r\\n`` line endings; the last line may lack its newline.
* Blank lines (empty, or a lone ``\\r``) are skipped wherever they are; line numbers
  in errors still count them, so they point at the physical line.
* Numbers are plain ASCII digits: no sign, no spaces, no hex. Leading zeros are fine.
* A ``MovieID:`` header holds a positive integer followed by a colon. A header with no
  data lines after it (a movie without ratings) is allowed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cflib.errors import DataFormatError, SourceError
from cflib.schema import RAW_ITEMS, RAW_PAIRS, RAW_QUALIFYING, RAW_RATINGS
from cflib.sources._lines import (
    PROBE,
    QUALIFYING,
    TITLES,
    TRAINING,
    Cleaned,
    Layout,
    classify,
    header_id,
    parse_rows,
    raise_first_error,
    scan,
)
from cflib.sources._netflix_combined import combined_lines as combined_lines
from cflib.sources._netflix_combined import parse_combined
from cflib.sources._netflix_csv import MIN_DAY, read_rating_lines
from cflib.sources.accounting import Report, Tally

logger = logging.getLogger(__name__)

TRAINING_DIR = "training_set"
PROBE_FILE = "probe.txt"
QUALIFYING_FILE = "qualifying.txt"
TITLES_FILE = "movie_titles.txt"
TRAINING_GLOB = "mv_*.txt"
COMBINED_GLOB = "combined_data_*.txt"
TITLES_ENCODING = "iso-8859-1"

_TRAINING_NAME = re.compile(r"mv_([0-9]+)\.txt")
_DIGIT_RUNS = re.compile(r"([0-9]+)")
# Bytes a training body may hold once CRLF is folded to LF; anything else (spaces, a sign,
# hex digits, a stray CR or colon) sends the shard to the line scan, since pyarrow would
# otherwise accept " 12" or "0x1f" as numbers.
_TRAINING_BYTES = b"0123456789,-\n"


# The same rules as pyarrow regular expressions, for the vectorized paths.
_HEADER_PA = r"^[0-9]+:$"
_PROBE_PA = r"^[0-9]+$"
_QUALIFYING_PA = r"^[0-9]+,[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TITLE_PA = r"^(?P<id>[0-9]+),(?P<year>[0-9]{4}|NULL),(?P<title>.+)$"

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
    try:
        table, tallies = _training_table(paths, datas)
    except DataFormatError:
        if report is None or report.strict:
            raise
        return _clean_training(paths, datas, report)
    if report is not None:
        for path, tally in zip(paths, tallies, strict=True):
            report.count(path, tally)
    return table


def _clean_training(paths: list[Path], datas: list[bytes], report: Report) -> pa.Table:
    """Quarantine the bad lines of each file, then parse what is left."""
    keep_paths, keep_datas = [], []
    for path, data in zip(paths, datas, strict=True):
        cleaned = _classify_training(path, data, report)
        report.count(path, cleaned.tally)
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


# --- probe, qualifying, movie titles -----------------------------------------------------

T = TypeVar("T")


def _read_text(path: Path, encoding: str) -> str:
    """A file's text with CRLF folded to LF."""
    data = path.read_bytes().replace(b"\r\n", b"\n")
    return data.removesuffix(b"\r").decode(encoding)


def _split_lines(text: str) -> tuple[pa.Array, int]:
    """The lines of a text as one string array, and how many there are (a final newline
    ends the last line rather than starting an empty one)."""
    lines = pc.list_flatten(pc.split_pattern(pa.array([text], pa.large_string()), "\n"))
    return lines, len(lines) - (not text or text.endswith("\n"))


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _cast(array: pa.Array, to: pa.DataType, path: Path, text: str, layout: Layout) -> pa.Array:
    """Cast strings the regex already vetted; overflow and bad dates go to the line scan."""
    try:
        return pc.cast(array, to)
    except pa.ArrowInvalid:
        raise_first_error(path, text, layout)


def _lenient(
    path: Path,
    text: str,
    layout: Layout,
    report: Report | None,
    parse: Callable[[str], tuple[T, Tally]],
) -> T:
    """``parse(text)``; when it finds a bad line and ``report`` is lenient, quarantine the
    bad lines and parse the rest. The file's tally goes to ``report``."""
    try:
        result, tally = parse(text)
    except DataFormatError:
        if report is None or report.strict:
            raise
        cleaned = classify(path, text, layout, report)
        result, _ = parse(cleaned.text())
        tally = cleaned.tally
    if report is not None:
        report.count(path, tally)
    return result


def _read_blocks(
    path: Path, text: str, layout: Layout, data_re: str
) -> tuple[np.ndarray, pa.Array, Tally]:
    """Movie id of each data line, the data lines, and the tally of a ``MovieID:`` block file."""
    lines, n_lines = _split_lines(text)
    lengths = _np(pc.binary_length(lines))[:n_lines]
    lines = lines.slice(0, n_lines)
    nonblank = lengths > 0
    header = nonblank & _np(pc.ends_with(lines, ":"))
    ok = np.where(
        header,
        _np(pc.match_substring_regex(lines, _HEADER_PA)),
        _np(pc.match_substring_regex(lines, data_re)),
    )
    hpos, dpos = np.flatnonzero(header), np.flatnonzero(nonblank & ~header)
    if not ok[nonblank].all() or (dpos.size and (not hpos.size or dpos[0] < hpos[0])):
        raise_first_error(path, text, layout)
    ids = _np(
        _cast(pc.utf8_slice_codeunits(lines.take(hpos), 0, -1), pa.int64(), path, text, layout)
    )
    if (ids < 1).any():
        raise_first_error(path, text, layout)
    tally = Tally(
        lines=n_lines, kept=dpos.size, headers=hpos.size, blank=n_lines - int(nonblank.sum())
    )
    return ids[np.searchsorted(hpos, dpos) - 1], lines.take(dpos), tally


def read_probe(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ``probe.txt``: blocks of ``MovieID:`` then one ``CustomerID`` per line.

    Args:
        path: the probe file.
        report: where the file's tally and (unless strict) its bad lines go; a bad
            header's whole block is quarantined. None: raise at the first bad line.

    Returns:
        A table with schema ``RAW_PAIRS``, in file order.

    Raises:
        DataFormatError: a malformed line, or a customer line before any header.
    """
    path = Path(path)

    def parse(text: str) -> tuple[pa.Table, Tally]:
        movies, lines, tally = _read_blocks(path, text, PROBE, _PROBE_PA)
        users = _np(_cast(lines, pa.int64(), path, text, PROBE))
        if (users < 1).any():
            raise_first_error(path, text, PROBE)
        return pa.Table.from_arrays([pa.array(movies), pa.array(users)], schema=RAW_PAIRS), tally

    return _lenient(path, _read_text(path, "latin-1"), PROBE, report, parse)


def read_qualifying(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ``qualifying.txt``: blocks of ``MovieID:`` then ``CustomerID,YYYY-MM-DD`` lines.

    Args:
        path: the qualifying file.
        report: as for ``read_probe``.

    Returns:
        A table with schema ``RAW_QUALIFYING``, in file order (the order submissions use).

    Raises:
        DataFormatError: a malformed line, or a customer line before any header.
    """
    path = Path(path)

    def parse(text: str) -> tuple[pa.Table, Tally]:
        movies, lines, tally = _read_blocks(path, text, QUALIFYING, _QUALIFYING_PA)
        # The regex fixed the shape: the date is the last 10 characters, after one comma.
        user_text = pc.utf8_slice_codeunits(lines, 0, -11)
        users = _np(_cast(user_text, pa.int64(), path, text, QUALIFYING))
        dates = _cast(pc.utf8_slice_codeunits(lines, -10), pa.date32(), path, text, QUALIFYING)
        if ((users < 1) | (_np(dates.cast(pa.int32())) < MIN_DAY)).any():
            raise_first_error(path, text, QUALIFYING)
        arrays = [pa.array(movies), pa.array(users), dates]
        return pa.Table.from_arrays(arrays, schema=RAW_QUALIFYING), tally

    return _lenient(path, _read_text(path, "latin-1"), QUALIFYING, report, parse)


def read_movie_titles(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ``movie_titles.txt`` (ISO-8859-1): ``MovieID,Year,Title`` lines.

    The title is everything after the second comma, so it may hold commas; a year of
    ``NULL`` becomes null. Each movie id may appear once.

    Args:
        path: the titles file.
        report: as for ``read_probe``; a repeated movie id is quarantined too.

    Returns:
        A table with schema ``RAW_ITEMS``, in file order.

    Raises:
        DataFormatError: a malformed line, or a movie id listed twice.
    """
    path = Path(path)
    text = _read_text(path, TITLES_ENCODING)
    try:
        table, tally = _titles(path, text)
    except DataFormatError:
        if report is None or report.strict:
            raise
        rows = parse_rows(path, text, TITLES, what="movie id", report=report)
        years = [None if row[1] == "NULL" else int(row[1]) for row in rows]
        return pa.Table.from_arrays(
            [
                pa.array([int(row[0]) for row in rows], pa.int64()),
                pa.array(years, pa.int16()),
                pa.array([row[2] for row in rows], pa.string()),
            ],
            schema=RAW_ITEMS,
        )
    if report is not None:
        report.count(path, tally)
    return table


def _titles(path: Path, text: str) -> tuple[pa.Table, Tally]:
    """The vectorized path of ``read_movie_titles``."""
    lines, n_lines = _split_lines(text)
    pos = np.flatnonzero(_np(pc.binary_length(lines.slice(0, n_lines))) > 0)
    parts = pc.extract_regex(lines.take(pos), _TITLE_PA)
    if parts.null_count:
        raise_first_error(path, text, TITLES)
    ids = _np(_cast(parts.field("id"), pa.int64(), path, text, TITLES))
    if (ids < 1).any():
        raise_first_error(path, text, TITLES)
    order = np.argsort(ids, kind="stable")
    repeats = order[1:][ids[order][1:] == ids[order][:-1]]
    if repeats.size:
        second = int(repeats.min())
        first = int(np.flatnonzero(ids == ids[second])[0])
        raise DataFormatError(
            path, int(pos[second]) + 1, f"movie id {ids[second]} already on line {pos[first] + 1}"
        )
    year = parts.field("year")
    year = pc.if_else(pc.equal(year, "NULL"), pa.scalar(None, year.type), year)
    table = pa.Table.from_arrays(
        [pa.array(ids), pc.cast(year, pa.int16()), pc.cast(parts.field("title"), pa.string())],
        schema=RAW_ITEMS,
    )
    return table, Tally(lines=n_lines, kept=pos.size, blank=n_lines - pos.size)
