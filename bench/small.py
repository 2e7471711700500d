"""The default pipeline's wall time on small data, split by phase, against another checkout.

    .venv/bin/python bench/small.py --before /path/to/a/copy/of/main      # before and after
    .venv/bin/python bench/small.py --shapes small --repeats 1           # this checkout only

`train()` with `TrainConfig()` (the validation search, the fit, the refit: what `cfpipe
train` runs by default) on the `small` and `ml1m` shapes of bench/peers.py (generated,
ingested and cached in bench/out/peers/ as there), each run in a child process of its own
that imports cflib from the checkout measured; the checkouts alternate, run after run.
Each run reports its wall and CPU time, the search's, fit phase's and refit's wall
seconds, and what it computed (the trials, the chosen values, the epochs, the validation
RMSE and the refit's last training RMSE), which must be the same in both checkouts.
Writes the section "Small data: the default pipeline's wall time" of BENCHMARKS.md (not
with --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECTION = "Small data: the default pipeline's wall time"


def child(code: Path, data: Path, run: Path) -> None:
    """Train with the defaults, importing cflib from ``code``; print one RESULT line."""
    sys.path.insert(0, str(code))
    import shutil

    from cflib.config import TrainConfig
    from cflib.train import epochs, tune
    from cflib.train.loop import train  # TensorFlow loads here, before the clock starts

    marks: dict[str, float] = {}

    def timed(module: Any, name: str, begin: str, end: str | None) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks[begin] = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                if end is not None:
                    marks[end] = time.perf_counter()

        setattr(module, name, wrapper)

    timed(tune, "choose", "search", "search_end")
    timed(epochs, "_begin_refit", "refit", None)
    shutil.rmtree(run, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    summary = train(data, run, TrainConfig())
    end, cpu = time.perf_counter(), time.process_time() - cpu
    refit = marks.get("refit", end)
    result = {
        "code": str(code),
        "seconds": end - start,
        "cpu_seconds": cpu,
        "search_seconds": marks["search_end"] - marks["search"],
        "fit_seconds": refit - marks["search_end"],
        "refit_seconds": end - refit,
        "computed": {
            "trials": [
                [t["values"], round(t["val_rmse"], 6), t["epochs"]]
                for t in summary["tuning"]["trials"]
            ],
            "chosen": summary["tuning"]["chosen"],
            "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "val_rmse": round(summary["val_rmse"], 6),
            "refit_epochs": summary["refit"]["epochs"] if summary["refit"] else None,
            "refit_rmse": round(summary["refit"]["rmse"], 6) if summary["refit"] else None,
        },
        "train_rows": summary["refit"]["ratings"] if summary["refit"] else None,
    }
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--shapes", default="small,ml1m", help="of bench/peers.py")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each checkout")
    parser.add_argument("--note", default="", help="a line on the machine's state")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench._report import machine, run_child, write_section
    from bench.peers import SHAPES, prepare

    codes = (
        {"after": args.after}
        if args.before is None
        else {"before": args.before, "after": args.after}
    )
    lines = []
    for name in args.shapes.split(","):
        ds = prepare(name, SHAPES[name].full)
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in codes}
        for i in range(args.repeats):
            for label, code in codes.items():
                run = ds["root"] / f"run-small-{label}"
                cmd = [sys.executable, __file__, "--child", str(code), str(ds["root"] / "data")]
                result = run_child([*cmd, str(run)])
                runs[label].append(result)
                print(
                    f"{name} {label} {i + 1}: {result['seconds']:.1f} s (CPU "
                    f"{result['cpu_seconds']:.1f} s; search {result['search_seconds']:.1f}, "
                    f"fit {result['fit_seconds']:.1f}, refit {result['refit_seconds']:.1f}), "
                    f"load {result['load'][0]:.1f}-{result['load'][1]:.1f}",
                    flush=True,
                )
        lines.append(_rows(name, ds, runs))
    same = _same(lines)
    body = _body(lines, same, args.note, machine())
    print(body)
    if not args.no_write:
        write_section(SECTION, body)


def _rows(name: str, ds: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    cfg = ds["cfg"]
    about = (
        f"{name}: {cfg.users:,} users, {cfg.movies:,} items, {ds['rows']['train']:,} train ratings"
    )
    return {"name": name, "about": about, "runs": runs}


def _same(lines: list[dict[str, Any]]) -> bool:
    """Whether every run of a shape computed the same trials, epochs and RMSEs."""
    for line in lines:
        computed = [r["computed"] for rs in line["runs"].values() for r in rs]
        if any(c != computed[0] for c in computed):
            return False
    return True


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _body(lines: list[dict[str, Any]], same: bool, note: str, where: str) -> str:
    command = "python bench/small.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--note")
    )
    out = [
        f"Command: `{command.strip()}`  ",
        f"Machine: {where}  ",
        f"Measured: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load: the 1-minute "
        "load average before and after each run, on 2 cores.  ",
    ]
    if note:
        out.append(f"{note}  ")
    out += [
        "",
        "| shape | code | runs | wall (median) | CPU | search | fit phase | refit | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        for label, runs in line["runs"].items():
            loads = [x for r in runs for x in r["load"]]
            out.append(
                f"| {line['about']} | {label} | {len(runs)} | "
                f"{_median(runs, 'seconds'):.1f} s | {_median(runs, 'cpu_seconds'):.1f} s | "
                f"{_median(runs, 'search_seconds'):.1f} s | {_median(runs, 'fit_seconds'):.1f} s | "
                f"{_median(runs, 'refit_seconds'):.1f} s | {min(loads):.1f}-{max(loads):.1f} |"
            )
    out += [
        "",
        "Every run computed the same trials, chosen values, epochs and RMSEs: "
        + ("**yes**." if same else "**no** (see the printed results)."),
    ]
    for line in lines:
        first = next(iter(line["runs"].values()))[0]["computed"]
        out.append(f"{line['name']}: {json.dumps(first)}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        child(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
