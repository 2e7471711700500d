"""Ingest steps. Each is a function over paths and small dicts, so Dask can run many of
them at once on any worker that sees the same filesystem, and Prefect can retry one.
The split assignment is in ``cflib.ingest.assign``, the fan-out in ``cflib.ingest.parallel``.

Layout of the staging directory (renamed to ``--out`` only when complete)::

    plan.json                                the Plan below
    scratch/raw/shard-00000.arrow            parsed ratings of one shard, raw ids (Arrow IPC)
    scratch/raw/shard-00000.ids.npz          that shard's distinct users and items
    scratch/{users,items,probe_keys}.npy     sorted id sets for the dense maps and splits
    scratch/pieces/<split>/b00000/shard-00000.arrow   one shard's rows of one bucket
    scratch/pieces/by-user/b00000/shard-00000.arrow   (temporal split: rows by user first)
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
from pydantic import BaseModel, ConfigDict, Field

from cflib import schema
from cflib.config import IngestConfig
from cflib.data.manifest import (
    FileAccount,
    Manifest,
    SourceInfo,
    SplitInfo,
    load_manifest,
    schema_fields,
    write_manifest,
)
from cflib.errors import DatasetError
from cflib.fsutil import publish_dir, staging_dir
from cflib.ingest import quarantine
from cflib.ingest import splits as hashing
from cflib.ingest.ids import DenseIds, sorted_unique, union_sorted
from cflib.ingest.source import (
    Shard,
    find_source,
    fingerprint,
    plan_shards,
    read_items,
    read_shard,
    read_users,
)
from cflib.sources import netflix
from cflib.sources.accounting import Report

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 131_072
PLAN_FILE = "plan.json"
# Parquet's encoding of the parts: dictionaries pay off for the few distinct ratings and
# dates, not for the ids.
DICTIONARY_COLUMNS = ["rating", "date"]
SCRATCH = "scratch"
# Config fields that change the dataset's contents; the rest only change how it is made.
_CONTENT_FIELDS = (
    "format",
    "name",
    "split",
    "validation_fraction",
    "test_fraction",
    "seed",
    "bucket_rows",
    "strict",
)


class Plan(BaseModel):
    """What one ingest will do; written to ``plan.json`` for the workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    out: str
    stage: str | None
    format: str
    name: str
    split: str = Field(description="probe, random or temporal: how the test split is chosen.")
    shards: list[Shard]
    probe: str | None
    qualifying: str | None
    items: str | None
    users: str | None
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

    source_files: int


def load_plan(stage: str | Path) -> Plan:
    """Read the plan a worker was handed by its staging directory."""
    return Plan.model_validate_json((Path(stage) / PLAN_FILE).read_text())


def _existing_fingerprint(out: Path) -> str | None:
    """The fingerprint of the dataset at ``out``, if it is whole (every part checked)."""
    if not (out / schema.MANIFEST_FILE).is_file():
        return None
    try:
        return load_manifest(out).fingerprint
    except DatasetError as exc:
        log.warning("%s: rebuilding, the existing dataset is damaged (%s)", out, exc)
        return None


