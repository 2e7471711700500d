"""The first ingest step: find the source files, fingerprint them, cut the ratings into
shards and stage a directory, or find that ``--out`` is already up to date.

Every later step is a function over the staging directory (and small typed values), so
Dask can run many of them at once on any worker that sees the same filesystem, and
Prefect can retry one: each starts by reading the plan the stage holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cflib import schema
from cflib.config import IngestConfig
from cflib.data.manifest import load_manifest
from cflib.errors import DatasetError
from cflib.fsutil import staging_dir
from cflib.ingest.scratch import ScratchLayout
from cflib.ingest.source import find_source, fingerprint, plan_shards
from cflib.logs import stage_logger
from cflib.sources.formats import FORMATS, Shard, SourceVariant

log = stage_logger("ingest")

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
    variant: str = Field(description="The source variant: its key in cflib.sources.FORMATS.")
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
    source_files: int

    @property
    def source_variant(self) -> SourceVariant:
        """The format object that reads this source."""
        return FORMATS[self.variant]

    @property
    def stage_path(self) -> Path:
        if self.stage is None:
            raise DatasetError(f"{self.out}: up to date, there is nothing to stage")
        return Path(self.stage)

    @property
    def layout(self) -> ScratchLayout:
        """The paths of the staging directory."""
        return ScratchLayout(self.stage_path)


def load_plan(stage: str | Path) -> Plan:
    """Read the plan a worker was handed by its staging directory."""
    return Plan.model_validate_json(ScratchLayout(Path(stage)).plan_file.read_text())


def _existing_fingerprint(out: Path) -> str | None:
    """The fingerprint of the dataset at ``out``, if it is whole (every part checked)."""
    if not (out / schema.MANIFEST_FILE).is_file():
        return None
    try:
        return load_manifest(out).fingerprint
    except DatasetError as exc:
        log.warning("%s: rebuilding, the existing dataset is damaged (%s)", out, exc)
        return None


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
        variant=files.variant,
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
        layout = ScratchLayout(stage)
        layout.raw.mkdir(parents=True)
        layout.plan_file.write_text(plan.model_dump_json())
    return plan
