"""Prefect task of the publish stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger

from cflib import registry
from cflib.config import PublishConfig
from cflib.evaluate.report import html_location
from tasks._retry import io_task


@io_task("publish-run")
def publish_run(run: str, registry_root: str, config: PublishConfig) -> dict[str, Any]:
    """Publish the run into the registry (a path or fsspec URL); promote it if it passes."""
    result = registry.publish(Path(run), registry_root, config)
    get_run_logger().info("HTML report: %s", html_location(Path(run), result["artifact"]))
    promotion = result["promotion"]
    if promotion["promoted"]:
        get_run_logger().info(
            "published %s; latest moved (%s)", result["artifact"], promotion["reason"]
        )
    else:
        get_run_logger().info(
            "published %s; not promoted: %s", result["artifact"], promotion["reason"]
        )
    return result
