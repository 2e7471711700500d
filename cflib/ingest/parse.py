"""The parse step: one shard of rating files to Arrow with raw ids, its id sets, and
what its readers counted and quarantined, all in the stage's scratch."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from cflib.ingest import quarantine
from cflib.ingest.ids import sorted_unique
from cflib.ingest.plan import load_plan
from cflib.ingest.scratch import write_scratch
from cflib.sources.accounting import Report


class ParsedShard(BaseModel):
    """What ``parse_shard`` wrote: the shard's index and its rating rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    rows: int


def parse_shard(stage: str, index: int) -> ParsedShard:
    """Parse one shard of rating files into the scratch, with its id sets, per-file
    tallies and quarantined lines next to it."""
    plan = load_plan(stage)
    layout = plan.layout
    report = Report(strict=plan.config.strict)
    table = plan.source_variant.read_shard(plan.shards[index], report)
    write_scratch(table, layout.raw_table(index))
    quarantine.save_report(report, *layout.shard_report(index))
    users = sorted_unique(table.column("raw_user").to_numpy())
    items = sorted_unique(table.column("raw_item").to_numpy())
    np.savez(layout.raw_ids(index), users=users, items=items)
    return ParsedShard(index=index, rows=table.num_rows)
