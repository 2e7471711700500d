"""Byte ranges of big line-oriented files, shared by the readers that parse them in shards.

A byte range ``[start, end)`` holds the lines that *start* in it: when ``start > 0`` it
begins just after the first newline at or after ``start - 1``, and it runs through the
end of the line that holds ``end - 1``. Consecutive ranges therefore cover every line of
a file exactly once, wherever they cut it, and Dask can parse one big file in shards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 16
_COUNT_CHUNK = 1 << 24


def byte_ranges(path: Path, chunk_bytes: int) -> list[tuple[int, int]]:
    """Cut a file into ``[start, end)`` byte ranges for the range readers.

    The cuts fall at fixed offsets, usually inside a line: the readers align them, so
    that each line is read by the range it starts in, and the ranges together read
    every line once.

    Args:
        path: a ratings file.
        chunk_bytes: the length of each range (the last may be shorter).

    Returns:
        Consecutive ranges from 0 to the file's size; ``[(0, 0)]`` for an empty file,
        so that its one range still checks a CSV header.

    Raises:
        ValueError: ``chunk_bytes`` is not a positive integer.
    """
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ValueError(
            "`chunk_bytes` should be a positive integer. "
            f"Received: `chunk_bytes` = {chunk_bytes!r}."
        )
    size = Path(path).stat().st_size
    return [(s, min(s + chunk_bytes, size)) for s in range(0, size, chunk_bytes)] or [(0, 0)]


def check_range(start: int, end: int | None) -> None:
    """Refuse byte offsets that name no range."""
    if not isinstance(start, int) or start < 0:
        raise ValueError(
            f"`start` should be a non-negative integer. Received: `start` = {start!r}."
        )
    if end is not None and (not isinstance(end, int) or end < start):
        raise ValueError(
            f"`end` should be None or an integer >= `start` ({start}). Received: `end` = {end!r}."
        )


def _line_start_after(f: BinaryIO, at: int, size: int) -> int:
    """Offset just past the first newline at or after ``at``; ``size`` if there is none."""
    f.seek(at)
    pos = at
    while chunk := f.read(_CHUNK):
        i = chunk.find(b"\n")
        if i >= 0:
            return pos + i + 1
        pos += len(chunk)
    return size


def read_range(path: Path, start: int, end: int | None) -> tuple[bytearray, int]:
    """The bytes of the lines that start in ``[start, end)``, and the offset of the first."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        stop = size if end is None else min(end, size)
        pos = 0 if start == 0 else _line_start_after(f, start - 1, size)
        if pos >= stop:
            return bytearray(), pos
        f.seek(pos)
        data = bytearray(stop - pos)
        del data[f.readinto(data) :]  # readinto skips the copy that bytearray(f.read()) makes
        # Finish the line that holds end - 1; a bytearray grows in place, not by copying.
        while data[-1:] != b"\n" and (chunk := f.read(_CHUNK)):
            i = chunk.find(b"\n")
            data += chunk if i < 0 else chunk[: i + 1]
    return data, pos


def first_lineno(path: Path, offset: int) -> int:
    """The file's 1-based line number of the line that starts at ``offset`` (error path only)."""
    newlines = 0
    with path.open("rb") as f:
        left = offset
        while left > 0 and (chunk := f.read(min(left, _COUNT_CHUNK))):
            newlines += chunk.count(b"\n")
            left -= len(chunk)
    return newlines + 1
