"""Ingest steps. Each is a function over paths and small dicts, so Dask can run many of
them at once on any worker that sees the same filesystem, and Prefect can retry one.

Layout of the staging directory (renamed to ``--out`` only when complete)::

    plan.json                                the Plan below
    scratch/raw/shard-00000.arrow            parsed ratings of one shard, raw ids (Arrow IPC)
    scratch/raw/shard-00000.ids.npz          that shard's distinct users and items
    scratch/{users,items,probe_keys}.npy     sorted id sets for the dense maps and splits
    scratch/pieces/<split>/b00000/shard-00000.arrow
    ratings/split=<split>/part-00000.parquet the dataset, shuffled within and across parts
    user_map.parquet, item_map.parquet, qualifying.parquet, _manifest.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from cflib import schema
from cflib.config import IngestConfig
from cflib.dataset import Manifest, SourceInfo, SplitInfo, schema_fields, write_manifest
from cflib.errors import DatasetError
from cflib.fsutil import publish_dir, staging_dir
from cflib.ingest import splits as hashing
from cflib.ingest.ids import DenseIds, sorted_unique, union_sorted
from cflib.ingest.source import find_source, fingerprint
from cflib.sources import netflix

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 131_072
PLAN_FILE = "plan.json"
# Parquet's encoding of the parts: dictionaries pay off for the few distinct ratings and
# dates, not for the ids.
DICTIONARY_COLUMNS = ["rating", "date"]
SCRATCH = "scratch"
# Config fields that change the dataset's contents; the rest only change how it is made.
_CONTENT_FIELDS = ("format", "name", "validation_fraction", "test_fraction", "seed", "bucket_rows")


class Plan(BaseModel):
    """What one ingest will do; written to ``plan.json`` for the workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    out: str
    stage: str | None
    format: str
    name: str
    shards: list[list[str]]
    probe: str | None
    qualifying: str | None
    titles: str | None
    source_fingerprint: str
    source_bytes: int
    fingerprint: str
    up_to_date: bool
    config: IngestConfig

    @property
    def stage_path(self) -> Path:
        if self.stage is None:
            raise DatasetError(f"{self.out}: up to date, there is nothing to stage")
        return Path(self.stage)

    @property
    def source_files(self) -> int:
        return sum(len(s) for s in self.shards) + sum(
            p is not None for p in (self.probe, self.qualifying, self.titles)
        )


def load_plan(stage: str | Path) -> Plan:
    """Read the plan a worker was handed by its staging directory."""
    return Plan.model_validate_json((Path(stage) / PLAN_FILE).read_text())


