"""The private internals cfpipe patches are still there, on the versions they were
verified on: an upgrade of distributed, Prefect or Keras fails here, not for a user."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from flows.patches import dask_caches, prefect_server

ROOT = Path(__file__).resolve().parents[2]
# The patching module's name and the version it was verified on, per distribution.
VERIFIED = {
    "distributed": ("flows.patches.dask_caches", dask_caches.VERIFIED),
    "prefect": ("flows.patches.prefect_server", prefect_server.VERIFIED),
    "keras": ("cflib.train.keras_strategy", "3.15.1"),
}


def _bounds() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    return {r.name.lower(): r for r in reqs if r.name.lower() in VERIFIED}


@pytest.mark.parametrize("dist", sorted(VERIFIED))
def test_installed_version_is_the_verified_one(dist: str) -> None:
    module, verified = VERIFIED[dist]
    installed = Version(version(dist))
    assert installed <= Version(verified), (
        f"{dist} {installed} is newer than {verified}, the version {module} was verified "
        f"on: check the private attribute it uses, then raise VERIFIED and the bound in "
        "pyproject.toml"
    )


@pytest.mark.parametrize("dist", sorted(VERIFIED))
def test_pyproject_bounds_the_patched_dependency(dist: str) -> None:
    _, verified = VERIFIED[dist]
    spec = _bounds()[dist].specifier
    assert any(s.operator in ("<", "<=") for s in spec), f"{dist} has no upper bound"
    assert Version(verified) in spec
    major, minor = Version(verified).release[:2]
    assert Version(f"{major}.{minor + 1}") not in spec  # the next release series is out


def test_constraints_satisfy_the_bounds() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    pins = {name.lower(): v for name, v in pins.items()}
    for dist, requirement in _bounds().items():
        assert Version(pins[dist]) in requirement.specifier, (dist, pins[dist])


def test_distributed_caches_are_where_dask_caches_expects_them() -> None:
    from distributed import core
    from distributed.dashboard import scheduler as dashboard

    # functools.cache and toolz.memoize both expose the undecorated function; once
    # plugged (by an earlier test in this process), the replacement carries the mark.
    for cached in (core._expects_comm, dashboard.template_variables):
        assert callable(getattr(cached, "__wrapped__", None)) or getattr(
            cached, dask_caches._PLUGGED, False
        )


def test_prefect_keeps_its_temporary_servers_where_prefect_server_reads_them() -> None:
    from prefect.server.api.server import SubprocessASGIServer

    assert isinstance(SubprocessASGIServer._instances, dict)
    server = SubprocessASGIServer._instances.get(None)
    assert server is None or hasattr(server, "server_process")


def test_prefect_times_flows_out_the_way_limits_expects() -> None:
    """flows/limits.py, flows/patches/prefect_shield.py: the alarm's error is an
    asyncio.CancelledError that a shield holds off, and Prefect's flow engine raises a
    TimeoutError once out of the flow."""
    import asyncio
    import signal
    import threading

    from prefect._internal.concurrency import cancellation
    from prefect.flow_engine import FlowRunTimeoutError

    from flows.patches import prefect_shield

    assert prefect_shield.VERIFIED == VERIFIED["prefect"][1]
    assert issubclass(cancellation.CancelledError, asyncio.CancelledError)
    assert issubclass(FlowRunTimeoutError, TimeoutError)
    assert threading.current_thread() is threading.main_thread()
    held_off = False
    with pytest.raises(cancellation.CancelledError):
        with cancellation.cancel_sync_after(3600) as scope:
            assert isinstance(scope, cancellation.AlarmCancelScope)
            with prefect_shield.shield():
                signal.raise_signal(signal.SIGALRM)  # the timer's signal, now
                held_off = True
    assert held_off


def test_keras_records_the_scope_strategy_where_keras_strategy_clears_it() -> None:
    import keras
    import tensorflow as tf

    from cflib.train import keras_strategy

    assert keras_strategy.VERIFIED == VERIFIED["keras"][1]
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(1)])
    assert getattr(model, keras_strategy.ATTRIBUTE) is strategy
    keras_strategy.use_scope_strategy(model)
    assert getattr(model, keras_strategy.ATTRIBUTE) is None


def test_prefect_starts_its_temporary_server_where_prefect_server_hooks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``die_with_parent`` swaps the ``subprocess`` of the module whose
    ``SubprocessASGIServer._run_uvicorn_command`` calls ``subprocess.Popen``."""
    import inspect

    from prefect.server.api import server as module

    source = inspect.getsource(module.SubprocessASGIServer._run_uvicorn_command)
    assert "subprocess.Popen(" in source
    monkeypatch.setattr(module, "subprocess", module.subprocess)  # undone after the test
    prefect_server.die_with_parent()
    prefect_server.die_with_parent()  # idempotent
    assert module.subprocess.Popen is prefect_server._popen_in_own_session
    assert module.subprocess.PIPE == __import__("subprocess").PIPE  # the rest unchanged


def test_prefect_process_pool_keeps_what_prefect_pool_resets() -> None:
    from prefect.task_runners import ProcessPoolTaskRunner

    from flows.patches import prefect_pool

    assert prefect_pool.VERIFIED == prefect_server.VERIFIED
    runner = ProcessPoolTaskRunner(max_workers=1)
    for name in ("_cached_context", "_cached_env", "_executor"):
        assert hasattr(runner, name), name
