"""GPU benchmark: ratings/s of biased-mf on one GPU and on two logical GPUs cut from it.

    .venv/bin/python bench/gpu.py                     # 10M ratings, 2 epochs per row
    .venv/bin/python bench/gpu.py --device-type CPU --ratings 200000   # the same path on
                                                       # logical CPUs; writes nothing

Each row trains `biased-mf` through `cflib.train.loop.train` (MirroredStrategy over the
devices, streamed from Parquet) in a fresh process, because logical devices are fixed
when TensorFlow starts: "1 GPU" sees the first visible GPU only (`CUDA_VISIBLE_DEVICES`),
"2 logical GPUs" cuts that GPU in two (`tf.config.set_logical_device_configuration`).
Both rows use the same global batch (`device_batch` of one GPU, or `--batch-size`), so
they differ only in the split. Prints a short table; writes the "GPU" section of
BENCHMARKS.md only when it measured a GPU. Without a GPU it says so in one line and
exits 0. The data comes from `cfpipe synth netflix` and `cfpipe ingest` (cached in
bench/out/, as bench/train.py does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import machine, write_section  # noqa: E402
from bench.train import dataset  # noqa: E402
from cflib.config import TrainConfig  # noqa: E402

SECTION = "GPU: biased-mf on 1 GPU and on 2 logical GPUs cut from one"

#: Every child's TensorFlow output: the CUDA build's native lines on fd 2 are captured.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

#: How many GPUs TensorFlow sees, and the first one's name.
PROBE = """
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "") if gpus else ""
print("GPUS", len(gpus), name)
"""

#: One row: cut the device into logical ones, then train as `cfpipe train` does.
MEASURE = """
import json, sys
from pathlib import Path
from cflib.config import TrainConfig
from cflib.train.distribute import split_device
from cflib.train.loop import train
kind, devices, memory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
if devices > 1:
    split_device(kind, devices, memory if kind == "GPU" else None)
cfg = TrainConfig.model_validate_json(sys.argv[6])
print("RESULT " + json.dumps(train(Path(sys.argv[4]), Path(sys.argv[5]), cfg)))
"""


def gpus() -> tuple[int, str]:
    """The GPUs TensorFlow sees in a fresh process (its native lines kept off the console),
    and the first one's name."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=ENV, capture_output=True, text=True, timeout=120
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("GPUS ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"bench/gpu.py: TensorFlow did not start: {proc.stderr[-2000:]}")
    _, count, *name = line.split(" ", 2)
    return int(count), " ".join(name).strip()


def measure(
    kind: str, devices: int, data: Path, cfg: TrainConfig, *, memory_mb: int, timeout: float
) -> dict[str, Any]:
    """Train ``cfg`` (its ``epochs``, no early stop, no refit) on ``devices`` logical
    ``kind`` devices in a fresh process: placement, rows trained and the last epoch's rate.

    Raises:
        RuntimeError: the child failed or outlived ``timeout`` (its stderr's tail).
    """
    run = data.parent / f"gpu-{kind.lower()}-{devices}"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    # On a CPU, the trainer mirrors over logical devices only with --replicas.
    cfg = cfg.model_copy(update={"replicas": devices if kind == "CPU" else 1})
    # GPU: one physical GPU, the first visible, for both rows; CPU: no GPU at all (the
    # trainer would take one over the CPU).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    env = {**ENV, "CUDA_VISIBLE_DEVICES": visible if kind == "GPU" else ""}
    args = [sys.executable, "-c", MEASURE, kind, str(devices), str(memory_mb)]
    try:
        proc = subprocess.run(
            [*args, str(data), str(run), cfg.model_dump_json()],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{devices} {kind}: no result within {timeout:.0f} s") from None
    finally:
        subprocess.run(["rm", "-rf", str(run)], check=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        tail = proc.stderr[-3000:]
        raise RuntimeError(f"{devices} {kind}: exit status {proc.returncode}\n{tail}")
    summary = json.loads(line.removeprefix("RESULT "))
    seconds = summary["train_seconds"]
    rows = round(summary["ratings_per_second"] * sum(seconds))
    return {
        "kind": kind,
        "devices": devices,
        "placement": summary["placement"],
        "replicas": summary["replicas"],
        "batch": summary["config"]["batch_size"],
        "epochs": summary["epochs_run"],
        "rows": rows,
        "seconds": seconds[-1],
        "rate": rows / len(seconds) / seconds[-1],
        "val_rmse": summary["val_rmse"],
    }


def compare(
    kind: str, data: Path, cfg: TrainConfig, *, memory_mb: int = 2048, timeout: float = 180
) -> list[dict[str, Any]]:
    """One ``kind`` device, then two logical ones cut from it: ``measure`` of each."""
    return [measure(kind, n, data, cfg, memory_mb=memory_mb, timeout=timeout) for n in (1, 2)]


def table(results: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (one line per measure)."""
    lines = [
        "| devices | placement | batch (per replica) | ratings/s | s/epoch | val RMSE |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        n, kind = r["devices"], r["kind"]
        devices = f"1 {kind}" if n == 1 else f"{n} logical {kind}s cut from one"
        per = r["batch"] // r["replicas"]
        rate = f"{r['rate'] / 1e6:.2f} M" if r["rate"] >= 1e5 else f"{r['rate']:,.0f}"
        lines.append(
            f"| {devices} | {r['placement']} | {r['batch']:,} ({per:,}) | {rate} | "
            f"{r['seconds']:.1f} | {r['val_rmse']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device-type", choices=("GPU", "CPU"), default="GPU")
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--movies", type=int, default=17_770)
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--batch-size", type=int, help="global (default: one GPU's)")
    parser.add_argument("--dim", type=int, default=32, help="embedding size")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per row, the last timed")
    parser.add_argument("--gpu-memory-mb", type=int, default=2048, help="per logical GPU")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per row")
    args = parser.parse_args(argv)
    kind = args.device_type
    count, name = gpus() if kind == "GPU" else (0, "")
    if kind == "GPU" and count == 0:
        print("bench/gpu.py: no GPU visible to TensorFlow on this machine; nothing measured")
        return 0
    from cflib.models.catalog import resolve
    from cflib.train.distribute import device_batch

    data, data_cmds = dataset(args.ratings, args.movies, args.users)
    manifest = json.loads((data / "_manifest.json").read_text())
    sizes = {"n_users": manifest["n_users"], "n_items": manifest["n_items"]}
    batch = args.batch_size or device_batch(kind, 1, **sizes)
    cfg = TrainConfig(
        model="biased-mf", embedding_dim=args.dim, epochs=args.epochs, patience=args.epochs,
        refit=False, checkpoint_steps=0, batch_size=batch,
    )  # fmt: skip
    cfg = resolve(cfg, **sizes)  # the model's default batch on a CPU
    results = compare(kind, data, cfg, memory_mb=args.gpu_memory_mb, timeout=args.timeout)
    body = table(results)
    print(body, flush=True)
    if kind == "GPU":
        cmd = " ".join(["python", "bench/gpu.py", *(sys.argv[1:] if argv is None else argv)])
        write_section(SECTION, "\n".join([
            f"Command: `{cmd}`  ",
            f"Machine: {machine()}; GPU: {name or 'unnamed'} ({count} visible, the first used)  ",
            f"Data: `{data_cmds[0]}` then `{data_cmds[1]}`",
            "",
            f"biased-mf, {args.dim} factors, streamed from Parquet; the last of {args.epochs} "
            "epochs timed (training steps only); validation RMSE after them.",
            "",
            body,
        ]))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
