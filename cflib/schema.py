"""Canonical columns, dtypes and file names shared by every stage."""

from __future__ import annotations

import pyarrow as pa

#: What a source reader returns: one row per rating, ids as they appear in the source.
RAW_RATINGS = pa.schema(
    [
        pa.field("raw_user", pa.int64(), nullable=False),
        pa.field("raw_item", pa.int64(), nullable=False),
        pa.field("rating", pa.float32(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

#: What ingest writes under ``ratings/split=<split>/``: dense indices first.
RATINGS = pa.schema(
    [
        pa.field("user", pa.int32(), nullable=False),
        pa.field("item", pa.int32(), nullable=False),
        pa.field("rating", pa.float32(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("raw_user", pa.int64(), nullable=False),
        pa.field("raw_item", pa.int64(), nullable=False),
    ]
)

#: Pairs without a rating (Netflix probe.txt, before the ratings are joined in).
RAW_PAIRS = pa.schema(
    [
        pa.field("raw_item", pa.int64(), nullable=False),
        pa.field("raw_user", pa.int64(), nullable=False),
    ]
)

#: Netflix qualifying.txt: pairs to predict, with the rating date.
RAW_QUALIFYING = pa.schema(
    [
        pa.field("raw_item", pa.int64(), nullable=False),
        pa.field("raw_user", pa.int64(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
    ]
)

#: Item side table; ``year`` is null where the source says NULL.
RAW_ITEMS = pa.schema(
    [
        pa.field("raw_item", pa.int64(), nullable=False),
        pa.field("year", pa.int16(), nullable=True),
        pa.field("title", pa.string(), nullable=False),
    ]
)

#: Item side table with genres (MovieLens); ``genres`` is empty where none are listed.
RAW_ITEMS_GENRES = pa.schema(
    [
        pa.field("raw_item", pa.int64(), nullable=False),
        pa.field("year", pa.int16(), nullable=True),
        pa.field("title", pa.string(), nullable=False),
        pa.field("genres", pa.list_(pa.string()), nullable=False),
    ]
)

#: User side table (MovieLens 100K and 1M); fields the source lacks are null.
RAW_USERS = pa.schema(
    [
        pa.field("raw_user", pa.int64(), nullable=False),
        pa.field("gender", pa.string(), nullable=True),
        pa.field("age", pa.int16(), nullable=True),
        pa.field("occupation", pa.string(), nullable=True),
        pa.field("zip", pa.string(), nullable=True),
    ]
)

#: Dense index -> raw id and side features; row i describes dense index i. Features the
#: source lacks are null (``genres``: empty).
USER_MAP = pa.schema([*RAW_USERS])
ITEM_MAP = pa.schema([*RAW_ITEMS_GENRES]).set(2, pa.field("title", pa.string(), nullable=True))

SPLITS = ("train", "validation", "test")

# Dataset directory layout.
MANIFEST_FILE = "_manifest.json"
RATINGS_DIR = "ratings"
USER_MAP_FILE = "user_map.parquet"
ITEM_MAP_FILE = "item_map.parquet"
QUALIFYING_FILE = "qualifying.parquet"
QUARANTINE_FILE = "quarantine.parquet"
#: The Dask performance report of the ingest that wrote the dataset (Dask ingests only).
PERFORMANCE_REPORT_FILE = "dask-performance.html"

# Run directory layout.
MODEL_FILE = "model.keras"
TRAIN_SUMMARY_FILE = "train.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
REPORT_HTML_FILE = "report.html"
#: The early-stopped model's predictions on the validation rows, written before the refit
#: (``cflib.train.valpred``): what ``compare-models`` fits its blend on.
VAL_PREDICTIONS_FILE = "val_predictions.parquet"
#: A blend run's weights and components (``cflib.evaluate.blend``), instead of a model.
BLEND_FILE = "blend.json"

RATING_MIN = 1.0
RATING_MAX = 5.0


def split_dir(split: str) -> str:
    """Relative directory of one split's Parquet parts (hive-style partition)."""
    if split not in SPLITS:
        raise ValueError(f"`split` should be one of {SPLITS}. Received: `split` = {split!r}.")
    return f"{RATINGS_DIR}/split={split}"
