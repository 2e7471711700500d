"""Prefect tasks of the evaluate stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from cflib import schema
from cflib.config import EvaluateConfig
from cflib.evaluate import report, scoring
from cflib.train import runs


@task(name="evaluate-run")
def evaluate_run(run: str, config: EvaluateConfig) -> dict[str, Any]:
    """Score the run's model and the baselines on the test split."""
    metrics = scoring.evaluate(Path(run), config)
    get_run_logger().info("test RMSE %.4f over %d ratings", metrics["rmse"], metrics["n_test"])
    return metrics


@task(name="write-report")
def write_report(run: str) -> str:
    """Render ``RUN/report.md`` and ``RUN/report.html``, and show the results in the
    Prefect UI as artifacts of the flow run: the metrics table, the report with its
    figures, and where the HTML report is (a path: the UI's browser refuses ``file://``)."""
    path = report.write_report(Path(run))
    metrics = runs.metrics(Path(run))
    rows = report.table_rows(metrics)
    run_id = metrics["run_id"]
    create_table_artifact(
        rows, key="test-metrics", description=f"Test RMSE and MAE of run {run_id}"
    )
    html = str(path.with_name(schema.REPORT_HTML_FILE).resolve())
    create_markdown_artifact(
        report.ui_markdown(Path(run), html_report=html),
        key="run-report",
        description=f"Report of run {run_id}, figures included",
    )
    create_markdown_artifact(
        f"# HTML report of run {run_id}\n\nSelf-contained (figures included); open it in a "
        f"browser on the machine that holds the run (`cfpipe publish` keeps a copy in the "
        f"registry's artifact):\n\n`{html}`\n",
        key="report-html",
        description=f"Where the HTML report is: {html}",
    )
    get_run_logger().info("HTML report: %s", html)
    return str(path)
