"""Prefect tasks of the ingest stage. Each stage is one task; the ones over many shards or
buckets fan out on the flow's Dask cluster (its scheduler address is passed in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from cflib import schema
from cflib.config import IngestConfig
from cflib.ingest import parallel
from cflib.ingest import plan as plans
from cflib.ingest.compact import Part
from cflib.ingest.finalize import abort as abort_stage
from cflib.ingest.finalize import finalize as finalize_stage
from cflib.ingest.id_maps import IdMaps
from cflib.ingest.id_maps import build_id_maps as build_maps
from cflib.ingest.parse import ParsedShard
from cflib.ingest.split import SplitDone
from tasks._progress import Progress
from tasks._retry import io_task

_PROGRESS_STEPS = 10


def _on_dask(address: str, what: str) -> parallel.Mapper:
    """A Dask mapper that logs progress about every tenth of the jobs and shows it in the
    Prefect UI as a progress artifact of the task run."""
    logger = get_run_logger()
    bar = Progress()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // _PROGRESS_STEPS) == 0:
            logger.info("%s: %d/%d", what, done, total)
            bar.set(100.0 * done / total, what)

    return parallel.dask_map(address, progress)


@task(name="plan-ingest")
def plan_ingest(source: str, out: str, config: IngestConfig) -> dict[str, Any]:
    """Find and fingerprint the source files; stage a directory unless ``out`` is current."""
    plan = plans.plan_ingest(source, out, config)
    logger = get_run_logger()
    if plan.up_to_date:
        logger.info("%s is up to date with %s; nothing to do", plan.out, plan.source)
    else:
        logger.info(
            "%s: %s, %d files, %.1f MB, %d shards",
            plan.source,
            plan.format,
            plan.source_files,
            plan.source_bytes / 1e6,
            len(plan.shards),
        )
    return {
        "stage": plan.stage,
        "out": plan.out,
        "up_to_date": plan.up_to_date,
        "fingerprint": plan.fingerprint,
    }


@io_task("parse-shards")
def parse_shards(stage: str, address: str) -> list[ParsedShard]:
    """Parse every shard of rating files to Arrow with raw ids, in parallel."""
    return parallel.parse_all(stage, _on_dask(address, "shards parsed"))


@io_task("build-id-maps")
def build_id_maps(stage: str, parsed: list[ParsedShard], address: str) -> IdMaps:
    """Dense user and item indices, probe keys and the qualifying table (on a worker)."""
    [ids] = parallel.dask_map(address)(build_maps, [(stage, parsed)])
    get_run_logger().info("%d ratings, %d users, %d items", ids.rows, ids.n_users, ids.n_items)
    return ids


@io_task("split-shards")
def split_shards(stage: str, ids: IdMaps, address: str) -> list[SplitDone]:
    """Assign every shard's ratings to splits and buckets, in parallel."""
    return parallel.split_all(stage, ids, _on_dask(address, "shards split"))


@io_task("compact-buckets")
def compact_buckets(stage: str, ids: IdMaps, address: str) -> list[Part]:
    """Write every shuffled Parquet part, in parallel."""
    return parallel.compact_all(stage, ids, _on_dask(address, "parts written"))


@io_task("locate-repeats")
def locate_repeats(stage: str, address: str) -> list[dict[str, int]]:
    """Name the file and line of every dropped repeated rating, in parallel."""
    return parallel.locate_all(stage, _on_dask(address, "shards with repeats read"))


@task(name="finalize-dataset")
def finalize(
    stage: str, ids: IdMaps, parts: list[Part], moved: list[dict[str, int]]
) -> dict[str, Any]:
    """Write the manifest and the quarantine, and rename the finished dataset into place."""
    out = plans.load_plan(stage).out
    manifest = finalize_stage(stage, ids, parts, moved)
    rows = {k: v["rows"] for k, v in manifest["splits"].items()}
    logger = get_run_logger()
    logger.info("wrote %s: %s", out, rows)
    if manifest["quarantined"]:
        n = manifest["quarantined"]
        lines = "1 malformed line" if n == 1 else f"{n:,} malformed lines"
        logger.warning("%s quarantined in %s/quarantine.parquet", lines, out)
    _show_performance_report(Path(out) / schema.PERFORMANCE_REPORT_FILE)
    return manifest


def _show_performance_report(path: Path) -> None:
    """Log where the Dask performance report is and name it in an artifact: a path, since
    the browser showing the Prefect UI refuses ``file://`` links (and the dashboard it
    replaces was gone once the cluster closed)."""
    if not path.is_file():
        return
    where = str(path.resolve())
    get_run_logger().info("Dask performance report: %s", where)
    create_markdown_artifact(
        "# Dask performance report\n\n"
        "What the Dask cluster did during this ingest (task stream, worker profile, "
        "bandwidth), saved with the dataset; open this file in a browser on the machine "
        f"that holds the dataset (it needs no network):\n\n`{where}`\n",
        key="dask-performance-report",
        description=f"Where the Dask performance report is: {where}",
    )


@task(name="abort-ingest")
def abort(stage: str) -> None:
    """Remove the staging directory of a failed ingest."""
    abort_stage(stage)
