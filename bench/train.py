"""Training benchmark: biased-mf beside LIBMF and Surprise (throughput at the full Netflix
shape, time to cfpipe's default test RMSE at 10M ratings, peak RSS); ratings/s and
seconds per epoch of every model, streamed from Parquet and from in-memory tensors, with
1 and 2 replicas; each model's test RMSE with its default options.

    .venv/bin/python bench/train.py --skip-speed --skip-accuracy   # the throughput only
    .venv/bin/python bench/train.py --skip-throughput --models biased-mf --skip-accuracy

The data comes from `cfpipe synth netflix` and `cfpipe ingest` (cached in bench/out/).
Every measure runs in a fresh process (logical CPU devices are fixed at TensorFlow's
start). Writes the "Training throughput", "Training speed" and "Training accuracy"
sections of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _throughput as tp  # noqa: E402
from bench._report import machine, write_section  # noqa: E402
from cflib.models.catalog import MODEL_NAMES  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
CFPIPE = str(Path(sys.executable).with_name("cfpipe"))
# The default model first (the reference of the others' rows), then the catalogue's order.
MODELS = ("biased-mf", *(m for m in MODEL_NAMES if m != "biased-mf"))

# One speed measure in a child process: `in_memory` is not a CLI option.
MEASURE = """
import json, sys
from pathlib import Path
from cflib.config import TrainConfig
from cflib.train.loop import train
s = train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]),
          in_memory=sys.argv[4] == "memory")
print("RESULT " + json.dumps(s))
"""


def sh(args: list[str]) -> str:
    """Run a command, echoing it; return its stdout."""
    print("$", " ".join(args), flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed with status {proc.returncode}: {' '.join(args)}")
    return proc.stdout


def dataset(ratings: int, movies: int, users: int) -> tuple[Path, list[str]]:
    """Generate and ingest the data once; return its directory and the commands."""
    source = OUT / f"netflix-{movies}x{users}x{ratings}"
    data = OUT / f"train-data-{ratings}"
    cmds = [
        [CFPIPE, "synth", "netflix", str(source), "--movies", str(movies),
         "--users", str(users), "--ratings", str(ratings)],
        [CFPIPE, "ingest", str(source), "--out", str(data)],
    ]  # fmt: skip
    if not (source / "truth.json").is_file():
        sh(cmds[0])
    if not (data / "_manifest.json").is_file():
        sh(cmds[1])
    return data, [" ".join(["cfpipe", *c[1:]]).replace(str(OUT), "bench/out") for c in cmds]


def measure(data: Path, model: str, source: str, replicas: int, args: argparse.Namespace) -> dict:
    """Train ``args.epochs`` epochs; the last epoch's rate and seconds."""
    run = OUT / f"speed-{model}-{source}-{replicas}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    cfg = {
        "model": model, "epochs": args.epochs, "patience": args.epochs,
        "batch_size": args.batch_size, "replicas": replicas, "checkpoint_steps": 0,
    }  # fmt: skip
    if model in ("dot", "biased-mf"):
        cfg["embedding_dim"] = args.dim
    out = sh([sys.executable, "-c", MEASURE, str(data), str(run), json.dumps(cfg), source])
    summary = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    rows = json.loads((data / "_manifest.json").read_text())["splits"]["train"]["rows"]
    if replicas > 1 or source == "memory":
        rows = rows // args.batch_size * args.batch_size
    seconds = summary["train_seconds"][-1]
    subprocess.run(["rm", "-rf", str(run)], check=True)
    return {"rate": rows / seconds, "seconds": seconds, "dim": summary["config"]["embedding_dim"]}


def accuracy(data: Path, model: str, epochs: int) -> tuple[dict, str]:
    """Train with the model's defaults and evaluate; the metrics and the commands."""
    run = OUT / f"acc-{model}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    train = [CFPIPE, "train", str(data), "--out", str(run), "--model", model]
    train += ["--epochs", str(epochs)]
    sh(train)
    sh([CFPIPE, "evaluate", str(run)])
    metrics = json.loads((run / "metrics.json").read_text())
    summary = json.loads((run / "train.json").read_text())
    metrics["epochs_run"] = summary["epochs_run"]
    metrics["best_epoch"] = summary["best_epoch"]
    cmd = " && ".join(
        " ".join(["cfpipe", *c[1:]]).replace(str(OUT), "bench/out")
        for c in (train, [CFPIPE, "evaluate", str(run)])
    )
    return metrics, cmd


