"""The byte-range parser behind ``netflix.read_combined_range`` (``combined_data_*.txt``).

A combined file is the training files concatenated: ``MovieID:`` header lines, each
followed by its ``CustomerID,Rating,YYYY-MM-DD`` lines. A range reads the lines that
start in it (``_ranges``); when it begins inside a block, the movie id comes from the
last header before it, found by reading the file backwards in ``BACK_CHUNK`` steps.

The fast path finds the (few) header lines with ``bytes.find``, joins the data lines
between them and parses them with one ``pyarrow.csv`` call; each row's movie id is its
block's, repeated by the block's row count. Anything it does not accept sends the range
to the shared line scanner, which names the first bad line in the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa

from cflib.errors import DataFormatError
from cflib.logs import stage_logger
from cflib.schema import RAW_RATINGS
from cflib.sources._lines import (
    BEFORE_HEADERS,
    IN_BLOCK,
    INT64_MAX,
    Cleaned,
    classify,
    fast_or_quarantine,
    header_id,
    scan,
)
from cflib.sources._netflix_csv import MIN_DAY, read_rating_lines
from cflib.sources._netflix_rules import COMBINED
from cflib.sources._ranges import check_range, first_lineno, read_range
from cflib.sources.accounting import Report, Tally, count_lines, range_tally

logger = stage_logger("ingest")

#: Step of the backwards search for the header of a block that a range starts inside.
BACK_CHUNK = 1 << 16

# Any line that ends with a colon is a header, valid or not (data lines hold no colon).
_HEADER_RE = re.compile(rb"^([^\n]*?):\r?$", re.MULTILINE)
# Bytes a range may hold once CRLF is folded: pyarrow would accept " 12" or "0x1f" as
# numbers, so anything else goes to the line scan. Colons only appear in headers.
_DATA_BYTES = b"0123456789,-\n:"


def parse_combined(
    path: Path, start: int, end: int | None, report: Report | None = None
) -> pa.Table:
    """Read and parse the lines of a combined file that start in ``[start, end)``.

    The range's tally goes to ``report``; unless it is strict, bad lines (and the whole
    block of a bad header) go to its quarantine instead of raising.
    """
    path = Path(path)
    check_range(start, end)
    data, offset = read_range(path, start, end)

    def fast() -> tuple[pa.Table, list[tuple[Path, Tally]]] | None:
        lines = count_lines(data)
        found = _fast_table(path, data, offset)
        if found is None:
            return None
        table, headers = found
        return table, [(path, range_tally(lines, kept=table.num_rows, headers=headers))]

    return fast_or_quarantine(
        report,
        fast,
        clean=lambda report: _clean(path, data, offset, report),
        fail=lambda: _fail(path, data, offset),
    )


def _classify(
    path: Path, data: bytearray, offset: int, report: Report
) -> tuple[Cleaned, int | None]:
    """A range's lines sorted by ``classify``, and the movie of the block it starts inside
    (None if it starts before any header or inside a bad header's block)."""
    movie, state, _ = _start_state(path, offset) if offset else (None, BEFORE_HEADERS, "")
    text = data.decode("latin-1")
    first = first_lineno(path, offset)
    return classify(path, text, COMBINED, report, first_lineno=first, block=state), movie


def _clean(path: Path, data: bytearray, offset: int, report: Report) -> pa.Table:
    """Quarantine the bad lines of a range, then parse what is left."""
    cleaned, _ = _classify(path, data, offset, report)
    found = _fast_table(path, bytearray(cleaned.text().encode("latin-1")), offset)
    if found is None:
        raise DataFormatError(path, None, "pyarrow refused lines that the format rules accept")
    return found[0]


def combined_lines(
    path: Path, start: int, end: int | None
) -> Iterator[tuple[str, int, str, int, int]]:
    """(file, line number, line, customer, movie) of each rating line a read keeps."""
    data, offset = read_range(path, start, end)
    cleaned, movie = _classify(path, data, offset, Report())
    for lineno, line in zip(cleaned.numbers, cleaned.lines, strict=True):
        if line.endswith(":"):
            movie = int(line[:-1])
        else:
            assert movie is not None  # classify keeps no data line outside a valid block
            yield str(path), lineno, line, int(line.split(",", 1)[0]), movie


def _fast_table(path: Path, data: bytearray, offset: int) -> tuple[pa.Table, int] | None:
    """Parse a range with one pyarrow call, or None when it breaks a rule anywhere.

    Returns the table and the number of header lines in the range.
    """
    if not data:
        return RAW_RATINGS.empty_table(), 0
    if b"\r" in data:
        # Fold CRLF; a lone CR ends only a last line that lacks its newline.
        data = data.replace(b"\r\n", b"\n").removesuffix(b"\r")
    if data.translate(None, _DATA_BYTES):
        return None
    if data[-1:] != b"\n":
        data += b"\n"
    # Cut the range at its header lines: segment k holds the data lines after header k - 1
    # (segment 0: those before the first header, in the block the range starts inside).
    movies: list[int] = []
    cuts = [0]  # segment k is data[cuts[2k]:cuts[2k + 1]]
    colon = data.find(b":")
    while colon >= 0:
        line = data.rfind(b"\n", 0, colon) + 1
        digits = data[line:colon]
        if data[colon + 1 : colon + 2] != b"\n" or not digits.isdigit():
            return None
        movie = int(digits)
        if not 1 <= movie <= INT64_MAX:
            return None
        movies.append(movie)
        cuts += [line, colon + 2]
        colon = data.find(b":", colon + 2)
    cuts.append(len(data))
    spans = list(zip(cuts[::2], cuts[1::2], strict=True))
    lines = np.array([data.count(b"\n", a, b) for a, b in spans], np.int64)
    before = spans[0][1] - spans[0][0]
    if lines[0] and lines[0] != before:  # segment 0 holds more than blank lines
        movie_before = _movie_before(path, offset) if offset else None
        if movie_before is None:
            return None  # a data line before any header: the scan names it
        movies.insert(0, movie_before)
    else:
        lines = lines[1:]
        spans = spans[1:]
    headers = len(cuts) // 2 - 1
    if sum(b - a for a, b in spans) == lines.sum():  # no data lines, only blank ones
        return RAW_RATINGS.empty_table(), headers
    buf = b"".join(memoryview(data)[a:b] for a, b in spans)
    del data
    table = read_rating_lines(buf)
    if table is None:
        return None
    if table.num_rows != lines.sum():
        lines -= _blank_lines(buf, lines)  # pyarrow skips blank lines; the counts hold them
        if table.num_rows != lines.sum():
            return None
    checked = _checked(table, np.repeat(np.array(movies, np.int64), lines))
    return None if checked is None else (checked, headers)


def _blank_lines(buf: bytes, lines: np.ndarray) -> np.ndarray:
    """Blank lines in each segment of ``buf``, whose line (newline) counts are ``lines``."""
    newline = np.frombuffer(buf, np.uint8) == ord("\n")
    ends = np.flatnonzero(newline)
    # Every segment ends with a newline, so a line is blank where its newline starts the
    # buffer or follows another newline, whichever segment that one closes.
    blank = np.empty(ends.size, bool)
    blank[:1] = ends[:1] == 0
    blank[1:] = ends[1:] - 1 == ends[:-1]
    total = np.concatenate([[0], np.cumsum(blank)])
    bounds = np.concatenate([[0], np.cumsum(lines)])
    return np.asarray(total[bounds[1:]] - total[bounds[:-1]], np.int64)


def _checked(table: pa.Table, movies: np.ndarray) -> pa.Table | None:
    """The table in ``RAW_RATINGS`` form, or None when a value breaks a rule."""
    users = table.column("raw_user").to_numpy()
    ratings = table.column("rating").to_numpy()
    dates = table.column("date").combine_chunks()
    days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False)
    if ((users < 1) | (ratings < 1) | (ratings > 5) | (days < MIN_DAY)).any():
        return None
    return pa.Table.from_arrays(
        [
            pa.array(users, pa.int64()),
            pa.array(movies, pa.int64()),
            pa.array(ratings.astype(np.float32), pa.float32()),
            dates,
        ],
        schema=RAW_RATINGS,
    )


