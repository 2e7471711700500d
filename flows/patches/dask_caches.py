"""Two caches in distributed 2026.8 that keep every closed in-process cluster alive.

A long-lived process that runs one ingest after another (a soak, a notebook, a Python
caller of the flows) starts a fresh ``LocalCluster`` each time, whose scheduler lives in
that process. Two module-level caches in ``distributed`` are keyed by the scheduler,
so neither it nor anything it holds (its task state, its dashboard's Bokeh apps, the
in-process workers' state) is ever freed after the cluster closes: about 0.35 MiB a
cluster (RELIABILITY.md, "Soak").

- ``distributed.dashboard.scheduler.template_variables`` is memoized (``toolz.memoize``)
  in a plain dict keyed by the scheduler;
- ``distributed.core._expects_comm`` is ``functools.cache``'d over every server's
  bound handler methods, so each key holds its server.

:func:`plug` swaps in the same functions with caches that do not hold servers: a weak
mapping for the first (its values hold no reference back to the scheduler), and a key on
the handler's underlying function for the second (a bound method's signature is the
same for every instance of its class). It leaves a cache alone if distributed changed
its shape; ``tests/flows/test_daskleaks.py`` fails if a closed cluster is still held, which is
the signal to look again.

Upstream: not reported yet (no issue found in dask/distributed for either cache);
measured in RELIABILITY.md ("Soak"). Verified on distributed ``VERIFIED``;
``pyproject.toml`` keeps distributed below ``2026.9``, and ``tests/flows/test_patches.py``
fails on a newer distributed or when either cache is gone.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable
from typing import Any

#: The distributed release these replacements were checked against.
VERIFIED = "2026.8.0"

_PLUGGED = "_cfpipe_plugged"


def _expects_comm_by_function(original: Callable[[Callable[..., Any]], bool]) -> Any:
    cache: dict[Any, bool] = {}

    def expects_comm(func: Callable[..., Any]) -> bool:
        key = func.__func__ if isinstance(func, types.MethodType) else func
        try:
            return cache[key]
        except KeyError:
            cache[key] = result = original(func)
            return result

    setattr(expects_comm, _PLUGGED, True)
    return expects_comm


def plug() -> None:
    """Replace the two caches in this process (idempotent)."""
    from distributed import core
    from toolz import memoize

    dashboard: types.ModuleType | None
    try:
        from distributed.dashboard import scheduler as dashboard
    except ImportError:  # no bokeh: no dashboard, nothing memoized
        dashboard = None
    memoized = getattr(dashboard, "template_variables", None)
    wrapped = getattr(memoized, "__wrapped__", None)
    if dashboard is not None and wrapped is not None and not getattr(memoized, _PLUGGED, False):
        weak = memoize(wrapped, cache=weakref.WeakKeyDictionary())
        setattr(weak, _PLUGGED, True)
        dashboard.template_variables = weak  # type: ignore[attr-defined]

    cached = core._expects_comm
    wrapped = getattr(cached, "__wrapped__", None)
    if wrapped is not None and not getattr(cached, _PLUGGED, False):
        core._expects_comm = _expects_comm_by_function(wrapped)
