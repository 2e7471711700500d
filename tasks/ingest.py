"""Prefect tasks of the ingest stage; each wraps one ``cflib.ingest.steps`` call."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from cflib.config import IngestConfig
from cflib.ingest import steps
from tasks._retry import IO_RETRIES, IO_RETRY_DELAY_S, retry_on_io


@task(name="plan-ingest")
def plan_ingest(source: str, out: str, config: IngestConfig) -> dict[str, Any]:
    """Find and fingerprint the source files; stage a directory unless ``out`` is current."""
    plan = steps.plan_ingest(source, out, config)
    logger = get_run_logger()
    if plan.up_to_date:
        logger.info("%s is up to date with %s; nothing to do", plan.out, plan.source)
    else:
        files = sum(len(s) for s in plan.shards)
        logger.info(
            "%s: %s, %d rating files in %d shards, %.1f MB",
            plan.source,
            plan.format,
            files,
            len(plan.shards),
            plan.source_bytes / 1e6,
        )
    return {
        "stage": plan.stage,
        "out": plan.out,
        "up_to_date": plan.up_to_date,
        "shards": len(plan.shards),
        "fingerprint": plan.fingerprint,
    }


@task(
    name="parse-shard",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY_S,
    retry_condition_fn=retry_on_io,
)
def parse_shard(stage: str, index: int) -> dict[str, Any]:
    """Parse one shard of rating files to Parquet with raw ids."""
    return steps.parse_shard(stage, index)


@task(
    name="build-id-maps",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY_S,
    retry_condition_fn=retry_on_io,
)
def build_id_maps(stage: str, parsed: list[dict[str, Any]]) -> dict[str, Any]:
    """Dense user and item indices, probe keys and the qualifying table."""
    ids = steps.build_id_maps(stage, parsed)
    get_run_logger().info(
        "%d ratings, %d users, %d items", ids["rows"], ids["n_users"], ids["n_items"]
    )
    return ids


@task(
    name="split-shard",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY_S,
    retry_condition_fn=retry_on_io,
)
def split_shard(stage: str, index: int, ids: dict[str, Any]) -> dict[str, Any]:
    """Assign one shard's ratings to splits and buckets."""
    return steps.split_shard(stage, index, ids)


@task(
    name="compact-bucket",
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAY_S,
    retry_condition_fn=retry_on_io,
)
def compact_bucket(stage: str, job: tuple[str, int]) -> dict[str, Any]:
    """Write one shuffled Parquet part of a split."""
    split, bucket = job
    return steps.compact_bucket(stage, split, bucket)


@task(name="finalize-dataset")
def finalize(stage: str, ids: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the manifest and rename the finished dataset into place."""
    out = steps.load_plan(stage).out
    manifest = steps.finalize(stage, ids, parts)
    rows = {k: v["rows"] for k, v in manifest["splits"].items()}
    get_run_logger().info("wrote %s: %s", out, rows)
    return manifest


@task(name="abort-ingest")
def abort(stage: str) -> None:
    """Remove the staging directory of a failed ingest."""
    steps.abort(stage)
