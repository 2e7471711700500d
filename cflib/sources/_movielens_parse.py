"""The vectorized ratings parser and side-table helpers behind ``cflib.sources.movielens``.

Ratings are read in byte ranges (``_ranges``): a range holds the lines that *start* in
it, so that Dask can parse one big file in shards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cflib.errors import DataFormatError
from cflib.logs import stage_logger
from cflib.schema import RAW_ITEMS_GENRES, RAW_RATINGS
from cflib.sources._lines import (
    Cleaned,
    Layout,
    classify,
    fast_or_quarantine,
    raise_first_error,
    split_fields,
)
from cflib.sources._movielens_rules import CSV_ITEMS, TIMESTAMP_END
from cflib.sources._ranges import check_range, first_lineno, read_range
from cflib.sources.accounting import Report, Tally, count_lines, range_tally

logger = stage_logger("ingest")

_DIGITS = b"0123456789"
_COLUMNS = ["raw_user", "raw_item", "rating", "timestamp"]
_COLUMNS_COLONS = ["raw_user", "_gap1", "raw_item", "_gap2", "rating", "_gap3", "timestamp"]
# pyarrow parses one block per thread: a quarter of the buffer keeps 2-4 cores busy, and
# blocks over 1 MiB cut the per-block cost (the same trade-off as the Netflix reader).
_CSV_BLOCK_MIN, _CSV_BLOCK_MAX = 1 << 20, 1 << 24


def _fail(path: Path, data: bytearray, offset: int, layout: Layout) -> NoReturn:
    """Name the first bad line of a range the fast path refused."""
    text = data.decode("latin-1")  # latin-1 maps every byte, so garbage cannot raise here
    raise_first_error(path, text, layout, first_lineno=first_lineno(path, offset))


def _fast_table(data: bytearray, layout: Layout, *, names_line: bool) -> pa.Table | None:
    """Parse a range with one pyarrow call, or None when it breaks a rule anywhere.

    ``names_line``: the range starts with the file's CSV header line, checked and skipped.
    """
    body = data
    if names_line:
        newline = data.find(b"\n")
        first = data if newline < 0 else data[:newline]
        if first.removesuffix(b"\r") != layout.names.encode():
            return None
        body = bytearray() if newline < 0 else data[newline + 1 :]
    if b"\r" in body:
        # Fold CRLF; a lone CR ends only a last line that lacks its newline.
        body = body.replace(b"\r\n", b"\n").removesuffix(b"\r")
    # pyarrow's integer parsing is looser than the rules (" 12", "+3"): only digits,
    # separators, newlines and the decimal point of half stars may reach it.
    if body.translate(None, _DIGITS + b".\n" + layout.sep.encode()):
        return None
    if not body:  # pyarrow refuses an empty buffer, but reads blank lines as no rows
        return RAW_RATINGS.empty_table()
    if layout.sep == "::":
        # pyarrow wants a one-byte delimiter: split on ":" and read the fields between the
        # two colons of each "::" as the null type, which refuses anything but "" (this is
        # 2x faster than replacing "::" by a one-byte delimiter first).
        names, delimiter = _COLUMNS_COLONS, ":"
    else:
        names, delimiter = _COLUMNS, layout.sep
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(
                column_names=names,
                block_size=min(max(len(body) // 4, _CSV_BLOCK_MIN), _CSV_BLOCK_MAX),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=False, escape_char=False, ignore_empty_lines=True
            ),
            convert_options=pacsv.ConvertOptions(
                # Ratings are read as dictionaries: a handful of distinct strings per block,
                # checked by the line rules' own checker below, then mapped to numbers.
                column_types={n: pa.int64() if n in _COLUMNS else pa.null() for n in names}
                | {"rating": pa.dictionary(pa.int32(), pa.string())},
                null_values=[""],  # the gaps' only value; an empty number becomes a null
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        logger.debug("fast parse failed, scanning lines: %s", exc)
        return None
    return _checked(table, layout)


def _checked(table: pa.Table, layout: Layout) -> pa.Table | None:
    """The table in ``RAW_RATINGS`` form, or None when a value breaks a rule."""
    if table.num_rows == 0:
        return RAW_RATINGS.empty_table()
    users, items, seconds = table["raw_user"], table["raw_item"], table["timestamp"]
    # Numbers are unsigned digits here, so only these bounds can fail.
    if (
        users.null_count
        or items.null_count
        or seconds.null_count  # empty fields
        or pc.min(users).as_py() < 1
        or pc.min(items).as_py() < 1
        or pc.max(seconds).as_py() >= TIMESTAMP_END
    ):
        return None
    check_rating = layout.fields[2]
    ratings = []
    for chunk in table["rating"].chunks:
        words = chunk.dictionary.to_pylist()
        if any(check_rating(word) is not None for word in words):
            return None
        ratings.append(pc.take(pa.array([float(w) for w in words], pa.float32()), chunk.indices))
    return pa.Table.from_arrays(
        [
            users,
            items,
            pa.chunked_array(ratings, pa.float32()),
            # Casting seconds to a timestamp is free; to a date, it takes the UTC day.
            pc.cast(pc.cast(seconds, pa.timestamp("s")), pa.date32()),
        ],
        schema=RAW_RATINGS,
    )


def parse_ratings(
    path: Path, start: int, end: int | None, layout: Layout, report: Report | None = None
) -> pa.Table:
    """Read and parse the ratings lines that start in ``[start, end)`` of ``path``.

    The range's tally goes to ``report``; unless it is strict, bad lines go to its
    quarantine instead of raising.
    """
    path = Path(path)
    check_range(start, end)
    header = layout.headers == "names" and start == 0
    # The range that starts at 0 always holds line 1, so it always checks the header.
    data, offset = read_range(path, start, max(end, 1) if header and end is not None else end)

    def fast() -> tuple[pa.Table, list[tuple[Path, Tally]]] | None:
        lines = count_lines(data)
        if data or header:
            table = _fast_table(data, layout, names_line=header)
        else:
            table = RAW_RATINGS.empty_table()
        if table is None:
            return None
        headers = int(header and lines > 0)
        return table, [(path, range_tally(lines, kept=table.num_rows, headers=headers))]

    return fast_or_quarantine(
        report,
        fast,
        clean=lambda report: _clean(path, data, offset, layout, report),
        fail=lambda: _fail(path, data, offset, layout),
    )


def classify_range(
    path: Path, data: bytearray, offset: int, layout: Layout, report: Report
) -> Cleaned:
    """The lines of a range starting at byte ``offset``, sorted by ``classify`` and
    numbered in the whole file; their tally goes to ``report``."""
    first = first_lineno(path, offset)
    return classify(path, data.decode("latin-1"), layout, report, first_lineno=first)


def range_lines(
    path: Path, start: int, end: int | None, layout: Layout
) -> Iterator[tuple[str, int, str, int, int]]:
    """(file, line number, line, user, item) of each rating line that ``parse_ratings``
    keeps from the range, line by line."""
    data, offset = read_range(path, start, end)
    cleaned = classify_range(path, data, offset, layout, Report())
    for lineno, line in zip(cleaned.numbers, cleaned.lines, strict=True):
        if not (lineno == 1 and layout.headers == "names"):
            parts = split_fields(line, layout)
            assert not isinstance(parts, str)
            yield str(path), lineno, line, int(parts[0]), int(parts[1])


def _clean(path: Path, data: bytearray, offset: int, layout: Layout, report: Report) -> pa.Table:
    """Quarantine the bad lines of a range, then parse what is left."""
    cleaned = classify_range(path, data, offset, layout, report)
    names_line = bool(cleaned.numbers) and cleaned.numbers[0] == 1 and layout.headers == "names"
    kept = bytearray(cleaned.text().encode("latin-1"))
    table = _fast_table(kept, layout, names_line=names_line) if kept else RAW_RATINGS.empty_table()
    if table is None:
        raise DataFormatError(path, None, "pyarrow refused lines that the format rules accept")
    return table


# --- side tables ----------------------------------------------------------------------------

#: What movies.csv (and ML-10M's movies.dat) say for a movie without genres.
NO_GENRES = "(no genres listed)"
# A year in parentheses at the end of a title ("Toy Story (1995)"; the CSV releases
# sometimes leave spaces after it); pyarrow and Python read the pattern alike.
_TITLE_YEAR = r"\((?P<year>[0-9]{4})\) *$"
_TITLE_YEAR_RE = re.compile(_TITLE_YEAR)


def decode(path: Path, data: bytes, encoding: str) -> str:
    """A file's text; bytes that do not decode are a format error of their line."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        lineno = data.count(b"\n", 0, exc.start) + 1
        raise DataFormatError(path, lineno, f"not valid {encoding}: {exc.reason}") from None


