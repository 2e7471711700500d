"""The distribution strategy: one device, MirroredStrategy, or MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import tensorflow as tf

from cflib.errors import ConfigError
from cflib.logs import stage_logger

log = stage_logger("train")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-worker cluster described by ``TF_CONFIG``."""

    workers: int
    index: int

    @property
    def is_chief(self) -> bool:
        """Worker 0 writes the run directory; the others only train."""
        return self.index == 0


def cluster_from_env() -> Cluster | None:
    """The cluster named by ``TF_CONFIG``, or None when it names none.

    Raises:
        ConfigError: ``TF_CONFIG`` is not JSON, or has no ``task`` within its workers.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        workers = len(spec["cluster"].get("chief", [])) + len(spec["cluster"].get("worker", []))
        task = spec["task"]
        index = int(task["index"]) + (
            len(spec["cluster"].get("chief", [])) if task["type"] == "worker" else 0
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"TF_CONFIG: not a cluster and task description ({exc!r})") from None
    if workers <= 0 or not 0 <= index < workers:
        raise ConfigError(f"TF_CONFIG: task {task} is not among the {workers} workers")
    return Cluster(workers=workers, index=index)


def configure_devices(replicas: int) -> tf.distribute.Strategy:
    """Pick the distribution strategy and, on CPU, split the processor into replicas.

    With ``TF_CONFIG`` naming a cluster, a ``MultiWorkerMirroredStrategy`` over its
    workers (each mirroring over its local GPUs, or its CPU). Otherwise, with GPUs, a
    ``MirroredStrategy`` over all of them (``replicas`` is ignored). Without,
    ``replicas > 1`` splits the CPU into that many logical devices and mirrors over
    them: this tests the distributed code path on a laptop, but on 2 cores it trains
    slower than one replica. ``replicas == 1`` on CPU returns the default strategy: a
    ``MirroredStrategy`` over the one CPU device only adds per-step overhead.

    Logical devices can only be configured before the TensorFlow runtime starts, that
    is, before the first op runs in the process.

    Args:
        replicas: CPU replicas when there is no GPU (``--replicas``).

    Raises:
        ConfigError: ``replicas`` is not positive, or TensorFlow already started in
            this process with another number of logical CPUs.
    """
    if replicas <= 0:
        raise ConfigError(f"--replicas should be a positive integer. Received: {replicas}.")
    if cluster_from_env() is not None:
        if replicas != 1:
            raise ConfigError("--replicas applies to one machine; with TF_CONFIG leave it at 1")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas not in (1, len(gpus)):
            log.warning("--replicas %d ignored: mirroring over all %d GPUs", replicas, len(gpus))
        return tf.distribute.MirroredStrategy()
    if replicas == 1:
        return tf.distribute.get_strategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError as exc:  # the runtime is already initialized
        have = len(tf.config.list_logical_devices("CPU"))
        if have != replicas:
            raise ConfigError(
                f"--replicas {replicas}: TensorFlow already started in this process with "
                f"{have} logical CPU device(s); --replicas must be set before TensorFlow "
                "starts (run the training in a fresh process)"
            ) from exc
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)


def check_batch(batch_size: int, replicas: int, train_rows: int) -> None:
    """The global batch must split evenly, and fill every replica at least once."""
    if batch_size % replicas:
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    if train_rows < batch_size and replicas > 1:
        raise ConfigError(
            f"--batch-size {batch_size} is larger than the {train_rows} training ratings; "
            f"with {replicas} replicas every batch must be full"
        )


def device_names(strategy: tf.distribute.Strategy) -> list[str]:
    """Names of the devices the replicas run on."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        # The default strategy runs on the first logical device (CPU:0 without GPUs).
        return [tf.config.list_logical_devices()[0].name]
    return list(strategy.extended.worker_devices)


def describe(strategy: tf.distribute.Strategy, cluster: Cluster | None = None) -> str:
    """Where the replicas run, in words: "one CPU device", "MirroredStrategy over 2 GPUs",
    "MultiWorkerMirroredStrategy over 2 workers (4 replicas)"."""
    names = device_names(strategy)
    kinds = {"GPU" if ":GPU:" in name.upper() else "CPU" for name in names}
    kind = kinds.pop() if len(kinds) == 1 else "CPU/GPU"
    if cluster is not None:
        return (
            f"MultiWorkerMirroredStrategy over {cluster.workers} workers "
            f"({strategy.num_replicas_in_sync} replicas)"
        )
    if len(names) == 1 and not isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"one {kind} device"
    devices = f"{len(names)} GPUs" if kind == "GPU" else f"{len(names)} {kind} devices"
    return f"MirroredStrategy over {devices}"


class DistributedValidation:
    """Validation RMSE summed over every worker's shard (``MultiWorkerMirroredStrategy``).

    Keras 3.15 cannot reduce its scalar metric logs across workers (it reduces them
    along an axis they do not have), so under a cluster ``fit`` runs without
    ``validation_data`` and logs only its first local replica's training metrics, and
    this computes the validation RMSE on all shards with one reduction: every worker
    gets the same value, hence takes the same early-stopping decision.
    """

    def __init__(self, strategy: tf.distribute.Strategy, dataset: object, steps: int) -> None:
        self.strategy = strategy
        self.dataset = dataset
        self.steps = steps

    def __call__(self, model: object) -> dict[str, float]:
        """``val_loss`` (mean squared error) and ``val_rmse`` of ``model``."""
        strategy = self.strategy

        @tf.function
        def step(iterator: object) -> tuple[tf.Tensor, tf.Tensor]:
            x, y = next(iterator)  # type: ignore[call-overload]

            def replica(x: object, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                err = model(x, training=False) - y  # type: ignore[operator]
                return tf.reduce_sum(err * err), tf.cast(tf.size(err), tf.float32)

            sse, n = strategy.run(replica, args=(x, y))
            return strategy.reduce("SUM", sse, axis=None), strategy.reduce("SUM", n, axis=None)

        iterator = iter(self.dataset)  # type: ignore[call-overload]
        sse = n = 0.0
        for _ in range(self.steps):
            s, c = step(iterator)
            sse, n = sse + float(s), n + float(c)
        mse = sse / max(n, 1.0)
        return {"val_loss": mse, "val_rmse": mse**0.5}
