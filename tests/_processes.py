"""Processes a test starts, found again by a marker in their environment: whatever they
start in turn inherits it, so a test can check that nothing it started is left running,
and kill (by pid) whatever is, pass or fail. Also: is a run directory's lock free."""

from __future__ import annotations

import fcntl
import os
import signal
import time
import uuid
from collections.abc import Collection
from pathlib import Path

import pytest

#: The environment variable that carries a test's marker.
MARKER = "CFPIPE_TEST_MARKER"

_handed_out: list[str] = []


def new_marker() -> str:
    """A fresh marker; :func:`kill_marked` ends whatever carries it."""
    _handed_out.append(uuid.uuid4().hex)
    return _handed_out[-1]


def kill_marked() -> None:
    """SIGKILL every process that carries a marker handed out so far (a test's teardown)."""
    while _handed_out:
        for pid in marked(_handed_out.pop()):
            kill(pid)


def marked(marker: str) -> list[int]:
    """Pids of the processes whose environment carries the marker."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
    return found


def gone_within(marker: str, limit: float, since: float, *, spare: Collection[int] = ()) -> float:
    """Seconds from ``since`` until no process carries the marker but those in ``spare``
    (what the test itself stops later); fail past ``limit``, killing those left, so that
    a failing test leaves nothing behind."""
    while (left := set(marked(marker)) - set(spare)) and time.monotonic() - since < limit:
        time.sleep(0.1)
    if left:
        described = {p: cmdline(p) for p in left}
        for pid in left:
            kill(pid)
        pytest.fail(f"still running {limit:.0f} s after the stop: {described}")
    return time.monotonic() - since


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def lock_is_free(out: Path) -> bool:
    """Whether no process holds the ``flock`` of run directory ``out`` (``.OUT.lock``)."""
    path = out.parent / f".{out.name}.lock"
    if not path.exists():
        return True
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return True
