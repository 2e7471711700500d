"""The ingested dataset on disk: its manifest and where each split's Parquet parts are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cflib import schema
from cflib.errors import DatasetError

FORMAT_VERSION = 1


class SplitInfo(BaseModel):
    """Rows and Parquet parts of one split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0)
    rating_sum: float
    # None in an empty split, and in a manifest written before they were recorded.
    rating_min: float | None = Field(None, description="Lowest rating in the split.")
    rating_max: float | None = Field(None, description="Highest rating in the split.")
    files: list[str] = Field(description="Part files, relative to the dataset directory.")


class SourceInfo(BaseModel):
    """Where the dataset came from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    format: str
    fingerprint: str = Field(description="sha256 over every source file's name, size and mtime.")
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)


class FileAccount(BaseModel):
    """What ingest did with each line of one source file:
    ``lines == kept + headers + blank + quarantined``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field(description="Path relative to the source directory.")
    role: str = Field(description="ratings, probe, qualifying, items or users.")
    lines: int = Field(ge=0)
    kept: int = Field(ge=0, description="Ratings (or side-table rows) in the dataset.")
    headers: int = Field(ge=0, description="'MovieID:' lines and CSV header lines.")
    blank: int = Field(ge=0)
    quarantined: int = Field(ge=0, description="Lines in quarantine.parquet.")


class Manifest(BaseModel):
    """``_manifest.json``: everything later stages need to know about a dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str
    created_at: str
    source: SourceInfo
    ingest_config: dict[str, Any]
    n_users: int = Field(gt=0)
    n_items: int = Field(gt=0)
    splits: dict[str, SplitInfo]
    split: str = Field(description="How the test split was chosen: probe, random or temporal.")
    probe_unmatched: int = Field(
        0, ge=0, description="probe.txt pairs with no rating in training_set."
    )
    qualifying_rows: int = Field(0, ge=0)
    quarantined: int = Field(0, ge=0, description="Lines in quarantine.parquet.")
    accounting: list[FileAccount] = Field(
        default_factory=list, description="Per source file: what became of its lines."
    )
    schema_: list[dict[str, str]] = Field(alias="schema")
    fingerprint: str = Field(description="sha256 of the source fingerprint and the ingest config.")

    @property
    def global_mean(self) -> float:
        """Mean training rating."""
        train = self.splits["train"]
        return train.rating_sum / train.rows if train.rows else 0.0

    @property
    def rating_range(self) -> tuple[float, float]:
        """The lowest and highest training rating: predictions are clipped to them (0.5..5
        on half-star MovieLens data, 1..5 on Netflix). A dataset ingested before they were
        recorded has the Netflix scale, ``schema.RATING_MIN..RATING_MAX``."""
        train = self.splits["train"]
        if train.rating_min is None or train.rating_max is None:
            return schema.RATING_MIN, schema.RATING_MAX
        return train.rating_min, train.rating_max

    def split_paths(self, root: Path, split: str) -> list[Path]:
        """Absolute paths of one split's parts."""
        if split not in self.splits:
            raise DatasetError(f"{root / schema.MANIFEST_FILE}: no split {split!r}")
        return [root / f for f in self.splits[split].files]


def schema_fields(s: Any) -> list[dict[str, str]]:
    """A pyarrow schema as JSON-friendly name/type pairs."""
    return [{"name": f.name, "type": str(f.type)} for f in s]


def load_manifest(root: str | Path) -> Manifest:
    """Read and validate ``root/_manifest.json``.

    Raises:
        DatasetError: when the directory, the manifest or a listed part is missing.
    """
    root = Path(root)
    path = root / schema.MANIFEST_FILE
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory does not exist")
    if not path.is_file():
        raise DatasetError(f"{path}: no manifest; is {root} the --out of `cfpipe ingest`?")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0]
        raise DatasetError(f"{path}: unreadable manifest ({first})") from exc
    check_parts(root, manifest)
    return manifest


def check_parts(root: Path, manifest: Manifest) -> None:
    """Check that every part the manifest lists is there, is Parquet (its footer reads)
    and holds the rows the manifest says, split by split. Footers only: milliseconds.

    Raises:
        DatasetError: naming the first missing, truncated or corrupt part.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, info in manifest.splits.items():
        rows = 0
        for rel in info.files:
            path = root / rel
            if not path.is_file():
                raise DatasetError(
                    f"{path}: part of split {split!r} listed in the manifest is missing"
                )
            try:
                rows += pq.read_metadata(path).num_rows
            except (OSError, pa.ArrowException) as exc:
                raise DatasetError(
                    f"{path}: corrupt or truncated Parquet part ({exc}); re-run `cfpipe ingest "
                    "--force`"
                ) from exc
        if rows != info.rows:
            raise DatasetError(
                f"{root / schema.MANIFEST_FILE}: split {split!r} should hold {info.rows:,} rows, "
                f"its parts hold {rows:,}; re-run `cfpipe ingest --force`"
            )


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Write ``root/_manifest.json``."""
    text = manifest.model_dump_json(indent=2, by_alias=True)
    (root / schema.MANIFEST_FILE).write_text(text + "\n")
