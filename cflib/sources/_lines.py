"""The line-by-line checks shared by the source readers.

The readers' vectorized paths never call these on good input; when a fast path finds
something wrong, ``raise_first_error`` re-scans the text and names the first bad line
as ``DataFormatError(path, lineno, reason)``.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cflib.errors import DataFormatError
from cflib.sources.accounting import Report, Tally

_INT64_MAX = 2**63 - 1
_ID_RE = re.compile(r"[0-9]+")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_RE = re.compile(r"[0-9]{4}|NULL")
# Bytes that did not decode, kept as lone surrogates by the "surrogateescape" handler.
_SURROGATE = re.compile("[\udc80-\udcff]")


# --- field checkers: each returns None when the field is valid, else a short reason -------


def _check_int(what: str, hi: int) -> Callable[[str], str | None]:
    """A checker for a plain ASCII integer in 1..hi."""
    span = "a positive integer" if hi == _INT64_MAX else f"an integer in 1..{hi}"

    def check(field: str) -> str | None:
        ok = _ID_RE.fullmatch(field) is not None and 1 <= int(field) <= hi
        return None if ok else f"{what} {field!r} is not {span}"

    return check


def _check_date(field: str) -> str | None:
    try:
        if _DATE_RE.fullmatch(field) and dt.date.fromisoformat(field):
            return None
    except ValueError:
        pass
    return f"bad date {field!r}"


def _check_year(field: str) -> str | None:
    return None if _YEAR_RE.fullmatch(field) else f"year {field!r} is not 4 digits or NULL"


def _check_title(field: str) -> str | None:
    return None if field else "empty title"


_check_customer = _check_int("customer id", _INT64_MAX)


def header_id(line: str, *, first: bool = False) -> tuple[int | None, str]:
    """The movie id of a ``MovieID:`` line, or None and the reason it is not one."""
    digits = line[:-1]
    if not line.endswith(":") or not _ID_RE.fullmatch(digits):
        return None, (
            "first line should be" if first else "expected"
        ) + f" 'MovieID:', got {line!r}"
    if not 1 <= int(digits) <= _INT64_MAX:
        return None, f"movie id {digits!r} is not a positive integer"
    return int(digits), ""


# --- the shared line scanner ---------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How one file variant is laid out: its data fields and where headers go."""

    names: str  # the data line as documentation, e.g. "CustomerID,Rating,Date"
    fields: tuple[Callable[[str], str | None], ...]
    # "first": a 'MovieID:' line 1 only; "blocks": 'MovieID:' lines anywhere;
    # "names": line 1 of the file is ``names`` itself (a CSV header); "none": no headers.
    headers: str
    split_all: bool = True  # False: split on the first len(fields) - 1 separators only
    sep: str = ","
    quoted: bool = False  # fields may be double-quoted, CSV style (the separator is ",")


TRAINING = Layout(
    "CustomerID,Rating,Date", (_check_customer, _check_int("rating", 5), _check_date), "first"
)
#: combined_data_*.txt: the training files concatenated, one 'MovieID:' line per block.
COMBINED = Layout(
    "CustomerID,Rating,Date", (_check_customer, _check_int("rating", 5), _check_date), "blocks"
)
PROBE = Layout("CustomerID", (_check_customer,), "blocks")
QUALIFYING = Layout("CustomerID,Date", (_check_customer, _check_date), "blocks")
TITLES = Layout(
    "MovieID,Year,Title",
    (_check_int("movie id", _INT64_MAX), _check_year, _check_title),
    "none",
    False,
)


# --- MovieLens ---------------------------------------------------------------------------

#: Unix seconds of 10000-01-01 UTC: later dates do not fit Python's ``date``, and a
#: millisecond timestamp (a common mix-up) lands far beyond it.
TIMESTAMP_END = 253_402_300_800
#: The 19 genre flags of ML-100K's u.item, in column order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: ML-1M users.dat age buckets (the code is the bucket's lowest age).
ML1M_AGES = frozenset({1, 18, 25, 35, 45, 50, 56})
_DECIMAL_RE = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")  # what pyarrow reads from these bytes
_RELEASE_RE = re.compile(r"[0-9]{2}-[A-Za-z]{3}-[0-9]{4}")


