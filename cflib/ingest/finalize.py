"""The last ingest step: the manifest and the quarantine, then the staging directory
renamed to ``--out``; or, after a failure, the stage removed."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cflib import schema
from cflib.data.manifest import Manifest, SourceInfo, SplitInfo, schema_fields, write_manifest
from cflib.errors import DatasetError
from cflib.fsutil import publish_dir
from cflib.ingest import quarantine
from cflib.ingest.compact import Part
from cflib.ingest.id_maps import IdMaps
from cflib.ingest.plan import load_plan
from cflib.logs import stage_logger

log = stage_logger("ingest")


def finalize(
    stage: str,
    ids: IdMaps,
    parts: Sequence[Part],
    moved: list[dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Write ``_manifest.json`` and ``quarantine.parquet``, drop the scratch files and
    rename the stage to ``out``. ``moved`` is what ``locate_repeats`` returned."""
    plan = load_plan(stage)
    root = plan.stage_path
    split_info = {}
    for split in schema.SPLITS:
        mine = sorted((p for p in parts if p.split == split and p.file), key=lambda p: p.bucket)
        lows = [p.rating_min for p in mine if p.rating_min is not None]
        highs = [p.rating_max for p in mine if p.rating_max is not None]
        split_info[split] = SplitInfo(
            rows=sum(p.rows for p in mine),
            rating_sum=sum(p.rating_sum for p in mine),
            rating_min=min(lows, default=None),
            rating_max=max(highs, default=None),
            files=[p.file for p in mine if p.file],
        )
    rows = sum(info.rows for info in split_info.values())
    accounting = quarantine.accounting(plan, rows, moved or [])
    if split_info["train"].rows == 0:
        raise DatasetError(f"{plan.source}: no training ratings after the split")
    unmatched = ids.probe_pairs - split_info["test"].rows if plan.split == "probe" else 0
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
        n_users=ids.n_users,
        n_items=ids.n_items,
        splits=split_info,
        split=plan.split,
        probe_unmatched=unmatched,
        qualifying_rows=ids.qualifying_rows,
        quarantined=sum(a.quarantined for a in accounting),
        accounting=accounting,
        schema=schema_fields(schema.RATINGS),
        fingerprint=plan.fingerprint,
    )
    write_manifest(root, manifest)
    shutil.rmtree(plan.layout.scratch)
    plan.layout.plan_file.unlink()
    publish_dir(root, Path(plan.out))
    return manifest.model_dump(mode="json", by_alias=True)


def abort(stage: str) -> None:
    """Remove a staging directory after a failure; ``out`` is left as it was."""
    shutil.rmtree(stage, ignore_errors=True)
