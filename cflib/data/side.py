"""Side features of users and items, from a dataset's ``user_map.parquet`` and
``item_map.parquet``, as dense integer codes per dense id (for the two-tower model).

The maps have one row per dense id (a few hundred thousand rows at most), so they are
read whole; the ratings never are.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cflib import schema
from cflib.errors import ConfigError

#: Title tokens kept per item (the first ones); shorter titles are padded with 0.
TITLE_TOKENS = 12
#: Most frequent title tokens kept; rarer ones are dropped.
MAX_VOCAB = 50_000
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SideFeatures:
    """Codes per dense id; 0 means unknown (or padding) in every integer array.

    Attributes:
        genres: float32 ``[n_items, n_genres]`` multi-hot (``n_genres`` may be 0).
        genre_names: the genre of each column.
        title: int32 ``[n_items, TITLE_TOKENS]`` token ids, ``k + 1`` for ``vocab[k]``.
        vocab: title tokens, most frequent first.
        year: int32 ``[n_items]``, ``year - year_min + 1``.
        year_min: the earliest year (0 when no item has one).
        user_codes: name -> int32 ``[n_users]`` codes of gender, age, occupation (only
            the columns with at least one known value).
        user_values: name -> the value of each code ``k + 1``.
    """

    genres: np.ndarray
    genre_names: list[str]
    title: np.ndarray
    vocab: list[str]
    year: np.ndarray
    year_min: int
    user_codes: dict[str, np.ndarray] = field(default_factory=dict)
    user_values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_years(self) -> int:
        """Distinct year codes, unknown excluded."""
        return int(self.year.max()) if self.year.size else 0

    def sizes(self) -> dict[str, int]:
        """Vocabulary sizes for the model's config (codes excluding 0)."""
        return {
            "n_genres": len(self.genre_names),
            "title_vocab": len(self.vocab),
            "n_years": self.n_years,
            **{f"n_{k}": len(v) for k, v in self.user_values.items()},
        }

    def has_item_features(self) -> bool:
        """Whether any item has a genre, a title or a year."""
        return bool(self.genre_names or self.vocab or self.n_years)


def tokenize(titles: list[str | None], *, max_tokens: int = TITLE_TOKENS,
             max_vocab: int = MAX_VOCAB) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Lower-cased word tokens of each title as ids ``[n, max_tokens]`` and the vocabulary.

    Ids are ``k + 1`` for the ``k``-th most frequent token (ties in alphabetical order),
    0 for padding; tokens beyond the ``max_vocab`` most frequent are dropped.
    """
    words = [_TOKEN.findall(t.lower()) if t else [] for t in titles]
    counts = Counter(w for ws in words for w in ws)
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_vocab]]
    index = {w: k + 1 for k, w in enumerate(vocab)}
    ids = np.zeros((len(titles), max_tokens), np.int32)
    for row, ws in enumerate(words):
        kept = [index[w] for w in ws if w in index][:max_tokens]
        ids[row, : len(kept)] = kept
    return ids, vocab


def _codes(values: list[object]) -> tuple[np.ndarray, list[str]]:
    """Dense codes (1-based, 0 for null) of a column's values, in sorted order."""
    known = sorted({str(v) for v in values if v is not None})
    index = {v: k + 1 for k, v in enumerate(known)}
    return np.array([0 if v is None else index[str(v)] for v in values], np.int32), known


def load_side_features(root: Path, *, n_users: int, n_items: int) -> SideFeatures:
    """Read and encode the side tables of the dataset at ``root``.

    Raises:
        ConfigError: the dataset has no item side table, its tables do not match the
            manifest's sizes, or no item has a genre, title or year.
    """
    root = Path(root)
    items_path, users_path = root / schema.ITEM_MAP_FILE, root / schema.USER_MAP_FILE
    if not items_path.is_file():
        raise ConfigError(
            f"--model two-tower needs side features, and {root} has no {schema.ITEM_MAP_FILE}"
        )
    items = pq.read_table(items_path, columns=["year", "title", "genres"])
    if items.num_rows != n_items:
        raise ConfigError(f"{items_path}: {items.num_rows} rows for {n_items} items")
    genre_lists = items["genres"].to_pylist()
    genre_names = sorted({g for gs in genre_lists if gs for g in gs})
    col = {g: k for k, g in enumerate(genre_names)}
    genres = np.zeros((n_items, len(genre_names)), np.float32)
    for row, gs in enumerate(genre_lists):
        for g in gs or ():
            genres[row, col[g]] = 1.0
    title, vocab = tokenize(items["title"].to_pylist())
    years = items["year"].to_numpy(zero_copy_only=False)
    known = ~np.isnan(years.astype(np.float64))
    year_min = int(years[known].min()) if known.any() else 0
    year = np.where(known, np.nan_to_num(years.astype(np.float64)) - year_min + 1, 0)
    user_codes: dict[str, np.ndarray] = {}
    user_values: dict[str, list[str]] = {}
    if users_path.is_file():
        users = pq.read_table(users_path, columns=["gender", "age", "occupation"])
        if users.num_rows != n_users:
            raise ConfigError(f"{users_path}: {users.num_rows} rows for {n_users} users")
        for name in ("gender", "age", "occupation"):
            codes, values = _codes(users[name].to_pylist())
            if values:
                user_codes[name], user_values[name] = codes, values
    side = SideFeatures(
        genres=genres,
        genre_names=genre_names,
        title=title,
        vocab=vocab,
        year=year.astype(np.int32),
        year_min=year_min,
        user_codes=user_codes,
        user_values=user_values,
    )
    if not side.has_item_features():
        raise ConfigError(
            f"--model two-tower needs side features, and no item in {items_path} has a "
            "genre, a title or a year"
        )
    return side
