"""Blend benchmark: does compare-models' blend beat the best single model?

    .venv/bin/python bench/blend.py                       # synth defaults, 200K ratings
    .venv/bin/python bench/blend.py --ratings 1000000 --movies 3700 --users 6040

Generates a planted Netflix-format set (``cflib.synth``), ingests it in-process, trains
each model with its defaults (the refit on), evaluates it, fits the blend on the
early-stopped models' validation predictions (``cflib.evaluate.blend``) and evaluates
it on the test (probe) split. Writes the "Blend" section of BENCHMARKS.md: the test RMSE
of every model and of the blend, its weights, and the blend's gain over the best model.
No Prefect: the cflib calls the flow's tasks make.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import machine, write_section  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=500)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--ratings", type=int, default=200_000)
    parser.add_argument("--models", default="biased-mf,residual,dot")
    parser.add_argument("--l2", type=float, default=None, help="blend ridge penalty per row")
    parser.add_argument("--no-write", action="store_true", help="print, do not write")
    args = parser.parse_args(argv)

    from cflib.config import EvaluateConfig, IngestConfig, SynthConfig, TrainConfig
    from cflib.evaluate import blend
    from cflib.evaluate.scoring import evaluate
    from cflib.ingest.parallel import ingest_local
    from cflib.synth import generate_netflix
    from cflib.train.loop import train

    l2 = blend.DEFAULT_L2 if args.l2 is None else args.l2
    models = args.models.split(",")
    rows, runs = [], []
    with tempfile.TemporaryDirectory(prefix="cfpipe-blend-bench-") as tmp:
        root = Path(tmp)
        synth = SynthConfig(movies=args.movies, users=args.users, ratings=args.ratings)
        generate_netflix(root / "src", synth)
        ingest_local(root / "src", root / "data", IngestConfig(name="bench"))
        for model in models:
            run = root / "runs" / model
            start = time.perf_counter()
            summary = train(root / "data", run, TrainConfig(model=model))  # type: ignore[arg-type]
            metrics = evaluate(run, EvaluateConfig())
            seconds = time.perf_counter() - start
            rows.append((model, metrics["rmse"], summary["val_rmse"], seconds))
            runs.append(run)
            print(f"{model}: test RMSE {metrics['rmse']:.4f} ({seconds:.0f} s)", flush=True)
        start = time.perf_counter()
        spec = blend.fit_blend(runs, root / "runs" / "blend", "blend", l2)
        metrics = evaluate(root / "runs" / "blend", EvaluateConfig())
        seconds = time.perf_counter() - start
        bias = metrics["baselines"]["user_item_bias"]["rmse"]
    best = min(rows, key=lambda r: r[1])
    lines = [
        f"Command: `python bench/blend.py --movies {args.movies} --users {args.users} "
        f"--ratings {args.ratings} --models {args.models}` (blend L2 {l2:g} per row). "
        f"Machine: {machine()}.",
        "",
        "Each model with its defaults (refit on), then the blend fitted on the early-stopped "
        "models' validation predictions and applied to the refit models on the probe split.",
        "",
        "| model | test RMSE | validation RMSE | seconds (train + evaluate) |",
        "|---|---:|---:|---:|",
        *(f"| {m} | {t:.4f} | {v:.4f} | {s:.0f} |" for m, t, v, s in rows),
        f"| **blend** | **{metrics['rmse']:.4f}** | {spec['val_rmse']:.4f} | {seconds:.0f} |",
        f"| user + item bias | {bias:.4f} | | |",
        "",
        f"Blend: {blend.describe(spec)}; {best[1] - metrics['rmse']:+.4f} RMSE against the "
        f"best single model ({best[0]}, {best[1]:.4f}); a positive figure is a gain. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} (a shared machine: the seconds "
        "are not speeds).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(f"Blend, {args.ratings:,} ratings", body)


if __name__ == "__main__":
    main()
