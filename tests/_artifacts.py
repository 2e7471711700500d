"""Helpers for the registry tests: a tiny ingested dataset and runs with real Keras models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cflib import schema
from cflib.config import IngestConfig, SynthConfig, TrainConfig
from cflib.data.manifest import load_manifest
from cflib.ingest.parallel import ingest_local


def ingest_tiny(source: Path, out: Path, **options: object) -> Path:
    """The conftest Netflix directory ingested as dataset ``tiny``."""
    ingest_local(source, out, IngestConfig(name="tiny", **options))  # type: ignore[arg-type]
    return out


def ingest_synth(root: Path, cfg: SynthConfig, name: str) -> Path:
    """A planted Netflix-format source under ``root/src`` (``cflib.synth``), ingested
    in-process (no Prefect) as dataset ``name`` into ``root/data``; returns the latter."""
    from cflib.synth import generate_netflix

    generate_netflix(root / "src", cfg)
    ingest_local(root / "src", root / "data", IngestConfig(name=name))
    return root / "data"


def make_run(
    root: Path,
    data: Path,
    run_id: str,
    *,
    rmse: float = 0.9,
    model: str = "biased-mf",
    seed: int = 0,
    bias_baseline: float | None = None,
) -> Path:
    """A run directory as train + evaluate leave it, with a real model of random weights."""
    import keras

    from cflib.models.biased_mf import BiasedMF
    from cflib.models.dot import DotModel

    manifest = load_manifest(data)
    cfg = TrainConfig(model=model, embedding_dim=4)  # type: ignore[arg-type]
    # The classes' leading positional arguments, stable as their keyword options change.
    sizes = (manifest.n_users, manifest.n_items, 4)
    if model == "biased-mf":
        net = BiasedMF(*sizes, manifest.global_mean, name="biased_mf")
    else:
        net = DotModel(*sizes, name="dot")
    net.build({"user": (None,), "item": (None,)})
    rng = np.random.default_rng(seed)
    net.set_weights([rng.normal(0, 0.6, w.shape).astype(np.float32) for w in net.get_weights()])
    run = root / run_id
    run.mkdir(parents=True)
    keras.saving.save_model(net, run / schema.MODEL_FILE)
    summary = {
        "run_id": run_id,
        "model": model,
        "config": cfg.identity(),
        "dataset": manifest.name,
        "data_dir": str(data),
        "data_fingerprint": manifest.fingerprint,
        "global_mean": manifest.global_mean,
        "val_rmse": rmse,
    }
    (run / schema.TRAIN_SUMMARY_FILE).write_text(json.dumps(summary))
    metrics: dict[str, object] = {"rmse": rmse, "mae": 0.7, "n_test": 3}
    if bias_baseline is not None:
        # As cflib.evaluate.scoring writes them: name -> {"rmse", "mae"}.
        metrics["baselines"] = {
            "global_mean": {"rmse": 1.2, "mae": 1.0},
            "user_item_bias": {"rmse": bias_baseline, "mae": 0.7},
        }
    (run / schema.METRICS_FILE).write_text(json.dumps(metrics))
    (run / schema.REPORT_FILE).write_text("# report\n")
    (run / "report.html").write_text("<h1>report</h1>\n")
    return run
