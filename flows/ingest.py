"""The ingest flow: parse shards on Dask, build id maps, split, write Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect_dask import DaskTaskRunner
from pydantic import BaseModel, ConfigDict, Field

from cflib.config import IngestConfig
from cflib.fsutil import exclusive, naming
from cflib.ingest.parallel import performance_report
from cflib.ingest.scratch import ScratchLayout
from flows import limits
from flows.runtime import dask_scheduler_address, dask_task_runner
from tasks import ingest as t


class IngestParams(BaseModel):
    """The source directory to read and the dataset directory to write."""

    # The Prefect UI renders this model as the run form (titles and descriptions included).
    model_config = ConfigDict(frozen=True, extra="forbid", title="Ingest")

    source: str = Field(
        title="Source directory",
        description="A Netflix Prize or MovieLens directory on the machine that runs the flow.",
    )
    out: str = Field(
        title="Dataset directory",
        description="Where the dataset goes; a dataset already there is replaced when done.",
    )
    config: IngestConfig = Field(default_factory=IngestConfig, title="Options")


@flow(name="ingest", task_runner=DaskTaskRunner(), log_prints=True)  # type: ignore[arg-type]
def ingest_flow(params: IngestParams) -> dict[str, Any]:
    """Ingest a source directory into a partitioned Parquet dataset at ``out``.

    The flow's DaskTaskRunner owns the cluster (a LocalCluster, or an existing scheduler);
    each stage is a task that fans its shards or buckets out on that cluster. The Dask
    work is recorded as a performance report kept in the dataset (``dask-performance.html``).

    Args:
        params: What to read and where to write; every option shows its default.
    """
    source, out, config = params.source, params.out, params.config
    limits.warn_if_unenforced(config.timeout)
    with exclusive(Path(out).resolve(), "--out"), naming(Path(out)):  # one writer per dataset
        plan = t.plan_ingest(source, out, config)
        if plan["up_to_date"]:
            return {"up_to_date": True, "out": plan["out"], "fingerprint": plan["fingerprint"]}
        stage = plan["stage"]
        try:
            address = dask_scheduler_address()
            with performance_report(address, ScratchLayout(Path(stage)).performance_report):
                parsed = t.parse_shards(stage, address)
                ids = t.build_id_maps(stage, parsed, address)
                t.split_shards(stage, ids, address)
                parts = t.compact_buckets(stage, ids, address)
                moved = t.locate_repeats(stage, address)
            return t.finalize(stage, ids, parts, moved)
        except BaseException:
            t.abort(stage)
            raise


def run_ingest(source: str, out: str, config: IngestConfig) -> dict[str, Any]:
    """Run the ingest flow on the Dask cluster that ``config`` names, within its
    ``timeout`` (``limits.call``; the cluster is closed and the staging directory removed)."""
    flow_ = ingest_flow.with_options(task_runner=dask_task_runner(config))
    return limits.call(flow_, config.timeout, IngestParams(source=source, out=out, config=config))
