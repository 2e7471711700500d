"""A request to stop a training in progress, honoured at the next batch with a checkpoint.

Whoever runs training decides what asks for a stop (cfpipe's child process turns SIGTERM
and SIGINT into a request: ``flows/supervise.py``); this module only carries the
request to the training loop. It imports neither Prefect nor signal handling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_listening = 0
_reason: str | None = None


class TrainingInterrupted(Exception):
    """Training stopped on request after writing a checkpoint; the same command resumes.

    Attributes:
        reason: what asked for the stop (e.g. ``SIGTERM``).
        checkpoint: the checkpoint's weights file written before stopping, or None.
    """

    def __init__(self, reason: str, checkpoint: str | None) -> None:
        self.reason = reason
        self.checkpoint = checkpoint
        where = f"after writing checkpoint {checkpoint}" if checkpoint else "with no checkpoint"
        super().__init__(f"training interrupted ({reason}) {where}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep both facts when Prefect pickles the error back to the flow process.
        return (type(self), (self.reason, self.checkpoint))


def request(reason: str) -> bool:
    """Ask the training in progress to stop; return whether one is listening.

    Safe to call from a signal handler. With no training listening nothing is recorded,
    and the caller decides (a process with nothing to save can exit at once).
    """
    global _reason
    if not _listening:
        return False
    if _reason is None:
        _reason = reason
    return True


def requested() -> str | None:
    """The reason of a pending stop request, or None."""
    return _reason


@contextlib.contextmanager
def listening() -> Iterator[None]:
    """Within the block, ``request`` reaches this training; a pending request is dropped
    when the outermost block ends."""
    global _listening, _reason
    _listening += 1
    try:
        yield
    finally:
        _listening -= 1
        if not _listening:
            _reason = None
