"""A block that a flow's time limit does not interrupt (``flows.limits``).

Prefect 3.8 enforces a sync flow's ``timeout_seconds`` with a SIGALRM interval timer in
the main thread (``AlarmCancelScope`` in ``prefect._internal.concurrency.cancellation``);
the alarm raises Prefect's ``CancelledError`` wherever the flow's thread is. A Dask
``LocalCluster`` interrupted while it starts leaves worker processes behind, so
``flows.runtime`` starts it inside :func:`shield`, Prefect's own ``shield``, which holds
the error off until the block ends.

Reason: no public API (Prefect 3.8). Verified on prefect ``VERIFIED``;
``pyproject.toml`` keeps prefect below 3.9, and ``tests/flows/test_patches.py`` fails on a
newer Prefect or when these internals are gone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

#: The Prefect release this was checked against.
VERIFIED = "3.8.8"


def shield() -> AbstractContextManager[None]:
    """A block that the flow's time limit does not interrupt: reached within it, the
    limit's error is raised when the block ends (Prefect's own ``shield``)."""
    from prefect._internal.concurrency.cancellation import shield as prefect_shield

    return prefect_shield()