def title_year(title: str) -> int | None:
    """The year of a title's trailing ``(YYYY)``, or None."""
    match = _TITLE_YEAR_RE.search(title)
    return None if match is None else int(match.group("year"))


def genre_list(field: str) -> list[str]:
    """A checked ``|``-separated genres field as a list; NO_GENRES is the empty list."""
    return [] if field == NO_GENRES else field.split("|")


def items_table(
    ids: list[int] | pa.Array,
    years: list[int | None] | pa.Array,
    titles: list[str] | pa.Array,
    genres: list[list[str]],
) -> pa.Table:
    """Columns of checked values as a ``RAW_ITEMS_GENRES`` table."""
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.int64()),
            pa.array(years, pa.int16()),
            pa.array(titles, pa.string()),
            pa.array(genres, pa.list_(pa.string())),
        ],
        schema=RAW_ITEMS_GENRES,
    )


def items_csv_table(data: bytes, text: str) -> pa.Table | None:
    """movies.csv through pyarrow's quoting-aware reader, or None when a rule is broken."""
    lines = text.split("\n")
    if lines[0].removesuffix("\r") != CSV_ITEMS.names:
        return None
    # pyarrow reads a quoted newline as part of a value; the line rules do not allow one.
    expected = sum(1 for line in lines[1:] if line not in ("", "\r"))
    newline = data.find(b"\n")
    body = b"" if newline < 0 else data[newline + 1 :]
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n").removesuffix(b"\r")
        if b"\r" in body:
            return None
    if not expected:
        return RAW_ITEMS_GENRES.empty_table()
    names = ["movieId", "title", "genres"]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), null_values=[]
            ),
        )
        if (
            table.num_rows != expected
            or not pc.all(pc.match_substring_regex(table["movieId"], "^[0-9]+$")).as_py()
        ):
            return None
        ids = pc.cast(table["movieId"], pa.int64()).to_numpy()
    except pa.ArrowInvalid:  # a bad row, or an id past int64
        return None
    titles = table["title"]
    genres = [genre_list(field) for field in table["genres"].to_pylist()]
    if (
        (ids < 1).any()
        or np.unique(ids).size != ids.size
        or pc.min(pc.binary_length(titles)).as_py() == 0
        or any("" in row for row in genres)
    ):
        return None
    years = pc.struct_field(pc.extract_regex(titles, _TITLE_YEAR), "year")
    return items_table(ids, years.cast(pa.int16()), titles.combine_chunks(), genres)
