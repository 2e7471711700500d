"""The readers of the Netflix Prize side files: probe.txt, qualifying.txt and
movie_titles.txt (re-exported by ``cflib.sources.netflix``).

Each parses its whole file with vectorized pyarrow string kernels; only when they find
something wrong do the line rules (``_netflix_rules``) name or quarantine the bad lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cflib.errors import DataFormatError
from cflib.schema import RAW_ITEMS, RAW_PAIRS, RAW_QUALIFYING
from cflib.sources._lines import (
    Layout,
    classify,
    fast_or_quarantine,
    parse_rows,
    raise_first_error,
)
from cflib.sources._netflix_csv import MIN_DAY
from cflib.sources._netflix_rules import (
    HEADER_PA,
    PROBE,
    PROBE_PA,
    QUALIFYING,
    QUALIFYING_PA,
    TITLE_PA,
    TITLES,
)
from cflib.sources.accounting import Report, Tally

TITLES_ENCODING = "iso-8859-1"


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
    parse: Callable[[str], tuple[pa.Table, Tally]],
    clean: Callable[[Report], pa.Table] | None = None,
) -> pa.Table:
    """``parse(text)``; when it finds a bad line and ``report`` is lenient, quarantine the
    bad lines and parse the rest (``clean``, by default ``parse`` of the kept lines).
    The file's tally goes to ``report``."""

    def fast() -> tuple[pa.Table, list[tuple[Path, Tally]]]:
        table, tally = parse(text)
        return table, [(path, tally)]

    def parse_kept(report: Report) -> pa.Table:
        return parse(classify(path, text, layout, report).text())[0]

    return fast_or_quarantine(report, fast, clean=clean or parse_kept)


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
        _np(pc.match_substring_regex(lines, HEADER_PA)),
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
        movies, lines, tally = _read_blocks(path, text, PROBE, PROBE_PA)
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
        movies, lines, tally = _read_blocks(path, text, QUALIFYING, QUALIFYING_PA)
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

    def clean(report: Report) -> pa.Table:
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

    return _lenient(path, text, TITLES, report, lambda text: _titles(path, text), clean)


def _titles(path: Path, text: str) -> tuple[pa.Table, Tally]:
    """The vectorized path of ``read_movie_titles``."""
    lines, n_lines = _split_lines(text)
    pos = np.flatnonzero(_np(pc.binary_length(lines.slice(0, n_lines))) > 0)
    parts = pc.extract_regex(lines.take(pos), TITLE_PA)
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