def _check_stars(field: str) -> str | None:
    ok = _ID_RE.fullmatch(field) is not None and 1 <= int(field) <= 5
    return None if ok else f"rating {field!r} is not one of 1..5"


def _check_half_stars(field: str) -> str | None:
    ok = _DECIMAL_RE.fullmatch(field) is not None and 0.5 <= float(field) <= 5.0
    if ok and (2 * float(field)).is_integer():
        return None
    return f"rating {field!r} is not a half star in 0.5..5.0"


def _check_timestamp(field: str) -> str | None:
    if _ID_RE.fullmatch(field) is None:
        return f"timestamp {field!r} is not a non-negative integer"
    return None if int(field) < TIMESTAMP_END else f"timestamp {field!r} is after the year 9999"


def _check_release(field: str) -> str | None:
    ok = not field or _RELEASE_RE.fullmatch(field) is not None
    return None if ok else f"release date {field!r} is not empty or DD-Mon-YYYY"


def _check_flag(genre: str) -> Callable[[str], str | None]:
    def check(field: str) -> str | None:
        return None if field in ("0", "1") else f"{genre} flag {field!r} is not 0 or 1"

    return check


def _check_genres(field: str) -> str | None:
    if not field:
        return "empty genres"
    return None if "" not in field.split("|") else f"empty genre in {field!r}"


def _check_gender(field: str) -> str | None:
    return None if field in ("M", "F") else f"gender {field!r} is not M or F"


def _check_age_code(field: str) -> str | None:
    ok = _ID_RE.fullmatch(field) is not None and int(field) in ML1M_AGES
    return None if ok else f"age {field!r} is not one of {', '.join(map(str, sorted(ML1M_AGES)))}"


def _check_occupation_code(field: str) -> str | None:
    ok = _ID_RE.fullmatch(field) is not None and int(field) <= 20
    return None if ok else f"occupation {field!r} is not a code in 0..20"


def _check_nonempty(what: str) -> Callable[[str], str | None]:
    def check(field: str) -> str | None:
        return None if field else f"empty {what}"

    return check


def _any(field: str) -> str | None:
    return None


_check_user = _check_int("user id", _INT64_MAX)
_check_movie = _check_int("movie id", _INT64_MAX)

ML100K_RATINGS = Layout(
    "user id | item id | rating | timestamp",
    (_check_user, _check_int("item id", _INT64_MAX), _check_stars, _check_timestamp),
    "none",
    sep="\t",
)
ML1M_RATINGS = Layout(
    "UserID::MovieID::Rating::Timestamp",
    (_check_user, _check_movie, _check_stars, _check_timestamp),
    "none",
    sep="::",
)
ML10M_RATINGS = Layout(
    "UserID::MovieID::Rating::Timestamp",
    (_check_user, _check_movie, _check_half_stars, _check_timestamp),
    "none",
    sep="::",
)
CSV_RATINGS = Layout(
    "userId,movieId,rating,timestamp",
    (_check_user, _check_movie, _check_half_stars, _check_timestamp),
    "names",
)
ML100K_ITEMS = Layout(
    "movie id | title | release date | video release date | IMDb URL | 19 genre flags",
    (
        _check_movie,
        _check_title,
        _check_release,
        _any,  # video release date: empty throughout ML-100K and never used
        _any,  # IMDb URL
        *(_check_flag(genre) for genre in ML100K_GENRES),
    ),
    "none",
    sep="|",
)
ML1M_ITEMS = Layout(
    "MovieID::Title::Genres", (_check_movie, _check_title, _check_genres), "none", sep="::"
)
CSV_ITEMS = Layout(
    "movieId,title,genres", (_check_movie, _check_title, _check_genres), "names", quoted=True
)
ML100K_USERS = Layout(
    "user id | age | gender | occupation | zip code",
    (
        _check_user,
        _check_int("age", 150),
        _check_gender,
        _check_nonempty("occupation"),
        _check_nonempty("zip code"),
    ),
    "none",
    sep="|",
)
ML1M_USERS = Layout(
    "UserID::Gender::Age::Occupation::Zip-code",
    (
        _check_user,
        _check_gender,
        _check_age_code,
        _check_occupation_code,
        _check_nonempty("zip code"),
    ),
    "none",
    sep="::",
)