def write_scratch(table: pa.Table, path: Path) -> None:
    """Arrow IPC for intermediate files: written once, read once, deleted; no encoding."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_scratch(path: Path) -> pa.Table:
    """Read a file that ``write_scratch`` wrote."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _split_mode(asked: str, has_probe: bool) -> str:
    if asked == "auto":
        return "probe" if has_probe else "random"
    return asked


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
    shards = plan_shards(files, int(cfg.shard_mb * 1e6))
    stage = None if up_to_date else staging_dir(out)
    plan = Plan(
        source=str(source),
        out=str(out),
        stage=None if stage is None else str(stage),
        format=files.format,
        name=cfg.name or source.name,
        split=_split_mode(cfg.split, files.probe is not None),
        shards=shards,
        probe=None if files.probe is None else str(files.probe),
        qualifying=None if files.qualifying is None else str(files.qualifying),
        items=None if files.items is None else str(files.items),
        users=None if files.users is None else str(files.users),
        source_files=len(files.all_files()),
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
    """Parse one shard of rating files into ``scratch/raw/shard-NNNNN.arrow``, with its
    id sets, per-file tallies and quarantined lines next to it."""
    plan = load_plan(stage)
    shard = plan.shards[index]
    report = Report(strict=plan.config.strict)
    table = read_shard(plan.format, shard, report)
    raw = plan.stage_path / SCRATCH / "raw"
    write_scratch(table, raw / f"shard-{index:05d}.arrow")
    quarantine.save_report(report, raw, f"shard-{index:05d}")
    users = sorted_unique(table.column("raw_user").to_numpy())
    items = sorted_unique(table.column("raw_item").to_numpy())
    np.savez(raw / f"shard-{index:05d}.ids.npz", users=users, items=items)
    return {"index": index, "rows": table.num_rows}


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
    report = Report(strict=plan.config.strict)
    user_side = None if plan.users is None else read_users(plan.format, Path(plan.users), report)
    item_side = None if plan.items is None else read_items(plan.format, Path(plan.items), report)
    user_map = _side_map(users, "raw_user", user_side, schema.USER_MAP)
    pq.write_table(user_map, root / schema.USER_MAP_FILE)
    pq.write_table(
        _side_map(items, "raw_item", item_side, schema.ITEM_MAP), root / schema.ITEM_MAP_FILE
    )

    probe_pairs = 0
    if plan.split == "probe" and plan.probe is not None:
        probe = netflix.read_probe(Path(plan.probe), report)
        keys = sorted_unique(
            hashing.pair_keys(
                probe.column("raw_item").to_numpy(), probe.column("raw_user").to_numpy()
            )
        )
        probe_pairs = int(keys.size)
        np.save(scratch / "probe_keys.npy", keys)
    qualifying_rows = 0
    if plan.qualifying is not None:
        qualifying_rows = _write_qualifying(Path(plan.qualifying), users, items, root, report)
    quarantine.save_report(report, scratch, "side")

    rows = sum(int(r["rows"]) for r in parsed)
    test_est = probe_pairs if plan.split == "probe" else rows * plan.config.test_fraction
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
            # Temporal splits first gather each user's ratings in one of these.
            "users": _n_buckets(rows, bucket_rows),
        },
    }


def _side_map(ids: np.ndarray, key: str, side: pa.Table | None, target: pa.Schema) -> pa.Table:
    """One row per dense id, in dense order, with the side table's features for it.

    Ids the side table lacks get nulls (empty genre lists); side rows for ids without
    ratings are dropped.
    """
    n = ids.size
    columns: dict[str, pa.Array] = {key: pa.array(ids, pa.int64())}
    if side is None:
        for field in target:
            if field.name != key:
                columns[field.name] = _missing(field.type, n)
        return pa.table(columns, schema=target)
    idx = DenseIds(ids)(side.column(key).to_numpy())
    keep = idx >= 0
    row = np.full(n, -1, np.int64)  # The side table's row of each dense id, or -1.
    row[idx[keep]] = np.nonzero(keep)[0]
    take = pa.array(np.where(row >= 0, row, 0))
    missing = pa.array(row < 0)
    for field in target:
        if field.name == key:
            continue
        fill = pa.scalar([] if pa.types.is_list(field.type) else None, field.type)
        column = (
            side.column(field.name).take(take) if n and side.num_rows else _missing(field.type, n)
        )
        columns[field.name] = pa.compute.if_else(missing, fill, column)
    return pa.table(columns, schema=target)


def _missing(dtype: pa.DataType, n: int) -> pa.Array:
    """``n`` values of ``dtype`` standing for 'unknown': empty lists, else nulls."""
    if pa.types.is_list(dtype):
        return pa.array([[]] * n, dtype)
    return pa.nulls(n, dtype)


def _write_qualifying(
    path: Path, users: np.ndarray, items: np.ndarray, root: Path, report: Report
) -> int:
    table = netflix.read_qualifying(path, report)
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


