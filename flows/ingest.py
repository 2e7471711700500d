"""The ingest flow: parse shards on Dask, build id maps, split, write Parquet."""

from __future__ import annotations

from typing import Any

from prefect import flow, unmapped
from prefect_dask import DaskTaskRunner

from cflib.config import IngestConfig
from cflib.ingest.steps import bucket_jobs
from flows.runtime import dask_task_runner
from tasks import ingest as t


@flow(name="ingest", task_runner=DaskTaskRunner(), log_prints=True)  # type: ignore[arg-type]
def ingest_flow(source: str, out: str, config: IngestConfig | None = None) -> dict[str, Any]:
    """Ingest a source directory into a partitioned Parquet dataset at ``out``."""
    config = config or IngestConfig()
    plan = t.plan_ingest(source, out, config)
    if plan["up_to_date"]:
        return {"up_to_date": True, "out": plan["out"], "fingerprint": plan["fingerprint"]}
    stage = plan["stage"]
    try:
        parsed = t.parse_shard.map(unmapped(stage), range(plan["shards"])).result()
        ids = t.build_id_maps.submit(stage, parsed).result()
        t.split_shard.map(unmapped(stage), range(plan["shards"]), unmapped(ids)).result()
        parts = t.compact_bucket.map(unmapped(stage), bucket_jobs(ids)).result()
        return t.finalize(stage, ids, parts)
    except BaseException:
        t.abort(stage)
        raise


def run_ingest(source: str, out: str, config: IngestConfig) -> dict[str, Any]:
    """Run the ingest flow on the Dask cluster that ``config`` names."""
    return ingest_flow.with_options(task_runner=dask_task_runner(config))(source, out, config)
