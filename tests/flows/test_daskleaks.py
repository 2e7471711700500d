"""A closed in-process Dask cluster is freed (flows.patches.dask_caches)."""

from __future__ import annotations

import gc
import weakref

from distributed import Client, LocalCluster

from flows.patches import dask_caches


def _one_cluster() -> list[weakref.ref[object]]:
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        assert client.submit(sum, [1, 2]).result() == 3
        assert cluster.scheduler is not None
        # The dashboard is up, so its template variables were memoized.
        assert client.scheduler_info()["services"].get("dashboard")
        servers: list[object] = [cluster.scheduler, *cluster.workers.values()]
        return [weakref.ref(s) for s in servers]


def test_closed_cluster_scheduler_and_workers_are_freed() -> None:
    dask_caches.plug()
    dask_caches.plug()  # idempotent
    refs = _one_cluster() + _one_cluster()
    gc.collect()
    assert len(refs) == 4
    assert [r() for r in refs] == [None] * 4
