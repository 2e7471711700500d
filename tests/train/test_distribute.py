"""Device placement and batch sizing (cflib.train.distribute): the GPU path, run on logical
CPU devices since no GPU is needed to check where variables and steps go."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cflib.config import TrainConfig
from cflib.errors import ConfigError
from cflib.models.catalog import ROW_LOOKUPS_PER_BATCH, build_model, resolve
from cflib.train.distribute import (
    BATCH_PER_REPLICA,
    GROWTH_ENV,
    advise_batch,
    batch_advice,
    check_batch,
    describe,
    device_batch,
    device_kind,
    enable_memory_growth,
    mirror_over,
    split_device,
)
from cflib.train.epochs import compile_model

NETFLIX = {"n_users": 480_189, "n_items": 17_770}
GPU = "/job:localhost/replica:0/task:0/device:GPU:0"


def test_gpu_batch_is_per_replica_within_the_data_bound() -> None:
    assert BATCH_PER_REPLICA["GPU"] == 131_072
    assert device_batch("GPU", 1, **NETFLIX) == 131_072
    assert device_batch("GPU", 2, **NETFLIX) == 262_144  # per replica: the global grows
    assert device_batch("GPU", 16, **NETFLIX) == ROW_LOOKUPS_PER_BATCH * 17_770  # the bound
    # Small data: the default batch's bound (64 lookups of an average item), split evenly.
    assert device_batch("GPU", 1, n_users=300, n_items=200) == 12_800
    assert device_batch("GPU", 3, n_users=300, n_items=200) == 12_798
    assert device_batch("GPU", 4, n_users=1, n_items=1) == 64
    assert device_batch("CPU", 2, **NETFLIX) is None  # the model's default applies


def test_device_batch_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="device kind should be CPU or GPU. Received: 'TPU'"):
        device_batch("TPU", 1, **NETFLIX)
    with pytest.raises(ConfigError, match="replicas should be a positive integer. Received: 0"):
        device_batch("GPU", 0, **NETFLIX)
    with pytest.raises(ConfigError, match="n_items should be a positive integer"):
        device_batch("GPU", 1, n_users=5, n_items=0)


def test_batch_advice_names_the_batch_to_pass() -> None:
    advice = batch_advice("GPU", 2, 16_384, **NETFLIX)
    assert advice == (
        "--batch-size 16384 gives each of the 2 GPU replica(s) 8,192 ratings a step; "
        "GPUs train faster with more: --batch-size 262144 (README, GPU)"
    )
    assert batch_advice("GPU", 2, 262_144, **NETFLIX) is None
    assert batch_advice("GPU", 1, 500_000, **NETFLIX) is None  # larger: the user's choice
    assert batch_advice("CPU", 1, 16_384, **NETFLIX) is None


def test_with_replicas_every_batch_is_full_in_both_splits() -> None:
    check_batch(2000, 2, 24_095, 2_932)
    check_batch(4000, 1, 24_095, 2_932)  # one replica keeps the short last batch
    with pytest.raises(ConfigError, match="--batch-size 3 does not split evenly over 2"):
        check_batch(3, 2, 24_095, 2_932)
    # With replicas the short last batch is dropped: a validation split smaller than the
    # batch had none, and Keras stopped with a bare StopIteration.
    with pytest.raises(
        ConfigError,
        match="--batch-size 4000 is larger than the 2932 validation ratings; "
        "with 2 replicas every batch must be full",
    ):
        check_batch(4000, 2, 24_095, 2_932)
    with pytest.raises(ConfigError, match="larger than the 3000 training ratings"):
        check_batch(4000, 2, 3_000, 5_000)


def test_no_advice_on_the_default_cpu_strategy() -> None:
    assert advise_batch(tf.distribute.get_strategy(), 1024, **NETFLIX) is None


def test_device_kind_and_description() -> None:
    assert device_kind([GPU, GPU.replace("GPU:0", "GPU:1")]) == "GPU"
    assert device_kind(["/device:CPU:0", GPU]) == "CPU/GPU"
    assert device_kind(["/job:localhost/replica:0/task:0/device:CPU:0"]) == "CPU"
    one = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    assert describe(one) == "MirroredStrategy over 1 CPU device"
    assert describe(tf.distribute.get_strategy()) == "one CPU device"


def test_split_device_refuses_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="device kind should be CPU or GPU"):
        split_device("TPU", 2)
    with pytest.raises(ConfigError, match="should be a positive count. Received: 0"):
        split_device("CPU", 0)
    with pytest.raises(ConfigError, match="memory_mb is required when splitting a GPU"):
        split_device("GPU", 2)
    with pytest.raises(ConfigError, match="memory_mb is not supported when splitting a CPU"):
        split_device("CPU", 2, 512)
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(ConfigError, match="no GPU visible to TensorFlow to split"):
            split_device("GPU", 2, 512)


def test_memory_growth_leaves_what_it_should(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GROWTH_ENV, "false")  # TensorFlow's own switch decides
    assert enable_memory_growth() == []
    monkeypatch.delenv(GROWTH_ENV)
    if not tf.config.list_physical_devices("GPU"):
        assert enable_memory_growth() == []


# In a fresh process: logical devices are fixed when TensorFlow starts. The same calls
# as the GPU path (split, mirror, build and compile in the scope, fit), on 2 CPUs.
PLACEMENT = """
import json
import numpy as np
import tensorflow as tf
from cflib.config import TrainConfig
from cflib.models.catalog import build_model, resolve
from cflib.train.distribute import configure_devices, describe, device_names, split_device
from cflib.train.epochs import compile_model