def _existing_fingerprint(out: Path) -> str | None:
    try:
        return str(json.loads((out / schema.MANIFEST_FILE).read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_scratch(table: pa.Table, path: Path) -> None:
    """Arrow IPC for intermediate files: written once, read once, deleted; no encoding."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_scratch(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def plan_shards(paths: list[Path], shard_bytes: int) -> list[list[str]]:
    """Consecutive runs of whole files of about ``shard_bytes`` each (at least one file).

    Shards are contiguous in file order, so concatenating them in order gives the same
    rows whatever the shard size: the output does not depend on it.
    """
    shards: list[list[str]] = []
    current: list[str] = []
    size = 0
    for path in paths:
        current.append(str(path))
        size += path.stat().st_size
        if size >= shard_bytes:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    return shards


def plan_ingest(source: str | Path, out: str | Path, cfg: IngestConfig) -> Plan:
    """Find the source files, fingerprint them, and stage a directory next to ``out``.

    Returns a plan with ``up_to_date`` set (and no staging directory) when ``out``
    already holds a dataset built from the same files with the same options.
    """
    source, out = Path(source).resolve(), Path(out).resolve()
    files = find_source(source, cfg.format)
    source_fp, total = fingerprint(files)
    content = {k: getattr(cfg, k) for k in _CONTENT_FIELDS}
    full_fp = hashlib.sha256(f"{source_fp}\n{json.dumps(content, sort_keys=True)}".encode())
    fp = full_fp.hexdigest()
    up_to_date = not cfg.force and _existing_fingerprint(out) == fp
    shards = plan_shards(files.ratings, int(cfg.shard_mb * 1e6))
    stage = None if up_to_date else staging_dir(out)
    plan = Plan(
        source=str(source),
        out=str(out),
        stage=None if stage is None else str(stage),
        format=files.format,
        name=cfg.name or source.name,
        shards=shards,
        probe=None if files.probe is None else str(files.probe),
        qualifying=None if files.qualifying is None else str(files.qualifying),
        titles=None if files.titles is None else str(files.titles),
        source_fingerprint=source_fp,
        source_bytes=total,
        fingerprint=fp,
        up_to_date=up_to_date,
        config=cfg,
    )
    if stage is not None:
        (stage / SCRATCH / "raw").mkdir(parents=True)
        (stage / PLAN_FILE).write_text(plan.model_dump_json())
    return plan


def parse_shard(stage: str, index: int) -> dict[str, Any]:
    """Parse one shard of rating files into ``scratch/raw/shard-NNNNN.parquet``."""
    plan = load_plan(stage)
    paths = [Path(p) for p in plan.shards[index]]
    table = netflix.read_training_files(paths)
    raw = plan.stage_path / SCRATCH / "raw"
    _write_scratch(table, raw / f"shard-{index:05d}.arrow")
    users = sorted_unique(table.column("raw_user").to_numpy())
    items = sorted_unique(table.column("raw_item").to_numpy())
    np.savez(raw / f"shard-{index:05d}.ids.npz", users=users, items=items)
    return {"index": index, "files": len(paths), "rows": table.num_rows}


def _n_buckets(rows: int, bucket_rows: int) -> int:
    return max(1, math.ceil(rows / bucket_rows))


def build_id_maps(stage: str, parsed: list[dict[str, Any]]) -> dict[str, Any]:
    """Dense id maps from the shards' id sets, plus probe keys and the qualifying table.

    Dense indices follow ascending raw ids, so the maps are the same whatever the
    sharding or the number of workers.
    """
    plan = load_plan(stage)
    root, scratch = plan.stage_path, plan.stage_path / SCRATCH
    id_files = [scratch / "raw" / f"shard-{r['index']:05d}.ids.npz" for r in parsed]
    sets = [np.load(f) for f in id_files]
    users = union_sorted(s["users"] for s in sets)
    items = union_sorted(s["items"] for s in sets)
    np.save(scratch / "users.npy", users)
    np.save(scratch / "items.npy", items)
    pq.write_table(
        pa.table({"raw_user": users}, schema=schema.USER_MAP), root / schema.USER_MAP_FILE
    )
    pq.write_table(_item_map(items, plan.titles), root / schema.ITEM_MAP_FILE)

    probe_pairs = 0
    if plan.probe is not None:
        probe = netflix.read_probe(Path(plan.probe))
        keys = sorted_unique(
            hashing.pair_keys(
                probe.column("raw_item").to_numpy(), probe.column("raw_user").to_numpy()
            )
        )
        probe_pairs = int(keys.size)
        np.save(scratch / "probe_keys.npy", keys)
    qualifying_rows = 0
    if plan.qualifying is not None:
        qualifying_rows = _write_qualifying(Path(plan.qualifying), users, items, root)

    rows = sum(int(r["rows"]) for r in parsed)
    test_est = probe_pairs if plan.probe is not None else rows * plan.config.test_fraction
    val_est = (rows - test_est) * plan.config.validation_fraction
    bucket_rows = plan.config.bucket_rows
    return {
        "n_users": int(users.size),
        "n_items": int(items.size),
        "rows": rows,
        "probe_pairs": probe_pairs,
        "qualifying_rows": qualifying_rows,
        "buckets": {
            "train": _n_buckets(int(rows - test_est - val_est), bucket_rows),
            "validation": _n_buckets(int(val_est), bucket_rows),
            "test": _n_buckets(int(test_est), bucket_rows),
        },
    }


def _item_map(items: np.ndarray, titles_path: str | None) -> pa.Table:
    year = pa.nulls(items.size, pa.int16())
    title = pa.nulls(items.size, pa.string())
    if titles_path is not None:
        titles = netflix.read_movie_titles(Path(titles_path))
        raw = titles.column("raw_item").to_numpy()
        idx = DenseIds(items)(raw)
        keep = idx >= 0
        # Scatter the titles onto the dense order; movies without ratings are dropped.
        order = np.full(items.size, -1, np.int64)
        order[idx[keep]] = np.nonzero(keep)[0]
        take = pa.array(np.where(order >= 0, order, 0))
        missing = pa.array(order < 0)
        year = pa.compute.if_else(missing, pa.scalar(None, pa.int16()), titles["year"].take(take))
        title = pa.compute.if_else(
            missing, pa.scalar(None, pa.string()), titles["title"].take(take)
        )
    return pa.table({"raw_item": items, "year": year, "title": title}, schema=schema.ITEM_MAP)


def _write_qualifying(path: Path, users: np.ndarray, items: np.ndarray, root: Path) -> int:
    table = netflix.read_qualifying(path)
    user = DenseIds(users)(table.column("raw_user").to_numpy())
    item = DenseIds(items)(table.column("raw_item").to_numpy())
    # Keep the file's order: the Prize submission format lists predictions in it.
    out = pa.table(
        {
            "user": pa.array(user, mask=user < 0),
            "item": pa.array(item, mask=item < 0),
            "date": table.column("date"),
            "raw_user": table.column("raw_user"),
            "raw_item": table.column("raw_item"),
        }
    )
    pq.write_table(out, root / schema.QUALIFYING_FILE, row_group_size=ROW_GROUP_ROWS)
    return table.num_rows


def split_shard(stage: str, index: int, ids: dict[str, Any]) -> dict[str, Any]:
    """Assign one shard's ratings to splits and buckets; write one piece per bucket."""
    plan = load_plan(stage)
    cfg = plan.config
    scratch = plan.stage_path / SCRATCH
    table = _read_scratch(scratch / "raw" / f"shard-{index:05d}.arrow")
    raw_user = table.column("raw_user").to_numpy()
    raw_item = table.column("raw_item").to_numpy()
    keys = hashing.pair_keys(raw_item, raw_user)
    if plan.probe is not None:
        test = hashing.sorted_member(keys, np.load(scratch / "probe_keys.npy"))
    else:
        test = hashing.uniform01(keys, cfg.seed, hashing.SALT_TEST) < cfg.test_fraction
    val = ~test & (
        hashing.uniform01(keys, cfg.seed, hashing.SALT_VALIDATION) < cfg.validation_fraction
    )
    dense = pa.table(
        {
            "user": DenseIds(np.load(scratch / "users.npy"))(raw_user),
            "item": DenseIds(np.load(scratch / "items.npy"))(raw_item),
            "rating": table.column("rating"),
            "date": table.column("date"),
            "raw_user": raw_user,
            "raw_item": raw_item,
        },
        schema=schema.RATINGS,
    )
    counts: dict[str, int] = {}
    for split, mask in (("train", ~test & ~val), ("validation", val), ("test", test)):
        rows = np.nonzero(mask)[0]
        counts[split] = int(rows.size)
        if rows.size == 0:
            continue
        bucket = hashing.buckets(keys[rows], cfg.seed, ids["buckets"][split])
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(ids["buckets"][split] + 1))
        for b in range(ids["buckets"][split]):
            sel = rows[order[bounds[b] : bounds[b + 1]]]
            if sel.size == 0:
                continue
            piece = scratch / "pieces" / split / f"b{b:05d}"
            piece.mkdir(parents=True, exist_ok=True)
            _write_scratch(dense.take(pa.array(sel)), piece / f"shard-{index:05d}.arrow")
    return {"index": index, "counts": counts}


def compact_bucket(stage: str, split: str, bucket: int) -> dict[str, Any]:
    """Merge one bucket's pieces into a shuffled part ``ratings/split=S/part-NNNNN.parquet``."""
    plan = load_plan(stage)
    pieces_dir = plan.stage_path / SCRATCH / "pieces" / split / f"b{bucket:05d}"
    pieces = sorted(pieces_dir.glob("shard-*.arrow")) if pieces_dir.is_dir() else []
    if not pieces:
        return {"split": split, "bucket": bucket, "file": None, "rows": 0, "rating_sum": 0.0}
    table = pa.concat_tables(_read_scratch(p) for p in pieces)
    salt = schema.SPLITS.index(split)
    rng = np.random.default_rng([plan.config.seed, salt, bucket])
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    rel = f"{schema.split_dir(split)}/part-{bucket:05d}.parquet"
    target = plan.stage_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, row_group_size=ROW_GROUP_ROWS, use_dictionary=DICTIONARY_COLUMNS)
    rating_sum = float(pa.compute.sum(table.column("rating").cast(pa.float64())).as_py())
    return {
        "split": split,
        "bucket": bucket,
        "file": rel,
        "rows": table.num_rows,
        "rating_sum": rating_sum,
    }