def _movie_before(path: Path, offset: int) -> int | None:
    """Movie id of the last header before ``offset``; None when only blank lines precede it.

    Raises ``DataFormatError`` when that header is bad, or when non-blank lines but no
    header precede ``offset`` (naming the file's first non-blank line).
    """
    movie, state, bad = _start_state(path, offset)
    if state > 0:
        raise DataFormatError(path, state, bad)
    if movie is None and state == BEFORE_HEADERS and bad:
        _first_line_error(path)
    return movie


def _start_state(path: Path, offset: int) -> tuple[int | None, int, str]:
    """Where the line at ``offset`` stands among the file's ``MovieID:`` blocks.

    Returns ``(movie, IN_BLOCK, "")`` after a valid header; ``(None, lineno, reason)``
    after a bad header (any line that ends with a colon is one) on line ``lineno``; and
    ``(None, BEFORE_HEADERS, reason)`` when no header precedes it, where ``reason`` is
    empty if only blank lines do.
    """
    hi = lo = offset  # lines in [hi, offset) hold no header
    nonblank = False
    with path.open("rb") as f:
        while lo > 0:
            lo = max(0, lo - BACK_CHUNK)
            f.seek(lo)
            chunk = f.read(hi - lo)
            # Only lines that start in the chunk are whole: skip the first unless lo is 0.
            first = 0 if lo == 0 else chunk.find(b"\n") + 1
            if lo > 0 and first == 0:
                continue  # one long line: read further back
            last = None
            for last in _HEADER_RE.finditer(chunk, first):  # noqa: B007 - the last one counts
                pass
            if last is not None:
                movie, reason = header_id(last.group(1).decode("latin-1") + ":")
                if movie is None:
                    return None, first_lineno(path, lo + last.start()), reason
                return movie, IN_BLOCK, ""
            nonblank = nonblank or not _blank(chunk[first:])
            hi = lo + first
    return None, BEFORE_HEADERS, "data lines before any 'MovieID:' header" if nonblank else ""


