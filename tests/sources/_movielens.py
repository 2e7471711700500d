"""Helpers for the MovieLens reader tests: the header lines, writing a tiny file, the
``DataFormatError`` a read raises, and ``u.item``'s genre flags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cflib.errors import DataFormatError
from cflib.sources import movielens

CSV_HEADER = "userId,movieId,rating,timestamp"
ITEMS_HEADER = "movieId,title,genres"


def _write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def _error(call: Callable[..., object], *args: object, **kwargs: object) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        call(*args, **kwargs)
    return info.value


def _flags(*on: str) -> str:
    return "|".join("1" if g in on else "0" for g in movielens.ML100K_GENRES)