def throughput(data: Path, data_cmds: list[str], args: argparse.Namespace) -> None:
    """The "Training throughput" section: cfpipe's biased-mf (32 factors, its default
    batch, streamed) beside the peers, at the full Netflix shape and at ``data``."""
    peers = [] if args.peers == "none" else args.peers.split(",")
    big, big_cmds = dataset(args.netflix_ratings, args.movies, args.users)
    cfg = {"model": "biased-mf", "embedding_dim": 32, "epochs": 2, "patience": 2,
           "refit": False, "checkpoint_steps": 0}  # fmt: skip
    rate = tp.cfpipe_rate(big, OUT / "tp-rate", cfg)
    big_peer = {k: tp.peer_run(k, big, OUT / f"export-{args.netflix_ratings}")
                for k in peers if k.startswith("libmf")}  # fmt: skip
    default = tp.cfpipe_default(data, OUT / f"export-{args.ratings}", OUT / "tp-default")
    # The fit alone, at the data's default values: issue 17's "time to cfpipe's default
    # test RMSE" was measured so (early stopping, no search, no refit).
    fit_only = tp.cfpipe_default(
        data, OUT / f"export-{args.ratings}", OUT / "tp-fit", {"tune": False, "refit": False}
    )
    small_peer = {
        k: big_peer[k]
        if big == data and k in big_peer
        else tp.peer_run(k, data, OUT / f"export-{args.ratings}")
        for k in peers
    }
    man = {d: json.loads((d / "_manifest.json").read_text()) for d in (big, data)}
    batch = rate["config"]["batch_size"]
    lines = [
        f"Command: `python bench/train.py {shlex.join(sys.argv[1:])}`  ",
        f"Machine: {machine()}  ",
        "Load: the 1-minute load average before and after each measure, on 2 cores."
        + (f" {args.note}" if args.note else "")
        + "  ",
        f"Data: `{big_cmds[0]}` then `{big_cmds[1]}` (rate shape: train "
        f"{man[big]['splits']['train']['rows']:,}); `{data_cmds[0]}` then `{data_cmds[1]}` "
        f"(10M shape: train {man[data]['splits']['train']['rows']:,}, test "
        f"{man[data]['splits']['test']['rows']:,})",
        "",
        f"Per-epoch rate at {args.netflix_ratings:,} ratings (cfpipe: biased-mf, 32 factors, "
        f"batch {batch:,}, "
        "streamed from Parquet, the second of 2 epochs, training steps only; LIBMF: "
        "train + validation times its iterations over its fit time, the ratings already "
        "in memory):",
        "",
        "| system | ratings/s per epoch | seconds per epoch | peak RSS | load |",
        "|---|---:|---:|---:|---:|",
        f"| **cfpipe** biased-mf | {rate['rate'] / 1e6:.2f} M | {rate['seconds']:.1f} | "
        f"{tp.gib(rate['peak_rss'])} | {tp.load(rate)} |",
    ]
    for k, r in big_peer.items():
        lines.append(
            f"| {tp.peer(k).label} | {r['rate'] / 1e6:.2f} M | "
            f"{r['fit_seconds'] / r['epochs']:.1f} | {tp.gib(r['peak_rss'])} | {tp.load(r)} |"
        )
    lines += [
        "",
        "Time to a test RMSE at the 10M shape (cfpipe: its defaults, `TrainConfig()`: the "
        "validation search, the fit with early stopping, then the refit on train + "
        "validation; and the fit alone, `--no-tune --no-refit`; the time is `train()` with "
        "validation, checkpoints and saving; the peers: their fit alone):",
        "",
        "| system | settings | test RMSE | training wall time | peak RSS | load |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in (("default", default), ("fit only", fit_only)):
        lines.append(
            f"| **cfpipe** {name} | {r['settings']}; {r['epochs_run']} epochs (best "
            f"{r['best_epoch']}) | {r['rmse']:.4f} | {r['fit_seconds']:.1f} s | "
            f"{tp.gib(r['peak_rss'])} | {tp.load(r)} |"
        )
    for k, r in small_peer.items():
        lines.append(
            f"| {tp.peer(k).label} | {tp.peer(k).settings()} | {r['rmse']:.4f} | "
            f"{r['fit_seconds']:.1f} s | {tp.gib(r['peak_rss'])} | {tp.load(r)} |"
        )
    write_section("Training throughput: biased-mf beside LIBMF and Surprise", "\n".join(lines))
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--movies", type=int, default=17_770)
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--dim", type=int, default=64, help="embedding size of dot, biased-mf")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per speed measure")
    parser.add_argument("--accuracy-epochs", type=int, default=8)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--netflix-ratings", type=int, default=100_480_507,
        help="ratings of the full-shape throughput measure",
    )  # fmt: skip
    parser.add_argument("--peers", default="libmf-k32,surprise-svd", help="peers, or none")
    parser.add_argument("--note", default="", help="a sentence on the machine's load")
    args = parser.parse_args()
    models = args.models.split(",")
    data, data_cmds = dataset(args.ratings, args.movies, args.users)
    if not args.skip_throughput:
        throughput(data, data_cmds, args)
    manifest = json.loads((data / "_manifest.json").read_text())

    speed: dict[tuple[str, int], dict[str, dict]] = {}
    for model in [] if args.skip_speed else models:
        for replicas in [int(r) for r in args.replicas.split(",")]:
            speed[model, replicas] = {
                src: measure(data, model, src, replicas, args) for src in ("stream", "memory")
            }
            print(model, replicas, speed[model, replicas], flush=True)

    cmd = " ".join(["python", "bench/train.py", *sys.argv[1:]])
    splits = ", ".join(f"{k} {v['rows']:,}" for k, v in manifest["splits"].items())
    head = [
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}  ",
        f"Data: `{data_cmds[0]}` then `{data_cmds[1]}`: {manifest['n_users']:,} users, "
        f"{manifest['n_items']:,} items; {splits}",
        "",
    ]
    lines = [
        f"Speed: the last of {args.epochs} epochs, batch {args.batch_size:,}, training steps "
        f"only (validation excluded); dot and biased-mf with {args.dim} factors, the other "
        "models with their defaults; default optimizer (SparseAdagrad).",
        "",
        "| model | replicas | streamed from Parquet | in memory | streamed / in memory |",
        "|---|---:|---:|---:|---:|",
    ]
    for (model, replicas), by in speed.items():
        s, m = by["stream"], by["memory"]
        lines.append(
            f"| {model} (dim {s['dim']}) | {replicas} | {s['rate'] / 1e6:.2f} M ratings/s "
            f"({s['seconds']:.1f} s/epoch) | {m['rate'] / 1e6:.2f} M ratings/s "
            f"({m['seconds']:.1f} s/epoch) | {s['rate'] / m['rate'] * 100:.0f}% |"
        )
    n = f"{manifest['splits']['train']['rows']:,} train ratings"
    if speed:
        write_section(f"Training speed, {n}", "\n".join(head + lines))
        print("\n".join(head + lines), flush=True)
    acc = {} if args.skip_accuracy else {m: accuracy(data, m, args.accuracy_epochs) for m in models}
    if acc:
        lines = [
            f"Accuracy: each model with its default options, at most {args.accuracy_epochs} "
            "epochs (early stopping on validation RMSE), scored on the probe set:",
            "",
            "| model | test RMSE | validation RMSE | epochs (best) | command |",
            "|---|---:|---:|---:|---|",
        ]
        for model, (metrics, command) in acc.items():
            lines.append(
                f"| {model} | {metrics['rmse']:.4f} | {metrics['val_rmse']:.4f} | "
                f"{metrics['epochs_run']} ({metrics['best_epoch']}) | `{command}` |"
            )
        base = next(iter(acc.values()))[0]
        lines += [
            "",
            f"Baselines on the same rows: global mean "
            f"{base['baselines']['global_mean']['rmse']:.4f}, user + item bias "
            f"{base['baselines']['user_item_bias']['rmse']:.4f}; oracle (planted model) "
            f"{base['oracle_rmse'] or float('nan'):.4f}.",
        ]
        write_section(f"Training accuracy, {n}", "\n".join(head + lines))
        print("\n".join(head + lines))


if __name__ == "__main__":
    main()
