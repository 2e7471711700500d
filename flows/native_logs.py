"""TensorFlow's native start-up lines, kept off the console of a TensorFlow stage.

TensorFlow's C++ code writes to file descriptor 2 before its logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` does not hide it: on a machine without a GPU, the CUDA build
prints "All log messages before absl::InitializeLog() ...", "Could not find cuda
drivers", "failed call to cuInit: ... UNKNOWN ERROR (303)" and its CPU-feature notes,
twice per process. :func:`quiet` sends the process's fd 2 through a filter that drops
those lines (on a machine with an NVIDIA device, only the informational ones) and passes
everything else on; ``cfpipe --verbose`` (``CFPIPE_VERBOSE=1``) keeps them all.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

#: Set (to 1) by ``cfpipe --verbose``: TensorFlow's native lines are all shown.
VERBOSE_ENV = "CFPIPE_VERBOSE"

#: Lines dropped everywhere: glog-style INFO lines (``I1202 13:24:16.266 ...``), the
#: pre-initialisation notice, and the CPU-feature note's second line.
_INFO = re.compile(
    rb"^(I\d{4} [\d:.]+\s+\d+ \S+\.cc:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: .* rebuild TensorFlow"
    rb"|.*oneDNN custom operations are on)"
)
#: Dropped where no NVIDIA device exists: the warnings and CUDA errors of a CUDA build
#: looking for a GPU it cannot have.
_NO_GPU = re.compile(rb"^(W\d{4} |E\d{4} .*(cuInit|CUDA|cuda))")

_restore: list[tuple[int, threading.Thread]] = []


def has_nvidia_device() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()


def quiet() -> None:
    """From now on, TensorFlow's native start-up lines on fd 2 are dropped (unless
    ``CFPIPE_VERBOSE`` is set); other output passes unchanged. Idempotent."""
    if os.environ.get(VERBOSE_ENV) or _restore:
        return
    noise = [_INFO] if has_nvidia_device() else [_INFO, _NO_GPU]
    read, write = os.pipe()
    console = os.dup(2)
    os.dup2(write, 2)
    os.close(write)
    thread = threading.Thread(
        target=_forward, args=(read, console, noise), name="cfpipe-native-logs", daemon=True
    )
    thread.start()
    _restore.append((console, thread))


def _forward(read: int, console: int, noise: list[re.Pattern[bytes]]) -> None:
    with os.fdopen(read, "rb") as lines:
        for line in lines:
            if not any(pattern.match(line) for pattern in noise):
                os.write(console, line)


def flush() -> None:
    """Give fd 2 back to the console, once every line written to it has passed the
    filter (at most a second): call it before the process exits."""
    if not _restore:
        return
    console, thread = _restore.pop()
    os.dup2(console, 2)  # closes the pipe's last write end: the filter reads to its end
    thread.join(timeout=1.0)
