"""Process supervision of a ``cfpipe`` command: signals, the TensorFlow children, the
temporary Prefect server.

- **Stopping.** SIGINT or SIGTERM (to the command or to its process group) ends the
  command with :class:`Interrupted`: a TensorFlow child is asked to stop (SIGUSR1; it
  turns that, SIGTERM and SIGINT into a stop request that training honours at the next
  batch, writing a checkpoint), the flow run ends Crashed with the one line, and the
  temporary server (in a session of its own, so a group signal does not reach it) is
  stopped at exit. A second signal stops at once: children killed, exit.
- **Cancelling.** A Cancel of a deployment's flow run (the Prefect UI, ``prefect flow-run
  cancel``) reaches the flow run's process as SIGTERM from the runner or worker that
  started it. The child is stopped the same way, then the signal goes on to Prefect's
  engine, which ends the flow runs Cancelled (:func:`cancelling` tells the two apart).
- **Dying.** Every child asks the kernel for SIGTERM when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), and a TensorFlow child also watches its parent's pid;
  an orphaned child writes its checkpoint and exits within ``ORPHAN_GRACE_S``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.process import BaseProcess
from types import FrameType

from cflib.train import stop
from flows import native_logs

#: Seconds a TensorFlow child has to honour a stop request (write its checkpoint) before
#: it is killed; the rest of the 30 s a stop may take goes to the flow run's state and
#: the temporary server.
CHILD_GRACE_S = 20.0
#: Seconds an orphaned child (its parent is gone) has to write its checkpoint and exit.
ORPHAN_GRACE_S = 5.0
#: Seconds between two looks of a TensorFlow child at its parent's pid.
WATCH_S = 1.0
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when ``parent`` (the thread of it that
    started this process) ends; if it ended already, send it now. Linux only; safe in a
    ``preexec_fn`` (no allocation beyond ctypes' call)."""
    if _LIBC is None:  # not Linux
        return
    if _LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died between our start and the prctl
        os.kill(os.getpid(), sig)


# --- the child's side -----------------------------------------------------------------

_parent = 0
_signals = 0


def init_child(parent: int, warm: Iterable[str] = ()) -> None:
    """``ProcessPoolTaskRunner`` initializer of a TensorFlow child: stop on a signal with
    a checkpoint, and die with ``parent``; then import the modules ``warm`` names, before
    the first task arrives (an import error is left to the task that needs the module).

    The kernel's parent-death signal follows the *thread* that started the child (the
    main thread, or one of Prefect's resolver threads, alive as long as the pool); the
    pid watch covers the rest.
    """
    global _parent
    _parent = parent
    native_logs.quiet()  # TensorFlow's start-up lines on a machine without a GPU
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _child_signal)
    die_with_parent(parent)
    threading.Thread(target=_watch_parent, name="cfpipe-parent-watch", daemon=True).start()
    # The task engine logs a task's exception on this logger, traceback and all.
    logging.getLogger("prefect.task_runs").addFilter(_no_traceback_for_a_stop)
    for module in warm:
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    # Registered last, run first at exit: the queued log lines are sent by then
    # (multiprocessing joins its queues' feeder threads before the interpreter shuts
    # down); TensorFlow's own teardown would add 1-5 s to every stage's end.
    atexit.register(_exit_at_once)


def _exit_at_once() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    native_logs.flush()
    os._exit(0)


def _no_traceback_for_a_stop(record: logging.LogRecord) -> bool:
    """A stopped training's task run is logged in one line, without the traceback."""
    if record.exc_info and isinstance(record.exc_info[1], stop.TrainingInterrupted):
        record.exc_info = None
        record.exc_text = None
    return True


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


class Interrupted(BaseException):
    """The command was stopped by a signal; ``message`` is its one line, ``exit_code``
    128 + the signal. A BaseException, like KeyboardInterrupt: nothing may swallow it, and
    Prefect records the flow run Crashed with this message."""

    def __init__(self, signum: int, stage: str | None) -> None:
        self.signum = signum
        self.stage = stage
        super().__init__(self.message)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        during = f" during {self.stage}" if self.stage else ""
        hint = " from the last checkpoint" if self.stage == "train" else ""
        name = signal.Signals(self.signum).name
        return f"interrupted ({name}){during}; rerun the same command to resume{hint}"


_first: Interrupted | None = None


