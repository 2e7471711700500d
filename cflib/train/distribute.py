"""The distribution strategy (one device, MirroredStrategy, MultiWorkerMirroredStrategy), the
logical devices cut from one, GPU memory growth, and the batch a GPU needs."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import tensorflow as tf

from cflib.errors import ConfigError
from cflib.models.catalog import ROW_LOOKUPS_PER_BATCH

log = logging.getLogger(__name__)


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
    ``MirroredStrategy`` over all of them (``replicas`` is ignored): the tables, their
    optimizer state and the training step are on every GPU, and each GPU's memory grows
    as needed (``enable_memory_growth``). Without, ``replicas > 1`` splits the CPU into
    that many logical devices and mirrors over them: this tests the distributed code path
    on a laptop, but on 2 cores it trains slower than one replica. ``replicas == 1`` on
    CPU returns the default strategy: a ``MirroredStrategy`` over the one CPU device only
    adds per-step overhead.

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
        enable_memory_growth()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas not in (1, len(gpus)):
            log.warning("--replicas %d ignored: mirroring over all %d GPUs", replicas, len(gpus))
        enable_memory_growth()  # before mirror_over starts the runtime
        return mirror_over("GPU")
    if replicas == 1:
        return tf.distribute.get_strategy()
    try:
        split_device("CPU", replicas)
    except RuntimeError as exc:  # the runtime is already initialized
        have = len(tf.config.list_logical_devices("CPU"))
        if have != replicas:
            raise ConfigError(
                f"--replicas {replicas}: TensorFlow already started in this process with "
                f"{have} logical CPU device(s); --replicas must be set before TensorFlow "
                "starts (run the training in a fresh process)"
            ) from exc
    return mirror_over("CPU")


def split_device(kind: str, count: int, memory_mb: int | None = None) -> list[str]:
    """Cut the first physical ``kind`` device ("CPU" or "GPU") into ``count`` logical ones.

    This is how one machine tests what several devices do: two logical GPUs cut from one
    run the multi-GPU path (``MirroredStrategy``, its all-reduce) on a single GPU, and
    logical CPUs run it without a GPU. Call it before the TensorFlow runtime starts.

    Args:
        kind: the device type.
        count: logical devices to make (1 or more).
        memory_mb: the memory of each logical GPU, in MB (required for a GPU, which
            TensorFlow cannot split otherwise; not allowed for a CPU).

    Returns:
        The names of the logical devices of ``kind`` (starting the runtime).

    Raises:
        ConfigError: no such device, a bad ``count``, or ``memory_mb`` missing for a GPU
            or given for a CPU.
        RuntimeError: the runtime already started with another configuration.
    """
    if kind not in ("CPU", "GPU"):
        raise ConfigError(f"device kind should be CPU or GPU. Received: {kind!r}.")
    if count <= 0:
        raise ConfigError(f"logical {kind} devices should be a positive count. Received: {count}.")
    if (kind == "GPU") != (memory_mb is not None):
        raise ConfigError(
            f"memory_mb is {'required' if kind == 'GPU' else 'not supported'} when "
            f"splitting a {kind}. Received: {memory_mb}."
        )
    devices = tf.config.list_physical_devices(kind)
    if not devices:
        raise ConfigError(f"no {kind} visible to TensorFlow to split into {count} devices")
    config = tf.config.LogicalDeviceConfiguration
    tf.config.set_logical_device_configuration(
        devices[0], [config(memory_limit=memory_mb) for _ in range(count)]
    )
    return [d.name for d in tf.config.list_logical_devices(kind)]


def mirror_over(kind: str) -> tf.distribute.MirroredStrategy:
    """A ``MirroredStrategy`` over every logical device of ``kind`` ("CPU" or "GPU").

    Built in its ``scope()``, a model's variables (the embedding tables) and the
    optimizer's (their accumulators) are mirrored on each device, and each replica runs
    the training step on its own device on its share of the global batch. Across several
    physical GPUs the gradients are summed with NCCL; across logical GPUs cut from one,
    TensorFlow falls back to a reduction on one device (it logs "NCCL is not supported
    when using virtual GPUs").

    Raises:
        ConfigError: there is no such device.
    """
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if not devices:
        raise ConfigError(f"no {kind} device visible to TensorFlow to mirror over")
    return tf.distribute.MirroredStrategy(devices=devices)


#: TensorFlow's own switch of GPU memory growth; it wins over ``set_memory_growth``.
GROWTH_ENV = "TF_FORCE_GPU_ALLOW_GROWTH"


def enable_memory_growth() -> list[str]:
    """Let each GPU's memory grow as training needs it, instead of TensorFlow's default of
    taking nearly all of it at start: the data pipeline, evaluation and other processes
    can then share the GPU. Not where ``TF_FORCE_GPU_ALLOW_GROWTH`` decides (TensorFlow
    reads it itself: ``false`` pre-allocates), nor on a GPU cut into logical devices
    (their memory is fixed). Call it before the runtime starts.

    Returns:
        The physical GPUs whose memory now grows (none without GPUs).
    """
    if os.environ.get(GROWTH_ENV):
        return []
    grown = []
    for gpu in tf.config.list_physical_devices("GPU"):
        if tf.config.get_logical_device_configuration(gpu):
            continue
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the runtime started already: its memory is allocated
            log.warning("%s: memory growth not set; TensorFlow already started", gpu.name)
            continue
        grown.append(gpu.name)
    return grown


#: Ratings per replica per step on each kind of device. On a GPU one step of biased MF
#: is a few gathers and scatters that take microseconds, against a fixed cost per step
#: (kernel launches, Keras' bookkeeping, the input hand-off) of the order of a
#: millisecond, so small batches leave it idle; an estimate, not measured (no GPU here:
#: README, "GPU"; ``bench/gpu.py`` measures it). On a CPU the model's own default
#: applies (``cflib.models.catalog``).
BATCH_PER_REPLICA = {"GPU": 131_072}


def device_batch(kind: str, replicas: int, *, n_users: int, n_items: int) -> int | None:
    """The global batch that suits ``replicas`` replicas on ``kind`` devices: the kind's
    ``BATCH_PER_REPLICA`` on each replica, at most the data's bound on the default batch
    (``ROW_LOOKUPS_PER_BATCH`` lookups of an average row of the smaller table, README,
    Design: "Divergence"), rounded down to a multiple of ``replicas``. None for a CPU.

    Raises:
        ConfigError: ``kind`` is not "CPU" or "GPU", or a count is not positive.
    """
    if kind not in ("CPU", "GPU"):
        raise ConfigError(f"device kind should be CPU or GPU. Received: {kind!r}.")
    for name, value in (("replicas", replicas), ("n_users", n_users), ("n_items", n_items)):
        if value <= 0:
            raise ConfigError(f"{name} should be a positive integer. Received: {value}.")
    per_replica = BATCH_PER_REPLICA.get(kind)
    if per_replica is None:
        return None
    batch = min(per_replica * replicas, ROW_LOOKUPS_PER_BATCH * min(n_users, n_items))
    return max(batch // replicas, 1) * replicas


def batch_advice(
    kind: str, replicas: int, batch_size: int, *, n_users: int, n_items: int
) -> str | None:
    """When ``batch_size`` is smaller than ``device_batch``'s for these devices, a line
    that says which ``--batch-size`` to pass; else None (always on a CPU)."""
    best = device_batch(kind, replicas, n_users=n_users, n_items=n_items)
    if best is None or batch_size >= best:
        return None
    return (
        f"--batch-size {batch_size} gives each of the {replicas} {kind} replica(s) "
        f"{batch_size // replicas:,} ratings a step; {kind}s train faster with more: "
        f"--batch-size {best} (README, GPU)"
    )


def advise_batch(
    strategy: tf.distribute.Strategy, batch_size: int, *, n_users: int, n_items: int
) -> str | None:
    """Log ``batch_advice`` for the strategy's devices, if any, and return it.

    The batch is not raised by itself: it is part of a run's identity, resolved before
    TensorFlow starts (the CLI and the flows never load it), and a resumed run must
    replay the same batches whatever machine it resumes on.
    """
    kind = device_kind(device_names(strategy))
    if kind not in ("CPU", "GPU"):
        return None
    advice = batch_advice(
        kind, strategy.num_replicas_in_sync, batch_size, n_users=n_users, n_items=n_items
    )
    if advice is not None:
        log.warning("%s", advice)
    return advice


def check_batch(
    batch_size: int, replicas: int, train_rows: int, validation_rows: int | None = None
) -> None:
    """The global batch must split evenly, and fill every replica at least once, in the
    train split and (if given) in the validation split: with replicas the short last
    batch is dropped, and an empty validation stopped ``fit`` with a bare StopIteration."""
    if batch_size % replicas:
        raise ConfigError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
    splits = {"training": train_rows, "validation": validation_rows}
    for split, rows in splits.items():
        if rows is not None and rows < batch_size and replicas > 1:
            raise ConfigError(
                f"--batch-size {batch_size} is larger than the {rows} {split} ratings; "
                f"with {replicas} replicas every batch must be full"
            )


def device_names(strategy: tf.distribute.Strategy) -> list[str]:
    """Names of the devices the replicas run on."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        # The default strategy runs on the first logical device (CPU:0 without GPUs).
        return [tf.config.list_logical_devices()[0].name]
    return list(strategy.extended.worker_devices)


def device_kind(names: list[str]) -> str:
    """The kind of the devices named: "GPU", "CPU", or "CPU/GPU" for a mix."""
    kinds = {"GPU" if ":GPU:" in name.upper() else "CPU" for name in names}
    return kinds.pop() if len(kinds) == 1 else "CPU/GPU"


def describe(strategy: tf.distribute.Strategy, cluster: Cluster | None = None) -> str:
    """Where the replicas run, in words: "one CPU device", "MirroredStrategy over 2 GPUs",
    "MultiWorkerMirroredStrategy over 2 workers (4 replicas)"."""
    names = device_names(strategy)
    kind = device_kind(names)
    if cluster is not None:
        return (
            f"MultiWorkerMirroredStrategy over {cluster.workers} workers "
            f"({strategy.num_replicas_in_sync} replicas)"
        )
    if len(names) == 1 and not isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"one {kind} device"
    if kind == "GPU":
        devices = "1 GPU" if len(names) == 1 else f"{len(names)} GPUs"
    else:
        devices = f"{len(names)} {kind} device" + ("s" if len(names) > 1 else "")
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
