"""The line-by-line checks shared by the source readers.

The readers' vectorized paths never call these on good input; when a fast path finds
something wrong, ``raise_first_error`` re-scans the text and names the first bad line
as ``DataFormatError(path, lineno, reason)``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cflib.errors import DataFormatError

_INT64_MAX = 2**63 - 1
_ID_RE = re.compile(r"[0-9]+")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_YEAR_RE = re.compile(r"[0-9]{4}|NULL")


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
    headers: str  # "first": line 1 only; "blocks": anywhere; "none": no headers
    split_all: bool = True  # False: split on the first len(fields) - 1 commas only


TRAINING = Layout(
    "CustomerID,Rating,Date", (_check_customer, _check_int("rating", 5), _check_date), "first"
)
PROBE = Layout("CustomerID", (_check_customer,), "blocks")
QUALIFYING = Layout("CustomerID,Date", (_check_customer, _check_date), "blocks")
TITLES = Layout(
    "MovieID,Year,Title",
    (_check_int("movie id", _INT64_MAX), _check_year, _check_title),
    "none",
    False,
)


def _line_error(line: str, lineno: int, layout: Layout, seen_header: bool) -> str | None:
    """Why one non-blank line is malformed, or None."""
    if (layout.headers == "first" and lineno == 1) or (
        layout.headers == "blocks" and line.endswith(":")
    ):
        return header_id(line, first=lineno == 1 and layout.headers == "first")[1] or None
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


def scan(text: str, layout: Layout) -> tuple[int, str] | None:
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


def raise_first_error(path: Path, text: str, layout: Layout) -> NoReturn:
    """Raise the first malformed line of a file the vectorized path refused."""
    found = scan(text, layout)
    if found is not None:
        raise DataFormatError(path, *found)
    # The vectorized path refused something the line rules accept: a bug, but say where.
    raise DataFormatError(path, None, "pyarrow refused this file but no line breaks the rules")
