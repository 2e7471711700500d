"""The measures of bench/train.py's "Training throughput" section: cfpipe's biased-mf beside
LIBMF and Surprise, each in a child process of its own (time, peak RSS, load average).

- ``rate``: ratings/s of one training epoch at a shape (cfpipe: the last of its epochs,
  training steps only; a peer: every rating of train + validation times its epochs,
  over its fit time);
- ``to_rmse``: cfpipe with its defaults (``TrainConfig()``, the refit included) and
  each peer with its own settings, test RMSE and training wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._peers import export_splits, peer
from bench._report import run_child

HERE = Path(__file__).resolve().parent
PEERS_CHILD = HERE / "_peers.py"

# One cfpipe speed measure in a child process: streamed from Parquet, no checkpoints.
RATE = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])  # the checkout: bench._report
from bench._report import own_peak_rss
from cflib.config import TrainConfig
from cflib.train.loop import train
s = train(Path(sys.argv[1]), Path(sys.argv[2]), TrainConfig.model_validate_json(sys.argv[3]))
s["peak_rss"] = own_peak_rss()
print("RESULT " + json.dumps(s))
"""


def child(args: list[str]) -> dict[str, Any]:
    """Run a child that prints one ``RESULT {json}`` line (``_report.run_child``), shown."""
    print("$", " ".join(args)[:300], flush=True)
    return run_child(args)


def cfpipe_rate(data: Path, run: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    """cfpipe's per-epoch rate: ``cfg``'s epochs, the last one timed."""
    subprocess.run(["rm", "-rf", str(run)], check=True)
    s = child([sys.executable, "-c", RATE, str(data), str(run), json.dumps(cfg), str(HERE.parent)])
    subprocess.run(["rm", "-rf", str(run)], check=True)
    rows = json.loads((data / "_manifest.json").read_text())["splits"]["train"]["rows"]
    seconds = s["train_seconds"][-1]
    return {"rate": rows / seconds, "seconds": seconds, "peak_rss": s["peak_rss"],
            "load": s["load"], "measured_at": s["measured_at"], "config": s["config"]}  # fmt: skip


def peer_run(key: str, data: Path, export: Path) -> dict[str, Any]:
    """A peer fitted on train + validation of ``data``'s export, scored on its test split."""
    export_splits(data, export)
    r = child([sys.executable, str(PEERS_CHILD), key, str(export)])
    epochs = peer(key).options.get("nr_iters", peer(key).options.get("n_epochs", 20))
    r["rate"] = r["train_rows"] * epochs / r["fit_seconds"]
    r["epochs"] = epochs
    return r


def cfpipe_default(
    data: Path, export: Path, run: Path, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """cfpipe's default training (search, fit with early stopping, refit), or with
    ``options`` set, and its test RMSE."""
    extra = [json.dumps(options)] if options else []
    return child([sys.executable, str(PEERS_CHILD), "cfpipe", str(export), str(data), str(run),
                  *extra])  # fmt: skip


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def load(r: dict[str, Any]) -> str:
    return f"{r['load'][0]:.1f}-{r['load'][1]:.1f}"