@contextlib.contextmanager
def installed(*, signals: bool = True, server: bool = True) -> Iterator[None]:
    """In the ``cfpipe`` process: SIGINT and SIGTERM raise :class:`Interrupted` (Prefect
    swaps in its own SIGTERM handler while a flow runs; ``interrupted_by`` maps it), a
    second one stops at once; the temporary server will die with this process.

    ``signals=False`` leaves the signals to Prefect (``cfpipe deploy serve``: its runner
    pauses its deployments on KeyboardInterrupt). ``server=False``, for a command that
    starts no server, leaves Prefect's server module unimported (about 1.5 s). The
    previous handlers are back after the block (``cfpipe``'s ``main`` called in a
    longer-lived process, such as a test).
    """
    from flows.patches import prefect_server

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if signals:
        for sig in previous:
            signal.signal(sig, _on_signal)
    if server:
        prefect_server.die_with_parent()
    global _first
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _first = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _first is not None:
        stop_now()
    raise interrupted_by(signum)


def current_stage() -> str | None:
    """The name of the flow running in this thread (``train``, ``ingest``, ...), if any."""
    context = sys.modules.get("prefect.context")
    if context is None:  # Prefect is not loaded: no flow runs (`cfpipe predict`)
        return None
    ctx = context.FlowRunContext.get()
    return ctx.flow.name if ctx is not None and ctx.flow is not None else None


def interrupted_by(cause: BaseException | int) -> Interrupted:
    """The :class:`Interrupted` of a signal number, a KeyboardInterrupt or Prefect's
    TerminationSignal; the first one is kept (its line is the one printed)."""
    global _first
    if isinstance(cause, Interrupted):
        found = cause
    elif isinstance(cause, int):
        found = Interrupted(cause, current_stage())
    elif isinstance(cause, KeyboardInterrupt):
        found = Interrupted(signal.SIGINT, current_stage())
    else:  # prefect.exceptions.TerminationSignal
        found = Interrupted(int(getattr(cause, "signal", signal.SIGTERM)), current_stage())
    if _first is None:
        _first = found
    return _first


def cancelling() -> bool:
    """Whether this process's flow run is being cancelled: its root flow run (the one the
    runner or worker started) is Cancelling or Cancelled in the API.

    Prefect's runner and worker turn a Cancel into SIGTERM to the flow run's process; a
    SIGTERM for any other reason (a shutdown, ``kill``) finds the flow run Running.
    """
    from prefect import runtime
    from prefect.client.orchestration import get_client

    try:
        root = runtime.flow_run.root_flow_run_id
        if not root:
            return False
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(root).state
    except Exception:  # no API to ask: not a Cancel anyone could have sent
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def cancelled_message(stage: str | None) -> str:
    """The state message of a task run stopped because its flow run was cancelled."""
    during = f" during {stage}" if stage else ""
    hint = "; training stopped at a checkpoint, which a rerun into the same run resumes from"
    return f"flow run cancelled{during}" + (hint if stage == "train" else "")


def report(interrupted: Interrupted) -> int:
    """Print the one line of ``interrupted``; its exit status (130, 143)."""
    print_last(f"cfpipe: {interrupted.message}")
    return interrupted.exit_code


def print_last(line: str) -> None:
    """Print ``line`` to stderr as the command's last: Prefect's notice that it stops the
    temporary server (at exit, once its logs are sent) is dropped."""
    logging.getLogger("prefect").addFilter(
        lambda record: not str(record.msg).startswith("Stopping temporary server")
    )
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


def stop_children(children: Iterable[BaseProcess], done: Callable[[], bool]) -> None:
    """Ask ``children`` to stop (SIGUSR1), then wait until ``done()`` or they have exited,
    at most ``CHILD_GRACE_S``; a second signal or the deadline kills them."""
    alive = list(children)
    for child in alive:
        _send(child, signal.SIGUSR1)
    deadline = time.monotonic() + CHILD_GRACE_S
    while alive and not done() and time.monotonic() < deadline:
        try:
            multiprocessing.connection.wait([c.sentinel for c in alive], timeout=0.1)
        except BaseException:  # a second signal (Prefect's handler raises): stop at once
            break
        alive = [c for c in alive if not _exited(c)]
    if not done():
        for child in alive:
            _send(child, signal.SIGKILL)


def _exited(child: BaseProcess) -> bool:
    return bool(multiprocessing.connection.wait([child.sentinel], timeout=0))


def _send(child: BaseProcess, sig: int) -> None:
    if child.pid is not None:
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            pass


def stop_now() -> None:
    """The second signal: kill every child and the temporary server, print the line of
    the first interruption, exit with its status."""
    from flows.patches import prefect_server

    for child in multiprocessing.active_children():
        _send(child, signal.SIGKILL)
    prefect_server.kill_ephemeral()
    first = _first or Interrupted(signal.SIGTERM, None)
    sys.stderr.write(f"cfpipe: {first.message}\n")
    sys.stderr.flush()
    os._exit(first.exit_code)