names = split_device("CPU", 2)
strategy = configure_devices(2)  # the CPU replicas' path: the same split, then mirror_over
cfg = resolve(TrainConfig(embedding_dim=4, batch_size=64), n_users=50, n_items=40)
with strategy.scope():
    model = build_model(cfg, n_users=50, n_items=40, global_mean=3.5)
    model.xla = False  # as the trainer does across replicas
compile_model(model, cfg, strategy, train_batches=4)

def components(variables):
    # By position too: the optimizer names every table's accumulator alike.
    return {
        f"{i} {v.path}": [(c.device, c.numpy().tolist()) for c in v.value.values]
        for i, v in enumerate(variables)
    }

before = components(model.trainable_variables)
rng = np.random.default_rng(0)
x = {"user": rng.integers(0, 50, 256, "int32"), "item": rng.integers(0, 40, 256, "int32")}
ds = tf.data.Dataset.from_tensor_slices((x, rng.uniform(1, 5, 256).astype("float32"))).batch(64)
with strategy.scope():
    model.fit(ds, epochs=1, verbose=0)
after = components(model.trainable_variables)
accumulators = components([v for v in model.optimizer.variables if "accumulator" in v.path])
print("PLACED " + json.dumps({
    "logical": names, "devices": device_names(strategy), "placement": describe(strategy),
    "replicas": strategy.num_replicas_in_sync,
    "tables": {k: {"devices": [d for d, _ in v], "same": all(a == v[0][1] for _, a in v),
                   "changed": v[0][1] != before[k][0][1]} for k, v in after.items()},
    "accumulators": {k: {"devices": [d for d, _ in v], "same": all(a == v[0][1] for _, a in v),
                         "nonzero": any(any(r) for r in v[0][1])}
                     for k, v in accumulators.items()},
}))
"""


def test_tables_and_steps_on_each_logical_device() -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", PLACEMENT], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PLACED "))
    placed = json.loads(line.removeprefix("PLACED "))
    cpus = [f"/job:localhost/replica:0/task:0/device:CPU:{i}" for i in (0, 1)]
    assert placed["logical"] == ["/device:CPU:0", "/device:CPU:1"]
    assert placed["devices"] == cpus
    assert placed["replicas"] == 2
    assert placed["placement"] == "MirroredStrategy over 2 CPU devices"
    tables, accumulators = placed["tables"], placed["accumulators"]
    # biased-mf's tables (factors and biases, fused or not), each with its accumulator.
    assert len(tables) >= 2 and len(accumulators) == len(tables)
    for name, table in tables.items():
        assert table["devices"] == cpus, name  # one copy on each replica's device
        assert table["same"] and table["changed"], name  # the step updated both alike
    for name, acc in accumulators.items():
        assert acc["devices"] == cpus and acc["same"] and acc["nonzero"], name


def test_one_device_mirrored_trains_with_xla() -> None:
    """One GPU is a MirroredStrategy over one device, with the model's and the optimizer's
    XLA functions on (as ``num_replicas_in_sync == 1``): the same set-up on the CPU."""
    strategy = mirror_over("CPU")
    assert strategy.num_replicas_in_sync == 1
    assert describe(strategy) == "MirroredStrategy over 1 CPU device"
    cfg = resolve(TrainConfig(embedding_dim=4, batch_size=64), n_users=50, n_items=40)
    with strategy.scope():
        model = build_model(cfg, n_users=50, n_items=40, global_mean=3.5)
    assert model.xla  # as the trainer leaves it with one replica
    compile_model(model, cfg, strategy, train_batches=4)
    before = [np.array(w) for w in model.get_weights()]
    rng = np.random.default_rng(0)
    x = {"user": rng.integers(0, 50, 256, "int32"), "item": rng.integers(0, 40, 256, "int32")}
    ds = tf.data.Dataset.from_tensor_slices((x, rng.uniform(1, 5, 256).astype("float32")))
    with strategy.scope():
        history = model.fit(ds.batch(64), epochs=1, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    after = model.get_weights()
    assert all(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
