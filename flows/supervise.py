"""Process supervision of a ``cfpipe`` command: its children die with it.

Every child asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and a TensorFlow child also watches its parent's pid; a
TensorFlow child turns SIGTERM and SIGINT into a stop request that training honours at
the next batch, writing a checkpoint, and an orphaned one exits within
``ORPHAN_GRACE_S``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from types import FrameType

from cflib.train import stop

#: Seconds a TensorFlow child has to honour a stop request (write its checkpoint) before
#: it is killed; the rest of the 30 s a stop may take goes to the flow run's state and
#: the temporary server.
CHILD_GRACE_S = 20.0
#: Seconds an orphaned child (its parent is gone) has to write its checkpoint and exit.
ORPHAN_GRACE_S = 5.0
#: Seconds between two looks of a TensorFlow child at its parent's pid.
WATCH_S = 1.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when ``parent`` (the thread of it that
    started this process) ends; if it ended already, send it now. Linux only; safe in a
    ``preexec_fn`` (no allocation beyond ctypes' call)."""
    if sys.platform != "linux":
        return
    if _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died between our start and the prctl
        os.kill(os.getpid(), sig)


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


# --- the child's side -----------------------------------------------------------------

_parent = 0
_signals = 0


def init_child(parent: int) -> None:
    """``ProcessPoolTaskRunner`` initializer of a TensorFlow child: stop on a signal with
    a checkpoint, and die with ``parent``.

    The kernel's parent-death signal follows the *thread* that started the child (one of
    Prefect's resolver threads, alive as long as the pool); the pid watch covers the
    rest.
    """
    global _parent
    _parent = parent
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _child_signal)
    die_with_parent(parent)
    threading.Thread(target=_watch_parent, name="cfpipe-parent-watch", daemon=True).start()


def _watch_parent() -> None:
    """SIGTERM to this process once its parent is gone."""
    while os.getppid() == _parent:
        time.sleep(WATCH_S)
    os.kill(os.getpid(), signal.SIGTERM)


def _child_signal(signum: int, frame: FrameType | None) -> None:
    """First SIGTERM/SIGINT (or the parent's SIGUSR1): ask training to stop; with no
    training to save, or at the second, exit at once."""
    global _signals
    if signum != signal.SIGUSR1:
        _signals += 1
    reason = "stop asked by cfpipe" if signum == signal.SIGUSR1 else signal.Signals(signum).name
    if _signals > 1 or not stop.request(reason):
        os._exit(128 + signum)
    grace = ORPHAN_GRACE_S if os.getppid() != _parent else CHILD_GRACE_S
    timer = threading.Timer(grace, os._exit, args=(128 + signum,))
    timer.daemon = True
    timer.start()


# --- the command's side ---------------------------------------------------------------


def install() -> None:
    """In the ``cfpipe`` process: the temporary server will die with this process."""
    from flows.patches import prefect_server

    prefect_server.die_with_parent()