def concat_pieces(plan: Plan, pieces: list[Path], record: Path) -> pa.Table:
    """The rows of ``shard-NNNNN.arrow`` pieces in shard order, each (user, item) pair once.

    Later copies of a pair are dropped and recorded in ``record`` for the quarantine
    (with ``--strict`` the first one raises ``DataFormatError`` naming both lines).
    """
    tables = [read_scratch(p) for p in pieces]
    table = pa.concat_tables(tables)
    return quarantine.drop_repeats(
        table,
        quarantine.shard_of_rows(pieces, [t.num_rows for t in tables]),
        fmt=plan.format,
        plan_shards=plan.shards,
        strict=plan.config.strict,
        record=record,
    )


def compact_bucket(stage: str, split: str, bucket: int) -> dict[str, Any]:
    """Merge one bucket's pieces into a shuffled part ``ratings/split=S/part-NNNNN.parquet``."""
    plan = load_plan(stage)
    pieces_dir = plan.stage_path / SCRATCH / "pieces" / split / f"b{bucket:05d}"
    pieces = sorted(pieces_dir.glob("*.arrow")) if pieces_dir.is_dir() else []
    if not pieces:
        return {"split": split, "bucket": bucket, "file": None, "rows": 0, "rating_sum": 0.0}
    if plan.split == "temporal":  # repeats were dropped per user bucket, before the split
        table = pa.concat_tables(read_scratch(p) for p in pieces)
    else:  # a pair's copies share a split and a bucket
        repeats = plan.stage_path / SCRATCH / quarantine.REPEATS / f"{split}-b{bucket:05d}.parquet"
        table = concat_pieces(plan, pieces, repeats)
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


def locate_repeats(stage: str, shard: int, repeats: pa.Table) -> dict[str, int]:
    """Name the lines of one shard's dropped repeated ratings (see ``quarantine``)."""
    plan = load_plan(stage)
    scratch = plan.stage_path / SCRATCH
    return quarantine.locate_repeats(plan.format, plan.shards[shard], shard, repeats, scratch)


def _accounting(plan: Plan, rows: int, moved: list[dict[str, int]]) -> list[FileAccount]:
    """Per-file tallies, checked; writes ``quarantine.parquet``."""
    root = plan.stage_path
    tallies, bad = quarantine.collect(root / SCRATCH, moved)
    rating_files = {f for shard in plan.shards for f in shard.files}
    rating_files |= {shard.path for shard in plan.shards if shard.path is not None}
    quarantine.check_balanced(tallies, bad, rows, rating_files)
    source = Path(plan.source)
    side = (plan.probe, "probe"), (plan.qualifying, "qualifying"), (plan.items, "items")
    roles = {path: role for path, role in (*side, (plan.users, "users")) if path is not None}

    def rel(path: str) -> str:
        return Path(path).relative_to(source).as_posix()

    bad = bad.set_column(0, "file", pa.array([rel(f) for f in bad.column("file").to_pylist()]))
    pq.write_table(bad, root / schema.QUARANTINE_FILE)
    return [
        FileAccount(file=rel(path), role=roles.get(path, "ratings"), **vars(tally))
        for path, tally in sorted(tallies.items(), key=lambda kv: rel(kv[0]))
    ]


def finalize(
    stage: str,
    ids: dict[str, Any],
    parts: list[dict[str, Any]],
    moved: list[dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Write ``_manifest.json`` and ``quarantine.parquet``, drop the scratch files and
    rename the stage to ``out``. ``moved`` is what ``locate_repeats`` returned."""
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
    rows = sum(info.rows for info in split_info.values())
    accounting = _accounting(plan, rows, moved or [])
    if split_info["train"].rows == 0:
        raise DatasetError(f"{plan.source}: no training ratings after the split")
    unmatched = ids["probe_pairs"] - split_info["test"].rows if plan.split == "probe" else 0
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
        split=plan.split,
        probe_unmatched=unmatched,
        qualifying_rows=ids["qualifying_rows"],
        quarantined=sum(a.quarantined for a in accounting),
        accounting=accounting,
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
