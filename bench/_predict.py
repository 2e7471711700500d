"""`cfpipe predict` and `cfpipe recommend` timed in fresh processes, as a user runs them.

``predict_rows`` gives the rows for the start-up benchmark's table; run alone it prints
them for one published artifact:

    .venv/bin/python bench/_predict.py REG/<dataset>/<model>/<run-id> [--runs 5]

Each command runs ``--runs`` times in a new ``python -m flows.app`` process; a row has the
median wall time and the median CPU time (user + system) of that process, which a busy
machine inflates less than the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def raw_pair(artifact: Path) -> tuple[int, int]:
    """A raw user and a raw item of ``artifact``: the last of each id map (dense id n-1)."""
    user = pq.ParquetFile(artifact / "user_map.parquet").read(columns=["raw_user"])
    item = pq.ParquetFile(artifact / "item_map.parquet").read(columns=["raw_item"])
    return int(user.column(0)[-1].as_py()), int(item.column(0)[-1].as_py())


def time_command(
    argv: list[str], runs: int, env: Mapping[str, str] | None = None
) -> dict[str, float]:
    """Median ``wall_s`` and ``cpu_s`` of ``python -m flows.app ARGV`` over ``runs`` runs.

    Raises:
        RuntimeError: a run failed (its stderr's end in the message).
    """
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "flows.app", *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ if env is None else env),
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(
                f"cfpipe {' '.join(argv)}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
            )
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def predict_rows(
    artifact: Path, runs: int = 5, env: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Rows ``{"command", "wall_s", "cpu_s"}`` of ``cfpipe predict`` (one rating) and
    ``cfpipe recommend -k 10`` on ``artifact``, for its last user and item."""
    user, item = raw_pair(artifact)
    commands = {
        "cfpipe predict": ["predict", str(user), str(item), "--model", str(artifact)],
        "cfpipe recommend -k 10": ["recommend", "--user", str(user), "--model", str(artifact)],
    }
    return [{"command": name, **time_command(argv, runs, env)} for name, argv in commands.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="a published artifact directory")
    parser.add_argument("--runs", type=int, default=5, help="runs of each command")
    args = parser.parse_args()
    print("| command | wall (s) | CPU (s) |\n|---|---|---|")
    for row in predict_rows(args.artifact, args.runs):
        print(f"| `{row['command']}` | {row['wall_s']:.2f} | {row['cpu_s']:.2f} |")


if __name__ == "__main__":
    main()