_SEP_NOUNS = {",": "comma-separated", "\t": "tab-separated"}


def split_fields(line: str, layout: Layout) -> list[str] | str:
    """The fields of one non-blank data line, or the reason it has the wrong number."""
    n = len(layout.fields)
    if layout.quoted:
        # Not strict: pyarrow, which the fast paths use, also reads 'a"b' and '"a"b' leniently.
        parts = next(csv.reader([line], strict=False))
    elif layout.split_all:
        parts = line.split(layout.sep)
    else:
        parts = line.split(layout.sep, n - 1)
    if len(parts) != n:
        sep = _SEP_NOUNS.get(layout.sep, f"'{layout.sep}'-separated")
        noun = "field" if n == 1 else f"{sep} fields"
        return f"expected {n} {noun} ({layout.names}), got {len(parts)}"
    return parts


def _header_error(line: str, layout: Layout) -> str | None:
    """Why line 1 is not the CSV header ``layout.names``, or None."""
    return (
        None
        if line == layout.names
        else (f"first line should be the header {layout.names!r}, got {line!r}")
    )


def _line_error(line: str, lineno: int, layout: Layout, seen_header: bool) -> str | None:
    """Why one non-blank line is malformed, or None."""
    if layout.headers == "names" and lineno == 1:
        return _header_error(line, layout)
    if layout.quoted and "\r" in line:
        # pyarrow ends a row at a lone CR, so a CR inside a free-text line breaks its rows.
        return f"carriage return inside line {line!r}"
    if (layout.headers == "first" and lineno == 1) or (
        layout.headers == "blocks" and line.endswith(":")
    ):
        return header_id(line, first=lineno == 1 and layout.headers == "first")[1] or None
    if layout.headers == "first" and line.endswith(":"):
        return f"unexpected header {line!r}: a training file holds one movie"
    if layout.headers == "blocks" and not seen_header:
        return f"data line {line!r} before any 'MovieID:' header"
    parts = split_fields(line, layout)
    if isinstance(parts, str):
        return parts
    for check, part in zip(layout.fields, parts, strict=True):
        if (reason := check(part)) is not None:
            return reason
    return None


def scan(
    text: str, layout: Layout, *, first_lineno: int = 1, seen_header: bool = False
) -> tuple[int, str] | None:
    """Line number and reason of the first malformed line of ``text``, or None.

    ``first_lineno`` is the file's line number of the first line of ``text`` (> 1 when
    ``text`` is a byte range of a bigger file); headers are only checked on line 1.
    ``seen_header`` says that ``text`` starts inside a ``MovieID:`` block ("blocks"
    layouts), so that data lines before its first header are not errors.
    """
    if not text and layout.headers != "names":
        return (1, "empty file") if layout.headers == "first" else None
    for lineno, raw in enumerate(text.split("\n"), start=first_lineno):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            if layout.headers == "first" and lineno == 1:
                return 1, "first line should be 'MovieID:', got ''"
            if layout.headers == "names" and lineno == 1:
                return 1, _header_error("", layout) or ""
            continue
        if (reason := _line_error(line, lineno, layout, seen_header)) is not None:
            return lineno, reason
        seen_header = seen_header or line.endswith(":")
    return None


def raise_first_error(path: Path, text: str, layout: Layout, *, first_lineno: int = 1) -> NoReturn:
    """Raise the first malformed line of a file (or byte range) the vectorized path refused."""
    found = scan(text, layout, first_lineno=first_lineno)
    if found is not None:
        raise DataFormatError(path, *found)
    # The vectorized path refused something the line rules accept: a bug, but say where.
    raise DataFormatError(path, None, "pyarrow refused this file but no line breaks the rules")


