"""Readers for the MovieLens releases: ML-100K, ML-1M (and ML-10M), and the CSV releases.

One public reader per file and variant, over shared private parsers: ``_ranges`` (byte
ranges), ``_movielens_parse`` (vectorized ratings), ``_movielens_rules`` (the line
rules) and ``_lines`` (the line scanner and the quarantine).
Ratings readers take a byte range so that Dask can parse one big file (ml-25m's
ratings.csv is ~650 MB) in shards; see ``byte_ranges``. Like the Netflix readers they
parse with one vectorized pyarrow call and, only when that fails, re-scan the range line
by line to raise ``DataFormatError(path, lineno, reason)`` for the first bad line,
numbered in the whole file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pyarrow as pa

from cflib.errors import DataFormatError
from cflib.schema import RAW_USERS
from cflib.sources import _movielens_rules as rules
from cflib.sources._lines import fast_or_quarantine, parse_rows
from cflib.sources._movielens_parse import (
    NO_GENRES,
    decode,
    genre_list,
    items_csv_table,
    items_table,
    parse_ratings,
    title_year,
)
from cflib.sources._movielens_rules import ML100K_GENRES
from cflib.sources._ranges import byte_ranges
from cflib.sources.accounting import Report, Tally, text_tally

__all__ = [
    "CSV_ITEMS",
    "CSV_RATINGS",
    "ENCODING_LATIN1",
    "ML1M_ITEMS",
    "ML1M_OCCUPATIONS",
    "ML1M_RATINGS",
    "ML1M_USERS",
    "ML100K_GENRES",
    "ML100K_ITEMS",
    "ML100K_RATINGS",
    "ML100K_USERS",
    "NO_GENRES",
    "byte_ranges",
    "detect_variant",
    "read_items_1m",
    "read_items_100k",
    "read_items_csv",
    "read_ratings_1m",
    "read_ratings_100k",
    "read_ratings_csv",
    "read_users_1m",
    "read_users_100k",
]

ML100K_RATINGS = "u.data"
ML100K_ITEMS = "u.item"
ML100K_USERS = "u.user"
ML1M_RATINGS = "ratings.dat"
ML1M_ITEMS = "movies.dat"
ML1M_USERS = "users.dat"
CSV_RATINGS = "ratings.csv"
CSV_ITEMS = "movies.csv"
ENCODING_LATIN1 = "iso-8859-1"
#: ML-1M users.dat occupation codes, from the release's README.
ML1M_OCCUPATIONS = (
    "other or not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care",
    "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


def detect_variant(root: Path) -> str | None:
    """Which MovieLens layout a directory holds, judged by its ratings file.

    Args:
        root: an unpacked MovieLens directory, e.g. ``ml-100k/``.

    Returns:
        ``"ml-100k"`` (``u.data``), ``"ml-1m"`` (``ratings.dat``; ML-10M has the same
        layout), ``"ml-csv"`` (``ratings.csv``: ml-latest, ml-latest-small, 20M, 25M,
        32M), or None when there is none of these files.
    """
    root = Path(root)
    for name, variant in (
        (ML100K_RATINGS, "ml-100k"),
        (ML1M_RATINGS, "ml-1m"),
        (CSV_RATINGS, "ml-csv"),
    ):
        if (root / name).is_file():
            return variant
    return None


# --- ratings -------------------------------------------------------------------------------


def read_ratings_100k(
    path: Path, *, start: int = 0, end: int | None = None, report: Report | None = None
) -> pa.Table:
    """Parse ML-100K ``u.data``: ``user id\titem id\trating\ttimestamp``, ratings 1..5.

    Args:
        path: the ratings file.
        start: first byte of the range; the range reads the lines that start in it.
        end: end of the range (exclusive); None reads to the end of the file.
        report: where the range's tally and (unless strict) its bad lines go. None:
            raise at the first bad line.

    Returns:
        A table with schema ``RAW_RATINGS``, in file order.

    Raises:
        DataFormatError: a malformed line, numbered in the whole file.
        ValueError: ``start`` or ``end`` name no range.
    """
    return parse_ratings(Path(path), start, end, rules.ML100K_RATINGS, report)


def read_ratings_1m(
    path: Path,
    *,
    start: int = 0,
    end: int | None = None,
    half_stars: bool = False,
    report: Report | None = None,
) -> pa.Table:
    """Parse ML-1M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``, ratings 1..5.

    Args:
        path, start, end, report: as for ``read_ratings_100k``.
        half_stars: read ML-10M's ``ratings.dat`` instead: the same layout with
            ratings 0.5..5.0 in half stars.

    Returns:
        A table with schema ``RAW_RATINGS``, in file order.

    Raises:
        As ``read_ratings_100k``.
    """
    layout = rules.ML10M_RATINGS if half_stars else rules.ML1M_RATINGS
    return parse_ratings(Path(path), start, end, layout, report)


def read_ratings_csv(
    path: Path, *, start: int = 0, end: int | None = None, report: Report | None = None
) -> pa.Table:
    """Parse ``ratings.csv``: header ``userId,movieId,rating,timestamp``, half stars 0.5..5.

    Only the range that starts at 0 holds the header, and it always checks it (even
    when ``end`` is 0), so that one range per file refuses a file without it.

    Args:
        path, start, end, report: as for ``read_ratings_100k``.

    Returns:
        A table with schema ``RAW_RATINGS``, in file order.

    Raises:
        DataFormatError: a malformed line or a missing header, numbered in the whole file.
        ValueError: ``start`` or ``end`` name no range.
    """
    return parse_ratings(Path(path), start, end, rules.CSV_RATINGS, report)


# --- side tables: small files (< 100k lines), parsed line by line ---------------------------


def read_items_100k(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ML-100K ``u.item`` (ISO-8859-1, ``|``-separated).

    Lines are ``movie id|title|release date|video release date|IMDb URL|`` then 19 0/1
    genre flags in ``ML100K_GENRES`` order. The year comes from the title's trailing
    ``(YYYY)``, else from the release date (``DD-Mon-YYYY``; ``D-Mon-YYYY`` for a one-digit
    day), else it is null; the title is kept as given.

    Args:
        path: the items file.
        report: where the file's tally and (unless strict) its bad lines go; a
            repeated id is quarantined too. None: raise at the first bad line.

    Returns:
        A table with schema ``RAW_ITEMS_GENRES``, in file order.

    Raises:
        DataFormatError: a malformed line (field count, id, release date, flag), or a
            movie id listed twice.
    """
    path = Path(path)
    text = decode(path, path.read_bytes(), ENCODING_LATIN1)
    rows = parse_rows(path, text, rules.ML100K_ITEMS, what="movie id", report=report)
    years = []
    for row in rows:
        year = title_year(row[1])
        years.append(int(row[2][-4:]) if year is None and row[2] else year)
    return items_table(
        [int(row[0]) for row in rows],
        years,
        [row[1] for row in rows],
        [
            [g for g, flag in zip(ML100K_GENRES, row[5:], strict=True) if flag == "1"]
            for row in rows
        ],
    )


