"""Prefect task that gives the parent `pipeline` run its own summary."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from cflib.evaluate import report
from cflib.train import runs


@task(name="summarize-pipeline")
def summarize_pipeline(lines: list[str], run: str, artifact: str | None = None) -> None:
    """Log one line per stage in the parent run, and attach the test metrics table and
    the report (figures included) to it (the subflows keep theirs). ``artifact``: the
    run's published artifact, whose copy of the HTML report is the one named."""
    logger = get_run_logger()
    for line in lines:
        logger.info("%s", line)
    html = report.html_location(Path(run), artifact)
    logger.info("HTML report: %s", html)
    metrics = runs.metrics(Path(run))
    create_table_artifact(
        report.table_rows(metrics),
        key="pipeline-metrics",
        description=f"Test RMSE and MAE of run {metrics['run_id']}",
    )
    stages = "\n".join(f"- {line}" for line in lines)
    text = report.ui_markdown(Path(run), html_report=html)
    create_markdown_artifact(
        f"# Pipeline run\n\n{stages}\n\n{text}",
        key="pipeline-summary",
        description=f"Each stage in one line, then the report of run {metrics['run_id']}",
    )