def finalize(stage: str, ids: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``_manifest.json``, drop the scratch files and rename the stage to ``out``."""
    plan = load_plan(stage)
    root = plan.stage_path
    split_info = {}
    for split in schema.SPLITS:
        mine = sorted(
            (p for p in parts if p["split"] == split and p["file"]), key=lambda p: p["bucket"]
        )
        split_info[split] = SplitInfo(
            rows=sum(p["rows"] for p in mine),
            rating_sum=sum(p["rating_sum"] for p in mine),
            files=[p["file"] for p in mine],
        )
    if split_info["train"].rows == 0:
        raise DatasetError(f"{plan.source}: no training ratings after the split")
    unmatched = ids["probe_pairs"] - split_info["test"].rows if plan.probe else 0
    if unmatched:
        log.warning("%s: %d probe pairs have no rating in training_set", plan.probe, unmatched)
    manifest = Manifest(
        name=plan.name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        source=SourceInfo(
            path=plan.source,
            format=plan.format,
            fingerprint=plan.source_fingerprint,
            files=plan.source_files,
            bytes=plan.source_bytes,
        ),
        ingest_config=plan.config.model_dump(),
        n_users=ids["n_users"],
        n_items=ids["n_items"],
        splits=split_info,
        probe_unmatched=unmatched,
        qualifying_rows=ids["qualifying_rows"],
        schema=schema_fields(schema.RATINGS),
        fingerprint=plan.fingerprint,
    )
    write_manifest(root, manifest)
    shutil.rmtree(root / SCRATCH)
    (root / PLAN_FILE).unlink()
    publish_dir(root, Path(plan.out))
    return manifest.model_dump(mode="json", by_alias=True)


def abort(stage: str) -> None:
    """Remove a staging directory after a failure; ``out`` is left as it was."""
    shutil.rmtree(stage, ignore_errors=True)


def bucket_jobs(ids: dict[str, Any]) -> list[tuple[str, int]]:
    """Every (split, bucket) pair to compact."""
    return [(s, b) for s in schema.SPLITS for b in range(ids["buckets"][s])]
