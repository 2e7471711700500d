"""Per-file accounting of what the readers did with each line, and the quarantine.

Every line a reader reads is counted once, as kept (a rating or side-table row), a
header (``MovieID:`` or a CSV header), blank, or quarantined, so that for each file
``lines == kept + headers + blank + quarantined``. A ``Report`` collects those counts
and the quarantined lines; with ``strict`` it raises at the first bad line instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from cflib.errors import DataFormatError

#: Quarantined lines longer than this keep only their start (and say how much was cut).
MAX_TEXT = 4096

QUARANTINE = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("text", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


@dataclass
class Tally:
    """What happened to the lines of one file (or of one byte range of it)."""

    lines: int = 0
    kept: int = 0
    headers: int = 0
    blank: int = 0
    quarantined: int = 0

    def add(self, other: Tally) -> None:
        self.lines += other.lines
        self.kept += other.kept
        self.headers += other.headers
        self.blank += other.blank
        self.quarantined += other.quarantined

    def balanced(self) -> bool:
        """Whether every line read is accounted for exactly once."""
        return self.lines == self.kept + self.headers + self.blank + self.quarantined


def count_lines(data: bytes | bytearray) -> int:
    """Lines in ``data``: its newlines, plus a last line that lacks one."""
    return data.count(b"\n") + (data[-1:] not in (b"", b"\n"))


def range_tally(lines: int, *, kept: int, headers: int) -> Tally:
    """The tally of a read whose ``lines`` are ``kept`` rows, ``headers`` and blank lines."""
    return Tally(lines=lines, kept=kept, headers=headers, blank=lines - kept - headers)


def text_tally(text: str, *, kept: int, headers: int = 0) -> Tally:
    """The tally of a whole text whose non-blank lines are ``kept`` rows and ``headers``."""
    rows = text.split("\n")
    lines = len(rows) - (rows[-1] == "")
    blank = sum(1 for row in rows[:lines] if row in ("", "\r"))
    return Tally(lines=lines, kept=kept, headers=headers, blank=blank)


@dataclass(frozen=True)
class BadLine:
    """One quarantined line: its file, 1-based line number, raw text and reason."""

    file: str
    line: int | None
    text: str
    reason: str


def raw_text(line: str) -> str:
    """A line as decoded (undecodable bytes, kept as surrogates, shown as ``\\xNN``), bounded."""
    text = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if len(text) > MAX_TEXT:
        text = f"{text[:MAX_TEXT]}... ({len(text) - MAX_TEXT} more characters)"
    return text


@dataclass
class Report:
    """Tallies per file and the quarantined lines of one or more reads.

    With ``strict`` the first bad line raises ``DataFormatError`` instead of being
    quarantined.
    """

    strict: bool = False
    tallies: dict[str, Tally] = field(default_factory=dict)
    bad: list[BadLine] = field(default_factory=list)

    def tally(self, path: str | Path) -> Tally:
        """The running tally of ``path`` (created empty)."""
        return self.tallies.setdefault(str(path), Tally())

    def count(self, path: str | Path, tally: Tally) -> None:
        """Add a read's tally to ``path``'s."""
        self.tally(path).add(tally)

    def quarantine(self, path: str | Path, lineno: int | None, line: str, reason: str) -> None:
        """Record one bad line (``line`` without its line end), or raise if strict.

        The caller counts it in the tally it passes to ``count``.
        """
        if self.strict:
            raise DataFormatError(path, lineno, reason)
        self.bad.append(BadLine(str(path), lineno, raw_text(line), reason))

    def bad_table(self) -> pa.Table:
        """The quarantined lines in ``QUARANTINE`` form, in the order they were found."""
        return pa.Table.from_pylist(
            [vars(b) for b in self.bad] if self.bad else [], schema=QUARANTINE
        )
