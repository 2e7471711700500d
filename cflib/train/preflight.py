"""The checks ``cfpipe train`` makes before anything starts, and the trainer repeats.

No TensorFlow here: the CLI imports it before a flow runs.
"""

from __future__ import annotations

from pathlib import Path

from cflib.config import TrainConfig
from cflib.data.manifest import Manifest, load_manifest
from cflib.errors import DatasetError
from cflib.models.catalog import resolve_for, spec_of


def trainable_manifest(data_dir: Path) -> Manifest:
    """The dataset's manifest, with a train and a validation split to train on.

    Raises:
        DatasetError: no manifest, or an empty train or validation split.
    """
    manifest = load_manifest(data_dir)
    for split in ("train", "validation"):
        if split not in manifest.splits or manifest.splits[split].rows == 0:
            raise DatasetError(f"{data_dir}: the {split} split is empty; nothing to train on")
    return manifest


def check_inputs(data_dir: Path, cfg: TrainConfig) -> TrainConfig:
    """Fail fast on what training would refuse about the data and options.

    Returns:
        ``cfg`` resolved (``cflib.models.catalog.resolve``): what to train with.

    Raises:
        DatasetError: no manifest, or an empty train or validation split.
        ConfigError: an option the model does not read, or a model that does not fit
            the dataset (``two-tower`` without side features).
    """
    from cflib.data.side import load_side_features

    manifest = trainable_manifest(data_dir)
    cfg = resolve_for(cfg, manifest)
    if spec_of(cfg.model).side_features:
        load_side_features(data_dir, n_users=manifest.n_users, n_items=manifest.n_items)
    return cfg
