"""Run every ingest step in this process: the same steps as the Prefect flow, serially."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cflib.config import IngestConfig
from cflib.ingest import steps


def ingest_local(source: str | Path, out: str | Path, cfg: IngestConfig) -> dict[str, Any]:
    """Run every ingest step in this process, in order (no Prefect, no Dask).

    The Prefect flow in ``flows/ingest.py`` runs the same steps, the parallel ones on Dask.
    Returns the manifest as a dict, or the existing one's when ``out`` is up to date.
    """
    plan = steps.plan_ingest(source, out, cfg)
    if plan.up_to_date:
        return {"up_to_date": True, "out": plan.out, "fingerprint": plan.fingerprint}
    stage = str(plan.stage_path)
    try:
        parsed = [steps.parse_shard(stage, i) for i in range(len(plan.shards))]
        ids = steps.build_id_maps(stage, parsed)
        for i in range(len(plan.shards)):
            steps.split_shard(stage, i, ids)
        parts = [steps.compact_bucket(stage, s, b) for s, b in steps.bucket_jobs(ids)]
        return steps.finalize(stage, ids, parts)
    except BaseException:
        steps.abort(stage)
        raise
