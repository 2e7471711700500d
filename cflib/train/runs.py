"""Run directories: their ids and the files the stages leave in them."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cflib import schema
from cflib.errors import DatasetError

#: Where a training keeps its checkpoints in the run directory, and the file there that
#: names what it trains (run id, resolved config, data fingerprint) from its start.
CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run.json"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261123T212233Z-3fa2c1``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def check_name(value: str, what: str) -> str:
    """Accept a single safe path component (run id, dataset or model name).

    Raises:
        DatasetError: ``value`` is empty, has a separator, or starts with a dot.
    """
    if not _NAME.match(value):
        raise DatasetError(
            f"{what} {value!r}: must be letters, digits, '.', '_' or '-' and not start with "
            "'.' (it becomes a directory name)"
        )
    return value


def read_json(path: Path, hint: str) -> dict[str, Any]:
    """Load a JSON file that a previous stage wrote, or say which stage to run."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing; {hint}")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return data


def train_summary(run: Path) -> dict[str, Any]:
    """``RUN/train.json``, written by ``cfpipe train``."""
    if not run.is_dir():
        raise DatasetError(f"{run}: run directory does not exist")
    return read_json(run / schema.TRAIN_SUMMARY_FILE, f"is {run} the --out of `cfpipe train`?")


def metrics(run: Path) -> dict[str, Any]:
    """``RUN/metrics.json``, written by ``cfpipe evaluate``."""
    return read_json(run / schema.METRICS_FILE, f"run `cfpipe evaluate {run}` first")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file, so readers never see half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def find_trained(runs_dir: Path, data_fingerprint: str, config: dict[str, Any]) -> Path | None:
    """The newest run under ``runs_dir`` that finished training on the same data (by
    fingerprint) with the same config, or None. Lets a rerun skip a completed stage."""
    for path in _newest_first(runs_dir, schema.TRAIN_SUMMARY_FILE):
        if _records(path, data_fingerprint, config) and (path.parent / schema.MODEL_FILE).is_file():
            return path.parent
    return None


def find_interrupted(runs_dir: Path, data_fingerprint: str, config: dict[str, Any]) -> Path | None:
    """The newest run under ``runs_dir`` that started training on the same data with the
    same config and did not finish (no ``train.json``), or None: the run a rerun of the
    pipeline resumes rather than starting over."""
    for path in _newest_first(runs_dir, f"{CHECKPOINT_DIR}/{RUN_FILE}"):
        run = path.parent.parent
        if not (run / schema.TRAIN_SUMMARY_FILE).exists() and _records(
            path, data_fingerprint, config
        ):
            return run
    return None


def _newest_first(runs_dir: Path, name: str) -> list[Path]:
    """``runs_dir/*/name``, newest run id first (run ids sort by time)."""
    return sorted(runs_dir.glob(f"*/{name}"), reverse=True) if runs_dir.is_dir() else []


def _records(path: Path, data_fingerprint: str, config: dict[str, Any]) -> bool:
    """Whether the JSON object at ``path`` names this data fingerprint and config; an
    unreadable file names none."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    # train.json's ``config`` is what trained (the search's choice in it); ``request``
    # the options before the search, as a rerun resolves them (run.json's ``config``).
    return (
        isinstance(found, dict)
        and found.get("data_fingerprint") == data_fingerprint
        and found.get("request", found.get("config")) == config
    )


def is_evaluated(run: Path, config: dict[str, Any]) -> bool:
    """Whether ``run`` has metrics from an evaluation with ``config`` and its reports."""
    try:
        done = json.loads((run / schema.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return False
    reports = (run / schema.REPORT_FILE, run / schema.REPORT_HTML_FILE)
    return (
        isinstance(done, dict)
        and done.get("config") == config
        and all(p.is_file() for p in reports)
    )
