"""TensorFlow's native start-up lines stay off a TensorFlow stage's console, unless
`cfpipe --verbose`; everything else the process writes to stderr passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flows import native_logs

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import os, sys
from flows import native_logs
native_logs.quiet()
import tensorflow as tf
print(tf.sysconfig.get_build_info().get("is_cuda_build", False), flush=True)
tf.constant(1.0) + 1  # the device set-up: a CUDA build looks for a GPU here
print("a Python line on stderr", file=sys.stderr, flush=True)
os.write(2, b"E1202 12:00:00.000000    1 kernel.cc:1] a native error that matters\\n")
native_logs.flush()
"""
NOISE = ("absl::InitializeLog", "cuda drivers", "cuInit", "cpu_feature_guard")


def _run(verbose: bool) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env.pop(native_logs.VERBOSE_ENV, None)
    if verbose:
        env[native_logs.VERBOSE_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", SCRIPT], env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip() == "True", done.stderr


def test_native_start_up_lines_are_dropped_and_the_rest_passes() -> None:
    cuda_build, stderr = _run(verbose=False)
    assert "a Python line on stderr" in stderr
    assert "a native error that matters" in stderr
    assert not [line for line in stderr.splitlines() if any(n in line for n in NOISE)], stderr
    cuda_build, loud = _run(verbose=True)
    assert "a native error that matters" in loud
    if cuda_build and not native_logs.has_nvidia_device():  # what the filter is for
        assert any(n in loud for n in NOISE), loud
