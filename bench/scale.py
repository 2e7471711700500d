"""Train, evaluate and publish on a dataset written by bench/ingest.py, recording time and
peak memory of each stage: the full Netflix shape must pass every stage on this machine.

    .venv/bin/python bench/ingest.py --ratings 100480507     # writes bench/out/data-100480507
    .venv/bin/python bench/scale.py --data bench/out/data-100480507 --epochs 1

Each stage runs as its own `cfpipe` command (a fresh process, as a user runs it), so the
peak RSS measured is that stage's. Writes the "Every stage at scale" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import machine, write_section  # noqa: E402

CFPIPE = str(Path(sys.executable).with_name("cfpipe"))


def run(args: list[str]) -> tuple[float, float]:
    """Run one cfpipe command; return its wall seconds and peak RSS in GiB."""
    start = time.perf_counter()
    proc = subprocess.Popen([CFPIPE, *args])
    _, status, usage = os.wait4(proc.pid, 0)  # This child's own resource usage.
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"cfpipe {args[0]} failed with status {proc.returncode}")
    return seconds, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=65536)
    args = parser.parse_args()

    manifest = json.loads((args.data / "_manifest.json").read_text())
    rows = {k: v["rows"] for k, v in manifest["splits"].items()}
    work = args.data.parent / f"scale-{args.data.name}"
    shutil.rmtree(work, ignore_errors=True)
    run_dir, registry = work / "run", work / "registry"
    train = [
        "train", str(args.data), "--out", str(run_dir), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    stages = {
        "train": run(train),
        "evaluate": run(["evaluate", str(run_dir)]),
        "publish": run(["publish", str(run_dir), "--registry", str(registry)]),
    }
    summary = json.loads((run_dir / "train.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cmd = " ".join(["python", "bench/scale.py", *sys.argv[1:]])
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}  ",
        f"Data: {manifest['n_users']:,} users, {manifest['n_items']:,} items; "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items()),
        "",
        "| stage | wall time | peak RSS (process) |",
        "|---|---:|---:|",
        *[f"| `cfpipe {k}` | {s:.0f} s | {m:.2f} GiB |" for k, (s, m) in stages.items()],
        "",
        f"Training: {summary['epochs_run']} epoch(s) of biased-mf (dim "
        f"{summary['config']['embedding_dim']}, batch {args.batch_size}) at "
        f"{summary['ratings_per_second'] / 1e6:.2f} M ratings/s; test RMSE "
        f"{metrics['rmse']:.4f} (global mean {metrics['baselines']['global_mean']['rmse']:.4f}, "
        f"user + item bias {metrics['baselines']['user_item_bias']['rmse']:.4f}, oracle "
        f"{metrics['oracle_rmse'] or float('nan'):.4f}) over {metrics['n_test']:,} ratings. "
        "Wall times include each command's temporary Prefect server (about 10 s).",
    ]
    write_section("Every stage at scale", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
