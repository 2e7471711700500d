"""Running one ingest step over many shards or buckets: in this process, or on Dask.

A stage is one Prefect task; its fan-out is plain Dask futures on the flow's cluster.
Dask reschedules the work of a lost worker, and the workers need nothing but cflib:
no Prefect API, no per-shard task-run bookkeeping (which cost 0.3 s a shard here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from cflib.config import IngestConfig
from cflib.fsutil import exclusive, naming
from cflib.ingest import quarantine
from cflib.ingest.compact import Part, compact_bucket
from cflib.ingest.finalize import abort, finalize
from cflib.ingest.id_maps import IdMaps, build_id_maps
from cflib.ingest.parse import ParsedShard, parse_shard
from cflib.ingest.plan import load_plan, plan_ingest
from cflib.ingest.split import SplitDone, assign_temporal, split_shard

Progress = Callable[[int, int], None]


class Mapper(Protocol):
    """Runs ``fn(*args)`` for each tuple in ``jobs``; returns the results in job order."""

    def __call__(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]: ...


def serial_map(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
    """A Mapper that runs every job here, in order."""
    return [fn(*job) for job in jobs]


def dask_map(address: str, progress: Progress | None = None) -> Mapper:
    """A Mapper that runs jobs on the Dask scheduler at ``address``.

    ``progress(done, total)`` is called as jobs finish. The first failing job's
    exception is raised as is (Dask pickles it back), after the others are cancelled.
    """
    from distributed import Client, as_completed

    def run(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
        with Client(address, set_as_default=False) as client:
            futures = [client.submit(fn, *job, pure=False) for job in jobs]
            index = {future.key: i for i, future in enumerate(futures)}
            results: list[Any] = [None] * len(futures)
            try:
                # with_results raises the first failing job's own exception.
                finished = as_completed(futures, loop=client.loop, with_results=True)
                for done, (future, result) in enumerate(finished, 1):
                    results[index[future.key]] = result
                    if progress is not None:
                        progress(done, len(futures))
                return results
            except BaseException:
                client.cancel(futures)
                raise

    return run


@contextlib.contextmanager
def performance_report(address: str, path: Path) -> Iterator[None]:
    """Record the Dask scheduler at ``address`` while the block runs, and write its
    ``distributed.performance_report`` to ``path`` when the block ends without an error.

    The report covers every task the scheduler ran meanwhile, from any client (the
    ``dask_map`` clients included). It embeds Bokeh's JavaScript (about 1.7 MB), so it
    opens in a browser without a network. After an error nothing is written (the stage
    that would hold it is removed anyway).
    """
    from distributed import Client
    from distributed import performance_report as report

    with Client(address, set_as_default=False) as client, client.as_current():
        recorder = report(filename=str(path), mode="inline")
        recorder.__enter__()
        yield
        # Not in a finally: after an error (a cancelled run, a lost scheduler) there is
        # nothing worth asking the scheduler for.
        recorder.__exit__(None, None, None)


def parse_all(stage: str, mapper: Mapper) -> list[ParsedShard]:
    """Parse every shard of the plan."""
    shards = len(load_plan(stage).shards)
    return mapper(parse_shard, [(stage, i) for i in range(shards)])


def split_all(stage: str, ids: IdMaps, mapper: Mapper) -> list[SplitDone]:
    """Split every parsed shard into the buckets of each split.

    A temporal split takes a second round, over user buckets, once every shard has
    scattered its rows by user.
    """
    plan = load_plan(stage)
    done = mapper(split_shard, [(stage, i, ids) for i in range(len(plan.shards))])
    if plan.split == "temporal":
        buckets = ids.buckets.users
        done = mapper(assign_temporal, [(stage, b, ids) for b in range(buckets)])
    return done


def compact_all(stage: str, ids: IdMaps, mapper: Mapper) -> list[Part]:
    """Merge every bucket into one shuffled Parquet part."""
    jobs = [(stage, split, bucket) for split, bucket in ids.buckets.jobs()]
    return mapper(compact_bucket, jobs)


def locate_all(stage: str, mapper: Mapper) -> list[dict[str, int]]:
    """Name the lines of every dropped repeated rating, one job per shard that has some."""
    layout = load_plan(stage).layout
    jobs = [(stage, shard, repeats) for shard, repeats in quarantine.repeat_jobs(layout)]
    return mapper(quarantine.locate_repeats, jobs) if jobs else []


def ingest_local(source: str | Path, out: str | Path, cfg: IngestConfig) -> dict[str, Any]:
    """Run every ingest step in this process, in order (no Prefect, no Dask).

    The Prefect flow in ``flows/ingest.py`` runs the same stages with ``dask_map``.
    Returns the manifest as a dict, or ``{"up_to_date": True, ...}`` when ``out`` is.
    """
    with exclusive(Path(out).resolve(), "--out"), naming(Path(out)):
        plan = plan_ingest(source, out, cfg)
        if plan.up_to_date:
            return {"up_to_date": True, "out": plan.out, "fingerprint": plan.fingerprint}
        stage = str(plan.stage_path)
        try:
            ids = build_id_maps(stage, parse_all(stage, serial_map))
            split_all(stage, ids, serial_map)
            parts = compact_all(stage, ids, serial_map)
            return finalize(stage, ids, parts, locate_all(stage, serial_map))
        except BaseException:
            abort(stage)
            raise
