"""The train and validation datasets of one strategy, sharded per worker if any."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

from cflib.config import TrainConfig
from cflib.data.manifest import Manifest
from cflib.data.tfdata import Columns, HeldSplit, make_dataset, memory_dataset
from cflib.models.catalog import spec_of
from cflib.train.distribute import Cluster

#: Runs on one worker whose train split (with the validation split in the refit) has at
#: most this many ratings hold their splits in memory (``tfdata.HeldSplit``: the same
#: batches, without a generator); a trial holds its epochs at once, up to 8 x 12 MB here.
HELD_ROWS = 1_000_000


class TrainInputs:
    """The train and validation datasets of one strategy (sharded per worker if any).

    ``fit_on`` names the splits trained on: the train split, or with the validation split
    too for the refit (``cflib.train.epochs``); validation always reads the validation
    split. Models that read N(u) (``svdpp``) get both grouped by user.
    """

    def __init__(
        self,
        manifest: Manifest,
        root: Path,
        cfg: TrainConfig,
        strategy: tf.distribute.Strategy,
        cluster: Cluster | None,
        in_memory: bool,
        fit_on: tuple[str, ...] = ("train",),
    ) -> None:
        assert cfg.batch_size is not None
        self.fit_on = fit_on
        self.paths = {
            "train": [p for s in fit_on for p in manifest.split_paths(root, s)],
            "validation": manifest.split_paths(root, "validation"),
        }
        self.rows = {
            "train": sum(manifest.splits[s].rows for s in fit_on),
            "validation": manifest.splits["validation"].rows,
        }
        self.batch = cfg.batch_size
        self.seed = cfg.seed
        self.group_users = spec_of(cfg.model).implicit
        self.strategy = strategy
        self.cluster = cluster
        self.in_memory = in_memory
        self.replicas = strategy.num_replicas_in_sync
        # With replicas, drop the short last batch: it splits unevenly (or leaves a
        # replica empty); the order is reshuffled, so other rows are dropped each epoch.
        self.drop = self.replicas > 1
        if cluster is not None or in_memory:
            self.train_batches = self.rows["train"] // self.batch
        else:
            n = self.rows["train"] / self.batch
            self.train_batches = int(n) if self.drop else -(-self.rows["train"] // self.batch)
        self.val_steps = max(self.rows["validation"] // self.batch, 1) if cluster else None
        self.held = cluster is None and not in_memory and self.rows["train"] <= HELD_ROWS
        self._held: dict[str, HeldSplit] = {}
        self._memory: tf.data.Dataset | None = None
        self._stream: tf.data.Dataset | None = None
        self._at = (0, 0)  # the epoch and first batch ``_stream``'s next iteration yields

    def train(self, epoch: int, skip: int) -> Any:
        """The batches of one epoch, from batch ``skip`` on, for one ``fit`` of one epoch
        (streamed: the same dataset object each time, set to this epoch)."""
        if self.in_memory:
            return self._in_memory().skip(skip)
        if self.cluster is not None:
            return self._make("train", shuffle=True, epoch=epoch, skip=skip)
        if self.held:
            return self._hold("train").epochs(epoch, 1, skip)
        self._at = (epoch, skip)
        if self._stream is None:
            self._stream = make_dataset(
                self.paths["train"], batch_size=self.batch, shuffle=True, seed=self.seed,
                drop_remainder=self.drop, cardinality=False, group_users=self.group_users,
                position=lambda: self._at,
            )  # fmt: skip
        return self._stream

    def epochs(self, count: int) -> tuple[Any, int | None]:
        """The batches of ``count`` epochs from the first, for one ``fit`` of that many
        epochs (one replica); and its ``steps_per_epoch``: None where each iteration of
        the dataset is the next epoch, else the batches of an epoch in a dataset of all."""
        if self.in_memory:
            return self._in_memory(), None
        if self.held:
            held = self._hold("train")
            return held.epochs(0, count), held.batches_per_epoch
        return make_dataset(
            self.paths["train"], batch_size=self.batch, shuffle=True, seed=self.seed,
            drop_remainder=self.drop, cardinality=False, group_users=self.group_users,
        ), None  # fmt: skip

    def _hold(self, split: str) -> HeldSplit:
        if split not in self._held:
            self._held[split] = HeldSplit(
                self.paths[split], batch_size=self.batch, seed=self.seed,
                drop_remainder=self.drop, group_users=self.group_users,
            )  # fmt: skip
        return self._held[split]

    def _in_memory(self) -> tf.data.Dataset:
        if self._memory is None:
            self._memory = memory_dataset(
                self.paths["train"], batch_size=self.batch, shuffle=True, seed=self.seed,
                group_users=self.group_users,
            )  # fmt: skip
        return self._memory

    def validation(self) -> Any:
        if self.held:
            return self._hold("validation").fixed()
        return self._make("validation", shuffle=False, epoch=0, skip=0)

    def held_validation(self) -> Columns | None:
        """The validation split's rows where it is held in memory (``held``) and a batch
        is rows alone (not N(u)); else None."""
        if not self.held or self.group_users:
            return None
        return self._hold("validation").columns()

    def _make(self, split: str, *, shuffle: bool, epoch: int, skip: int) -> Any:
        if self.cluster is None:
            return make_dataset(
                self.paths[split], batch_size=self.batch, shuffle=shuffle, seed=self.seed,
                drop_remainder=self.drop, epoch=epoch, skip=skip,
                cardinality=split != "train",  # see make_dataset
                group_users=self.group_users,
            )  # fmt: skip

        def per_worker(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            ds = make_dataset(
                self.paths[split], batch_size=ctx.get_per_replica_batch_size(self.batch),
                shuffle=shuffle, seed=self.seed, drop_remainder=True, epoch=epoch, skip=skip,
                shard=(ctx.input_pipeline_id, ctx.num_input_pipelines),
                group_users=self.group_users,
            )  # fmt: skip
            options = tf.data.Options()
            policy = tf.data.experimental.AutoShardPolicy.OFF  # sharded by make_dataset
            options.experimental_distribute.auto_shard_policy = policy
            return ds.with_options(options)

        return self.strategy.distribute_datasets_from_function(per_worker)
