"""Reference parsers for the fuzz tests, written from README's "Files" section, not cflib.

The fuzz tests check the readers against these instead of against ``cflib.sources._lines``
(the routine the readers themselves call to name a bad line). Each returns either the
rows the reader must produce, in file order, or the first malformed line and every kind
of fault that line has: the reader must name that line, and a fault it really has.

The rules, from the README: lines end in LF or CRLF, blank lines and a missing final
newline are accepted; ids are positive integers (ASCII digits, at most int64); stars
are integers 1..5 (``u.data``, ``ratings.dat``); ``ratings.csv`` has the header line
``userId,movieId,rating,timestamp`` and half stars 0.5..5.0; timestamps are Unix
seconds that give a date (UTC) up to the year 9999; Netflix blocks start at a
``MovieID:`` line (a line ending in ``:``), their lines are ``CustomerID,Rating,
YYYY-MM-DD``, and a rating line before any header is malformed. Repeated (user, item)
pairs are the ingest's to find across shards, not a single reader's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

Row = tuple[int, int, float, dt.date]
_INT64_MAX = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Bad:
    """The first malformed line (1-based) and the kinds of fault it has."""

    lineno: int
    kinds: frozenset[str]


def _digits(text: str) -> bool:
    return text != "" and all("0" <= c <= "9" for c in text)


def _positive_id(text: str) -> bool:
    return _digits(text) and 1 <= int(text) <= _INT64_MAX


def _stars(text: str) -> float | None:
    return float(text) if _digits(text) and 1 <= int(text) <= 5 else None


def _half_stars(text: str) -> float | None:
    whole, dot, frac = text.partition(".")
    if not (whole or frac) or not all(_digits(p) for p in (whole, frac) if p):
        return None
    value = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    ok = Fraction(1, 2) <= value <= 5 and (2 * value).denominator == 1
    return float(value) if ok else None


def _timestamp_date(text: str) -> dt.date | None:
    if not _digits(text):
        return None
    try:
        return (_EPOCH + dt.timedelta(seconds=int(text))).date()
    except OverflowError:  # past the year 9999
        return None


def _iso_date(text: str) -> dt.date | None:
    parts = text.split("-")
    if len(parts) != 3 or [len(p) for p in parts] != [4, 2, 2] or not all(map(_digits, parts)):
        return None
    try:
        return dt.date(*map(int, parts))
    except ValueError:
        return None


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, line without its line end) of every non-blank line."""
    out = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line:
            out.append((number, line))
    return out


#: MovieLens ratings variants: field separator, whether stars may be halves, header line.
RATINGS = {
    "100k": ("\t", False, None),
    "1m": ("::", False, None),
    "csv": (",", True, "userId,movieId,rating,timestamp"),
}


def movielens_ratings(text: str, variant: str) -> list[Row] | Bad:
    """The rows of a MovieLens ratings file, or its first malformed line."""
    sep, halves, header = RATINGS[variant]
    rows: list[Row] = []
    lines = _lines(text)
    if header is not None:
        if not lines or lines[0] != (1, header):
            return Bad(1, frozenset({"header"}))
        lines = lines[1:]
    for number, line in lines:
        fields = line.split(sep)
        if len(fields) != 4:
            return Bad(number, frozenset({"fields"}))
        user, item, stars, seconds = fields
        rating = (_half_stars if halves else _stars)(stars)
        date = _timestamp_date(seconds)
        faults = {
            k
            for k, ok in (
                ("user", _positive_id(user)),
                ("item", _positive_id(item)),
                ("rating", rating is not None),
                ("timestamp", date is not None),
            )
            if not ok
        }
        if faults:
            return Bad(number, frozenset(faults))
        assert rating is not None and date is not None
        rows.append((int(user), int(item), rating, date))
    return rows


def netflix_combined(text: str) -> list[Row] | Bad:
    """The rows of a Netflix ``combined_data_*.txt`` file, or its first malformed line."""
    rows: list[Row] = []
    movie: int | None = None
    for number, line in _lines(text):
        if line.endswith(":"):
            if not _positive_id(line[:-1]):
                return Bad(number, frozenset({"header"}))
            movie = int(line[:-1])
            continue
        faults = set() if movie is not None else {"before"}
        fields = line.split(",")
        if len(fields) != 3:
            return Bad(number, frozenset(faults | {"fields"}))
        customer, stars, day = fields
        rating, date = _stars(stars), _iso_date(day)
        faults |= {
            k
            for k, ok in (
                ("customer", _positive_id(customer)),
                ("rating", rating is not None),
                ("date", date is not None),
            )
            if not ok
        }
        if faults:
            return Bad(number, frozenset(faults))
        assert movie is not None and rating is not None and date is not None
        rows.append((int(customer), movie, rating, date))
    return rows
