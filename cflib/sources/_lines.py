"""The line mechanics shared by the source readers; each format's rules live with it.

A format describes its lines as a ``Layout`` (fields, their checkers, separators,
headers). The readers' vectorized paths never call these on good input; when a fast
path finds something wrong, ``fast_or_quarantine`` either raises the first bad line as
``DataFormatError(path, lineno, reason)`` (``scan``, ``raise_first_error``) or, when
the user chose to skip bad lines, quarantines them (``classify``) and reads the rest.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TypeVar

from cflib.errors import DataFormatError
from cflib.sources.accounting import Report, Tally

INT64_MAX = 2**63 - 1
ID_RE = re.compile(r"[0-9]+")
# Bytes that did not decode, kept as lone surrogates by the "surrogateescape" handler.
_SURROGATE = re.compile("[\udc80-\udcff]")


# --- field checkers: each returns None when the field is valid, else a short reason -------

#: A field checker: None when the field is valid, else a short reason.
Check = Callable[[str], str | None]


def check_int(what: str, hi: int = INT64_MAX) -> Check:
    """A checker for a plain ASCII integer in 1..hi."""
    span = "a positive integer" if hi == INT64_MAX else f"an integer in 1..{hi}"

    def check(field: str) -> str | None:
        ok = ID_RE.fullmatch(field) is not None and 1 <= int(field) <= hi
        return None if ok else f"{what} {field!r} is not {span}"

    return check


def check_nonempty(what: str) -> Check:
    """A checker for a field that must not be empty."""

    def check(field: str) -> str | None:
        return None if field else f"empty {what}"

    return check


check_title = check_nonempty("title")


def header_id(line: str, *, first: bool = False) -> tuple[int | None, str]:
    """The movie id of a ``MovieID:`` line, or None and the reason it is not one."""
    digits = line[:-1]
    if not line.endswith(":") or not ID_RE.fullmatch(digits):
        return None, (
            "first line should be" if first else "expected"
        ) + f" 'MovieID:', got {line!r}"
    if not 1 <= int(digits) <= INT64_MAX:
        return None, f"movie id {digits!r} is not a positive integer"
    return int(digits), ""


# --- the shared line scanner ---------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How one file variant is laid out: its data fields and where headers go."""

    names: str  # the data line as documentation, e.g. "CustomerID,Rating,Date"
    fields: tuple[Check, ...]
    # "first": a 'MovieID:' line 1 only; "blocks": 'MovieID:' lines anywhere;
    # "names": line 1 of the file is ``names`` itself (a CSV header); "none": no headers.
    headers: str
    split_all: bool = True  # False: split on the first len(fields) - 1 separators only
    sep: str = ","
    quoted: bool = False  # fields may be double-quoted, CSV style (the separator is ",")


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

    Bad lines go to ``report`` (which raises at the first one when strict), and so does
    the text's tally. A bad
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
    report.count(path, tally)
    return Cleaned(kept, numbers, tally)


# --- the fast path first, then the line rules ----------------------------------------------

T = TypeVar("T")
#: What a fast path read: each file (or byte range) and its tally.
Tallies = Sequence[tuple[str | Path, Tally]]


def fast_or_quarantine(
    report: Report | None,
    fast: Callable[[], tuple[T, Tallies] | None],
    *,
    clean: Callable[[Report], T],
    fail: Callable[[], NoReturn] | None = None,
) -> T:
    """A reader's vectorized path, with the line rules behind it.

    ``fast()`` returns its result and the tallies of what it read, or refuses the input
    (returns None, or raises ``DataFormatError``). Then, without a report or with a
    strict one, the first bad line is raised: ``fail()`` names it (a ``DataFormatError``
    from ``fast`` is raised as is). Otherwise ``clean(report)`` quarantines the bad
    lines, counts what it read and parses the rest.
    """
    strict = report is None or report.strict
    try:
        found = fast()
    except DataFormatError:
        if strict:
            raise
        found = None
    if found is None:
        if not strict:
            assert report is not None
            return clean(report)
        if fail is None:  # every fast path that can refuse without raising passes one
            raise AssertionError("the fast path refused the input without naming a line")
        fail()
    result, tallies = found
    if report is not None:
        for path, tally in tallies:
            report.count(path, tally)
    return result
