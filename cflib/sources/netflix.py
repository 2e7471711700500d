"""Readers for the Netflix Prize files: training_set/mv_*.txt, probe, qualifying, titles.

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

import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cflib.errors import DataFormatError, SourceError
from cflib.schema import RAW_ITEMS, RAW_PAIRS, RAW_QUALIFYING, RAW_RATINGS

logger = logging.getLogger(__name__)

TRAINING_DIR = "training_set"
PROBE_FILE = "probe.txt"
QUALIFYING_FILE = "qualifying.txt"
TITLES_FILE = "movie_titles.txt"
TRAINING_GLOB = "mv_*.txt"
TITLES_ENCODING = "iso-8859-1"

_TRAINING_NAME = re.compile(r"mv_([0-9]+)\.txt")
_INT64_MAX = 2**63 - 1
# date32 value of 0001-01-01: pyarrow parses year 0000, Python's date (and the rules here) do not.
_MIN_DAY = (dt.date(1, 1, 1) - dt.date(1970, 1, 1)).days
# Bytes a training body may hold once CRLF is folded to LF; anything else (spaces, a sign,
# hex digits, a stray CR or colon) sends the shard to the line scan, since pyarrow would
# otherwise accept " 12" or "0x1f" as numbers.
_TRAINING_BYTES = b"0123456789,-\n"

_ID_RE = re.compile(r"[0-9]+")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_RE = re.compile(r"[0-9]{4}|NULL")

# The same rules as pyarrow regular expressions, for the vectorized paths.
_HEADER_PA = r"^[0-9]+:$"
_PROBE_PA = r"^[0-9]+$"
_QUALIFYING_PA = r"^[0-9]+,[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TITLE_PA = r"^(?P<id>[0-9]+),(?P<year>[0-9]{4}|NULL),(?P<title>.+)$"

_CSV_PARSE = pacsv.ParseOptions(
    delimiter=",",
    quote_char=False,
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=True,
)
_CSV_CONVERT = pacsv.ConvertOptions(
    column_types={"raw_user": pa.int64(), "rating": pa.int8(), "date": pa.date32()},
    null_values=[],
    strings_can_be_null=False,
    check_utf8=False,
)
# Large blocks parse ~2x faster than the 1 MiB default on shard-sized buffers.
_CSV_BLOCK = 1 << 24


# --- field checkers: each returns None when the field is valid, else a short reason -------


def _check_id(what: str) -> Callable[[str], str | None]:
    def check(field: str) -> str | None:
        if _ID_RE.fullmatch(field) and 1 <= int(field) <= _INT64_MAX:
            return None
        return f"{what} {field!r} is not a positive integer"

    return check


def _check_rating(field: str) -> str | None:
    if _ID_RE.fullmatch(field) and 1 <= int(field) <= 5:
        return None
    return f"rating {field!r} is not an integer in 1..5"


def _check_date(field: str) -> str | None:
    if _DATE_RE.fullmatch(field):
        try:
            dt.date.fromisoformat(field)
            return None
        except ValueError:
            pass
    return f"bad date {field!r}"


def _check_year(field: str) -> str | None:
    return None if _YEAR_RE.fullmatch(field) else f"year {field!r} is not 4 digits or NULL"


def _check_title(field: str) -> str | None:
    return None if field else "empty title"


_check_customer = _check_id("customer id")


def _header_id(line: str) -> tuple[int | None, str]:
    """The movie id of a ``MovieID:`` line, or None and the reason it is not one."""
    digits = line[:-1]
    if not line.endswith(":") or not _ID_RE.fullmatch(digits):
        return None, f"expected 'MovieID:', got {line!r}"
    value = int(digits)
    if not 1 <= value <= _INT64_MAX:
        return None, f"movie id {digits!r} is not a positive integer"
    return value, ""


# --- the shared line scanner ---------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """How one file variant is laid out: its data fields and where headers go."""

    names: str  # the data line as documentation, e.g. "CustomerID,Rating,Date"
    fields: tuple[Callable[[str], str | None], ...]
    headers: str  # "first": line 1 only; "blocks": anywhere; "none": no headers
    split_all: bool = True  # False: split on the first len(fields) - 1 commas only


_TRAINING = _Layout("CustomerID,Rating,Date", (_check_customer, _check_rating, _check_date), "first")
_PROBE = _Layout("CustomerID", (_check_customer,), "blocks")
_QUALIFYING = _Layout("CustomerID,Date", (_check_customer, _check_date), "blocks")
_TITLES = _Layout(
    "MovieID,Year,Title", (_check_id("movie id"), _check_year, _check_title), "none", False
)


def _line_error(line: str, lineno: int, layout: _Layout, seen_header: bool) -> str | None:
    """Why one non-blank line is malformed, or None."""
    if layout.headers == "first" and lineno == 1:
        movie, reason = _header_id(line)
        return None if movie is not None else f"first line should be 'MovieID:', got {line!r}"
    if layout.headers == "blocks" and line.endswith(":"):
        return _header_id(line)[1] or None
    if layout.headers == "first" and line.endswith(":"):
        return f"unexpected header {line!r}: a training file holds one movie"
    if layout.headers == "blocks" and not seen_header:
        return f"data line {line!r} before any 'MovieID:' header"
    n = len(layout.fields)
    parts = line.split(",") if layout.split_all else line.split(",", n - 1)
    if len(parts) != n:
        noun = "field" if n == 1 else "comma-separated fields"
        return f"expected {n} {noun} ({layout.names}), got {len(parts)}"
    for check, part in zip(layout.fields, parts, strict=True):
        if (reason := check(part)) is not None:
            return reason
    return None


def _scan(path: Path, text: str, layout: _Layout) -> tuple[int, str] | None:
    """Line number and reason of the first malformed line of ``text``, or None."""
    if not text:
        return (1, "empty file") if layout.headers == "first" else None
    seen_header = False
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            if layout.headers == "first" and lineno == 1:
                return 1, "first line should be 'MovieID:', got ''"
            continue
        if (reason := _line_error(line, lineno, layout, seen_header)) is not None:
            return lineno, reason
        seen_header = seen_header or line.endswith(":")
    return None


def _raise_first_error(path: Path, text: str, layout: _Layout, fallback: str) -> None:
    found = _scan(path, text, layout)
    if found is not None:
        raise DataFormatError(path, *found)
    # The vectorized path refused something the line rules accept: a bug, but say where.
    raise DataFormatError(path, None, fallback)


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
    movie, _ = _header_id(line)
    if movie is None:
        raise DataFormatError(path, 1, f"first line should be 'MovieID:', got {line!r}")
    named = _TRAINING_NAME.fullmatch(path.name)
    if named is not None and int(named.group(1)) != movie:
        raise DataFormatError(path, 1, f"movie id {movie} does not match file name {path.name}")
    return movie, end + 1


def _blank_lines(body: bytes) -> int:
    """Number of empty lines in a newline-terminated, LF-only body."""
    if not body:
        return 0
    newline = np.frombuffer(body, np.uint8) == ord("\n")
    return int(newline[0]) + int(np.count_nonzero(newline[1:] & newline[:-1]))


def read_training_files(paths: Sequence[Path]) -> pa.Table:
    """Parse Netflix ``mv_*.txt`` rating files into one table.

    The bodies of all files are concatenated and parsed by one ``pyarrow.csv`` call
    (the per-call cost dominates small files); the movie id of each row comes from its
    file's header. Rows keep file order, then line order.

    Args:
        paths: rating files; each starts with ``MovieID:`` then holds
            ``CustomerID,Rating,YYYY-MM-DD`` lines.

    Returns:
        A table with schema ``RAW_RATINGS``.

    Raises:
        DataFormatError: a malformed line, with its file and 1-based line number.
    """
    paths = [Path(p) for p in paths]
    movies = np.empty(len(paths), np.int64)
    counts = np.empty(len(paths), np.int64)
    parts: list[bytes | memoryview] = []
    for i, path in enumerate(paths):
        data = path.read_bytes()
        movies[i], start = _training_header(path, data)
        counts[i] = data.count(b"\n", start)
        parts.append(memoryview(data)[start:])
        if start < len(data) and data[-1:] != b"\n":
            counts[i] += 1
            parts.append(b"\n")
    buf = b"".join(parts)
    del parts
    if b"\r" in buf:
        buf = buf.replace(b"\r\n", b"\n")
    table = _parse_bodies(buf)
    del buf
    if table is not None and table.num_rows != counts.sum():
        # pyarrow skips blank lines, which the line counts include: recount without them.
        for i, path in enumerate(paths):
            counts[i] -= _blank_lines(_folded_body(path))
    if table is None or table.num_rows != counts.sum():
        _scan_training(paths, range(len(paths)))
        raise AssertionError("unreachable: _scan_training raises")
    users = table.column("raw_user").to_numpy()
    ratings = table.column("rating").to_numpy()
    dates = table.column("date").combine_chunks()
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False)
    bad = (users < 1) | (ratings < 1) | (ratings > 5) | (days < _MIN_DAY)
    if bad.any():
        row = int(np.argmax(bad))
        _scan_training(paths, [int(np.searchsorted(np.cumsum(counts), row, side="right"))])
    return pa.Table.from_arrays(
        [
            pa.array(users, pa.int64()),
            pa.array(np.repeat(movies, counts), pa.int64()),
            pa.array(ratings.astype(np.float32), pa.float32()),
            dates,
        ],
        schema=RAW_RATINGS,
    )


def _parse_bodies(buf: bytes) -> pa.Table | None:
    """One pyarrow parse of concatenated bodies, or None when they break the rules."""
    if buf.translate(None, _TRAINING_BYTES):
        return None
    try:
        return pacsv.read_csv(
            pa.py_buffer(buf),
            read_options=pacsv.ReadOptions(
                column_names=["raw_user", "rating", "date"], block_size=_CSV_BLOCK
            ),
            parse_options=_CSV_PARSE,
            convert_options=_CSV_CONVERT,
        )
    except pa.ArrowInvalid as exc:
        logger.debug("fast parse failed, scanning lines: %s", exc)
        return None


def _folded_body(path: Path) -> bytes:
    """A file's lines after the header, LF-only and newline-terminated."""
    data = path.read_bytes()
    newline = data.find(b"\n")
    body = b"" if newline < 0 else data[newline + 1 :].replace(b"\r\n", b"\n")
    return body if not body or body.endswith(b"\n") else body + b"\n"


def _scan_training(paths: Sequence[Path], which: Sequence[int]) -> None:
    """Raise the first line error among ``paths[i]`` for i in ``which``."""
    for i in which:
        text = paths[i].read_bytes().decode("latin-1")
        found = _scan(paths[i], text, _TRAINING)
        if found is not None:
            raise DataFormatError(paths[i], *found)
    raise DataFormatError(
        paths[which[0]],
        None,
        "pyarrow refused these rating files but no line breaks the format rules",
    )
