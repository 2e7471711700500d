"""The staging directory of one ingest: every path in it is named here, once.

Layout (the stage is renamed to ``--out`` only when complete)::

    plan.json                                      the Plan (``cflib.ingest.plan``)
    scratch/raw/shard-00000.arrow                  parsed ratings of one shard, raw ids
    scratch/raw/shard-00000.ids.npz                that shard's distinct users and items
    scratch/raw/shard-00000.tally.json, .bad.parquet   its per-file tallies, bad lines
    scratch/side.tally.json, side.bad.parquet      the same for the side files
    scratch/{users,items,probe_keys}.npy           sorted id sets for the dense maps and splits
    scratch/pieces/<split>/b00000/shard-00000.arrow    one shard's rows of one bucket
    scratch/pieces/by-user/b00000/shard-00000.arrow    (temporal split: rows by user first)
    scratch/pieces/<split>/b00000/users-00000.arrow    (temporal split: one user bucket's)
    scratch/repeats/<kind>-b00000.parquet          dropped repeated ratings: shard, pair, rank
    scratch/repeats/located-shard-00000.parquet    their lines, as quarantine rows
    ratings/split=<split>/part-00000.parquet       the dataset, shuffled within and across parts
    user_map.parquet, item_map.parquet, qualifying.parquet, quarantine.parquet, _manifest.json
    dask-performance.html                          the Dask performance report (Dask ingests)

Scratch files are Arrow IPC (``write_scratch``): written once, read once, deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from cflib import schema

#: Rows per row group of the dataset's Parquet files.
ROW_GROUP_ROWS = 131_072
#: The pieces of a temporal split's first round: every shard's rows, by user bucket.
BY_USER = "by-user"
_TALLY = ".tally.json"
_BAD = ".bad.parquet"
_SHARD = "shard-"


def _shard(index: int) -> str:
    return f"{_SHARD}{index:05d}"


@dataclass(frozen=True)
class ScratchLayout:
    """The paths of one staging directory."""

    stage: Path

    @property
    def plan_file(self) -> Path:
        return self.stage / "plan.json"

    @property
    def performance_report(self) -> Path:
        """Kept in the dataset: the Dask ingest's ``distributed.performance_report``."""
        return self.stage / schema.PERFORMANCE_REPORT_FILE

    @property
    def scratch(self) -> Path:
        """Everything ``finalize`` deletes."""
        return self.stage / "scratch"

    @property
    def raw(self) -> Path:
        return self.scratch / "raw"

    def raw_table(self, shard: int) -> Path:
        """A shard's parsed ratings, raw ids."""
        return self.raw / f"{_shard(shard)}.arrow"

    def raw_ids(self, shard: int) -> Path:
        """A shard's distinct users and items."""
        return self.raw / f"{_shard(shard)}.ids.npz"

    def shard_report(self, shard: int) -> tuple[Path, Path]:
        """Where a shard's tallies and bad lines go."""
        return self._report(self.raw / _shard(shard))

    def side_report(self) -> tuple[Path, Path]:
        """Where the side files' tallies and bad lines go."""
        return self._report(self.scratch / "side")

    @staticmethod
    def _report(stem: Path) -> tuple[Path, Path]:
        return stem.with_name(stem.name + _TALLY), stem.with_name(stem.name + _BAD)

    def tally_files(self) -> list[Path]:
        return sorted(self.scratch.rglob(f"*{_TALLY}"))

    def bad_files(self) -> list[Path]:
        """The readers' quarantined lines, then the located repeats."""
        located = sorted(self.repeats_dir.glob("located-*.parquet"))
        return sorted(self.scratch.rglob(f"*{_BAD}")) + located

    @property
    def users(self) -> Path:
        return self.scratch / "users.npy"

    @property
    def items(self) -> Path:
        return self.scratch / "items.npy"

    @property
    def probe_keys(self) -> Path:
        return self.scratch / "probe_keys.npy"

    def bucket_dir(self, kind: str, bucket: int) -> Path:
        """The pieces of one bucket of a split (or of ``BY_USER``)."""
        return self.scratch / "pieces" / kind / f"b{bucket:05d}"

    def bucket_pieces(self, kind: str, bucket: int, pattern: str = "*.arrow") -> list[Path]:
        """A bucket's pieces in name order (shard order), if any."""
        where = self.bucket_dir(kind, bucket)
        return sorted(where.glob(pattern)) if where.is_dir() else []

    @staticmethod
    def shard_piece(shard: int) -> str:
        """The name of a shard's piece in a bucket."""
        return f"{_shard(shard)}.arrow"

    @staticmethod
    def user_bucket_piece(bucket: int) -> str:
        """The name of a user bucket's piece in a split bucket (temporal splits)."""
        return f"users-{bucket:05d}.arrow"

    @staticmethod
    def piece_shard(piece: Path) -> int:
        """The shard index of a ``shard_piece``."""
        return int(piece.stem.removeprefix(_SHARD))

    @property
    def repeats_dir(self) -> Path:
        return self.scratch / "repeats"

    def repeats(self, kind: str, bucket: int) -> Path:
        """The repeats dropped in one bucket (``kind`` a split, or ``users``)."""
        return self.repeats_dir / f"{kind}-b{bucket:05d}.parquet"

    def repeat_files(self) -> list[Path]:
        return sorted(self.repeats_dir.glob("*-b*.parquet"))

    def located(self, shard: int) -> Path:
        """The quarantine rows of one shard's dropped repeats."""
        return self.repeats_dir / f"located-{_shard(shard)}.parquet"

    @staticmethod
    def part(split: str, bucket: int) -> str:
        """A dataset part, relative to the dataset's root."""
        return f"{schema.split_dir(split)}/part-{bucket:05d}.parquet"


def write_scratch(table: pa.Table, path: Path) -> None:
    """Arrow IPC for intermediate files: written once, read once, deleted; no encoding."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_scratch(path: Path) -> pa.Table:
    """Read a file that ``write_scratch`` wrote."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()