def _genre_items(rows: list[list[str]]) -> pa.Table:
    """Checked ``id, title, genres`` rows as a ``RAW_ITEMS_GENRES`` table."""
    return items_table(
        [int(row[0]) for row in rows],
        [title_year(row[1]) for row in rows],
        [row[1] for row in rows],
        [genre_list(row[2]) for row in rows],
    )


def read_items_1m(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ML-1M (or ML-10M) ``movies.dat``: ``MovieID::Title::Genres``, ISO-8859-1.

    Genres are ``|``-separated; ``(no genres listed)`` (ML-10M) is an empty list. The
    year comes from the title's trailing ``(YYYY)``, else it is null.

    Args:
        path, report: as for ``read_items_100k``.

    Returns:
        A table with schema ``RAW_ITEMS_GENRES``, in file order.

    Raises:
        DataFormatError: a malformed line, or a movie id listed twice.
    """
    path = Path(path)
    text = decode(path, path.read_bytes(), ENCODING_LATIN1)
    rows = parse_rows(path, text, rules.ML1M_ITEMS, what="movie id", report=report)
    return _genre_items(rows)


def read_items_csv(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ``movies.csv``: header ``movieId,title,genres``, UTF-8, CSV quoting.

    Titles may be double-quoted, with commas and doubled quotes inside. Genres are
    ``|``-separated; ``(no genres listed)`` is an empty list. The year comes from the
    title's trailing ``(YYYY)`` (spaces may follow), else it is null.

    Args:
        path: the items file.
        report: as for the other items readers; a line that is not UTF-8 is
            quarantined too.

    Returns:
        A table with schema ``RAW_ITEMS_GENRES``, in file order.

    Raises:
        DataFormatError: a missing header, a malformed line, or a movie id listed twice.
    """
    path = Path(path)
    data = path.read_bytes()
    strict = report is None or report.strict
    # Lenient: keep undecodable bytes as surrogates, which the line rules refuse.
    text = decode(path, data, "utf-8") if strict else data.decode("utf-8", "surrogateescape")

    def fast() -> tuple[pa.Table, list[tuple[Path, Tally]]] | None:
        table = items_csv_table(data, text)
        if table is None:
            return None
        return table, [(path, text_tally(text, kept=table.num_rows, headers=1))]

    def fail() -> NoReturn:
        parse_rows(path, text, rules.CSV_ITEMS, what="movie id", report=report)
        raise DataFormatError(path, None, "pyarrow refused this file but no line breaks the rules")

    def clean(report: Report) -> pa.Table:
        rows = parse_rows(path, text, rules.CSV_ITEMS, what="movie id", report=report)
        return _genre_items(rows)

    return fast_or_quarantine(report, fast, clean=clean, fail=fail)


# --- users ---------------------------------------------------------------------------------


def _users(rows: list[list[str]], gender: int, age: int, occupations: list[str]) -> pa.Table:
    """Checked rows as a ``RAW_USERS`` table; ``gender`` and ``age`` are field positions."""
    return pa.Table.from_arrays(
        [
            pa.array([int(row[0]) for row in rows], pa.int64()),
            pa.array([row[gender] for row in rows], pa.string()),
            pa.array([int(row[age]) for row in rows], pa.int16()),
            pa.array(occupations, pa.string()),
            pa.array([row[4] for row in rows], pa.string()),
        ],
        schema=RAW_USERS,
    )


def read_users_100k(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ML-100K ``u.user``: ``user id|age|gender|occupation|zip code``.

    Args:
        path: the users file.
        report: as for the items readers.

    Returns:
        A table with schema ``RAW_USERS``, in file order; age in years.

    Raises:
        DataFormatError: a malformed line (field count, id, age, gender M/F, empty
            occupation or zip code), or a user id listed twice.
    """
    path = Path(path)
    text = decode(path, path.read_bytes(), ENCODING_LATIN1)
    rows = parse_rows(path, text, rules.ML100K_USERS, what="user id", report=report)
    return _users(rows, 2, 1, [row[3] for row in rows])


def read_users_1m(path: Path, report: Report | None = None) -> pa.Table:
    """Parse ML-1M ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code``, ISO-8859-1.

    The age is the bucket code as given (1, 18, 25, 35, 45, 50, 56); the occupation
    code 0..20 becomes its name from ``ML1M_OCCUPATIONS``.

    Args:
        path: the users file.
        report: as for the items readers.

    Returns:
        A table with schema ``RAW_USERS``, in file order.

    Raises:
        DataFormatError: a malformed line (field count, id, gender, age or occupation
            code, empty zip code), or a user id listed twice.
    """
    path = Path(path)
    text = decode(path, path.read_bytes(), ENCODING_LATIN1)
    rows = parse_rows(path, text, rules.ML1M_USERS, what="user id", report=report)
    return _users(rows, 1, 2, [ML1M_OCCUPATIONS[int(row[3])] for row in rows])