def _blank(lines: bytes) -> bool:
    """Whether whole lines are all blank (empty, or a lone CR before the newline)."""
    return not lines.replace(b"\r\n", b"\n").strip(b"\n")


def _first_line_error(path: Path) -> NoReturn:
    """Raise the error of a file whose first non-blank line comes before any header."""
    head = b""
    with path.open("rb") as f:
        # Read through the end of the first non-blank line; what follows does not matter.
        while chunk := f.read(BACK_CHUNK):
            head += chunk
            if b"\n" in head.replace(b"\r\n", b"\n").lstrip(b"\n"):
                break
    found = scan(head.decode("latin-1"), COMBINED)
    assert found is not None, "only called when a data line precedes every header"
    raise DataFormatError(path, *found)


def _fail(path: Path, data: bytearray, offset: int) -> NoReturn:
    """Name the first bad line of a range the fast path refused."""
    text = data.decode("latin-1")  # latin-1 maps every byte, so garbage cannot raise here
    first = next((ln.removesuffix("\r") for ln in text.split("\n") if ln not in ("", "\r")), "")
    # Only a range that starts inside a block needs its header (and may fail on it).
    inside = offset > 0 and bool(first) and not first.endswith(":")
    in_block = inside and _movie_before(path, offset) is not None
    found = scan(text, COMBINED, first_lineno=first_lineno(path, offset), seen_header=in_block)
    if found is not None:
        raise DataFormatError(path, *found)
    raise DataFormatError(path, None, "pyarrow refused this range but no line breaks the rules")