def parse_rows(
    path: Path, text: str, layout: Layout, *, what: str, report: Report | None = None
) -> list[list[str]]:
    """The fields of each data line of a whole small file, in file order.

    A malformed line, or one whose id (the first field, named ``what`` in messages) an
    earlier line already holds, goes to ``report``'s quarantine; without a report (or
    with a strict one) the first such line raises ``DataFormatError``. The file's tally
    is added to ``report``.
    """
    report = Report(strict=True) if report is None else report
    seen: dict[int, int] = {}

    def repeated(lineno: int, line: str) -> str | None:
        parts = split_fields(line, layout)
        assert not isinstance(parts, str)  # the line rules checked the field count
        key = int(parts[0])
        if key in seen:
            return f"{what} {key} already on line {seen[key]}"
        seen[key] = lineno
        return None

    cleaned = classify(path, text, layout, report, check_line=repeated)
    report.count(path, cleaned.tally)
    rows = []
    for lineno, line in zip(cleaned.numbers, cleaned.lines, strict=True):
        if not (lineno == 1 and layout.headers == "names"):
            parts = split_fields(line, layout)
            assert not isinstance(parts, str)
            rows.append(parts)
    return rows


# --- the lenient scan: quarantine bad lines, keep the rest --------------------------------

#: Where a text starts relative to its file's 'MovieID:' blocks ("blocks" layouts): before
#: any header, or inside a block whose header is valid. A positive number instead says it
#: starts inside the block of the bad header on that line.
BEFORE_HEADERS = 0
IN_BLOCK = -1


def _bad_block(lineno: int) -> str:
    return f"in the block of the bad 'MovieID:' header on line {lineno}"


@dataclass
class Cleaned:
    """The valid lines of a text (headers included, line ends dropped), their line
    numbers, and the text's tally."""

    lines: list[str]
    numbers: list[int]
    tally: Tally

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def classify(
    path: str | Path,
    text: str,
    layout: Layout,
    report: Report,
    *,
    first_lineno: int = 1,
    block: int = BEFORE_HEADERS,
    check_header: Callable[[int], str | None] | None = None,
    check_line: Callable[[int, str], str | None] | None = None,
) -> Cleaned:
    """Sort every line of ``text`` into kept, header, blank or quarantined.

    Bad lines go to ``report`` (which raises at the first one when strict). A bad
    ``MovieID:`` header takes its whole block with it, since no line of that block has a
    movie. ``block`` is where ``text`` starts (``BEFORE_HEADERS``, ``IN_BLOCK`` or a bad
    header's line number). ``check_header`` vets a valid header's movie id further (a
    training file's name) and ``check_line`` a valid data line (a repeated id); each
    returns the reason it refuses, or None.
    """
    kept: list[str] = []
    numbers: list[int] = []
    tally = Tally()
    rows = text.split("\n")
    if rows[-1] == "":
        rows.pop()  # the newline ends the last line; nothing follows it
    tally.lines = len(rows)
    for lineno, raw in enumerate(rows, start=first_lineno):
        line = raw[:-1] if raw.endswith("\r") else raw
        reason: str | None
        header = False
        if lineno == 1 and layout.headers in ("first", "names"):
            header = True
            if layout.headers == "names":
                reason = _header_error(line, layout)
            else:
                movie, reason = header_id(line, first=True)
                if movie is not None and check_header is not None:
                    reason = check_header(movie) or ""
                block = lineno if reason else IN_BLOCK
        elif not line:
            tally.blank += 1
            continue
        elif layout.headers == "blocks" and line.endswith(":"):
            header = True
            reason = header_id(line)[1]
            block = lineno if reason else IN_BLOCK
        elif block > 0:
            reason = _bad_block(block)
        elif _SURROGATE.search(line):
            reason = "not valid UTF-8"
        else:
            reason = _line_error(line, lineno, layout, block == IN_BLOCK)
            if reason is None and check_line is not None:
                reason = check_line(lineno, line)
        if reason:
            report.quarantine(path, lineno, line, reason)
            tally.quarantined += 1
            continue
        kept.append(line)
        numbers.append(lineno)
        if header:
            tally.headers += 1
        else:
            tally.kept += 1
    return Cleaned(kept, numbers, tally)
