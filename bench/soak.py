"""Soak: the whole pipeline flow, again and again in one process, on data that changes
each time (one more malformed line, one more rating), for a configurable time.

    .venv/bin/python bench/soak.py --minutes 10

Each iteration edits the source, so every stage really runs (ingest, train, evaluate,
publish); it then checks the accounting (every line of every file accounted for, the
quarantine holding exactly the malformed lines written so far) and records the flow
process's RSS and open file descriptors, and the largest RSS any of its child processes
reached (the TensorFlow stages run in children; sampled every 0.2 s). Memory and
descriptors should stay flat. Writes the "Soak" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import machine, write_section  # noqa: E402
from cflib.config import PipelineConfig, SynthConfig, TrainConfig  # noqa: E402
from cflib.synth import generate_netflix  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "soak"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
        "keepcost".split()
    ]


def _heaps() -> tuple[int, int, int]:
    """Bytes in use in glibc's heap, bytes it holds from the system, and bytes allocated
    from Arrow's memory pool (its own allocator): which layer a growth of RSS is in."""
    import pyarrow as pa

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.arena + info.hblkhd, pa.total_allocated_bytes()


class ChildPeak(threading.Thread):
    """The largest RSS of any child process of this one but ``skip``, sampled in the
    background."""

    def __init__(self, me: psutil.Process, skip: int | None) -> None:
        super().__init__(daemon=True)
        self.me, self.skip, self.peak, self.stop = me, skip, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for child in self.me.children(recursive=True):
                if child.pid == self.skip:
                    continue
                try:
                    self.peak = max(self.peak, child.memory_info().rss)
                except psutil.Error:  # it exited meanwhile
                    pass


class Tracer:
    """Where the flow process's memory goes between run 3 and the last run: Python
    allocations by line (tracemalloc) and live objects by type."""

    def __init__(self) -> None:
        import tracemalloc

        tracemalloc.start(12)
        self.first: tracemalloc.Snapshot | None = None
        self.types: Counter[str] = Counter()
        self.last_run = 0

    @staticmethod
    def _types() -> Counter[str]:
        gc.collect()
        return Counter(type(o).__qualname__ for o in gc.get_objects())

    def after_run(self, i: int) -> None:
        import tracemalloc

        self.last_run = i
        if i == 3:
            self.first, self.types = tracemalloc.take_snapshot(), self._types()

    def report(self) -> None:
        import tracemalloc

        if self.first is None:
            print("--trace needs at least 3 runs")
            return
        gc.collect()
        last = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        print(f"traced now {traced / 2**20:.1f} MiB (peak {peak / 2**20:.1f} MiB)")
        print(f"allocation growth, run 3 -> run {self.last_run}, by traceback:")
        for stat in last.compare_to(self.first, "traceback")[:12]:
            print(f"  {stat.size_diff / 2**10:+.0f} KiB in {stat.count_diff:+d} blocks")
            for line in stat.traceback.format(limit=8):
                print("     ", line)
        grown = self._types() - self.types
        print("live objects grown, by type:", grown.most_common(25))


def _edit(source: Path, i: int) -> None:
    """One malformed line and one new rating, in a different movie file each time."""
    files = sorted((source / "training_set").glob("mv_*.txt"))
    with files[i % len(files)].open("a") as fh:
        fh.write(f"soak-{i},9,2005-01-01\n")  # a non-numeric customer: quarantined
        fh.write(f"{900_000 + i},4,2005-06-0{1 + i % 9}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--ratings", type=int, default=100_000)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="diagnose growth: tracemalloc and live-object counts, run 3 against the last",
    )
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    shutil.rmtree(OUT, ignore_errors=True)
    source, work = OUT / "source", OUT / "work"
    generate_netflix(source, SynthConfig(movies=200, users=2_000, ratings=args.ratings))
    cfg = PipelineConfig(train=TrainConfig(epochs=2, batch_size=4096))

    from prefect.logging.handlers import APILogHandler
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from cflib.data.manifest import load_manifest
    from flows.pipeline import PipelineParams, pipeline_flow

    server = SubprocessASGIServer()
    server.start(timeout=120)
    me = psutil.Process()
    children = ChildPeak(me, skip=server.server_process.pid if server.server_process else None)
    children.start()
    samples: list[tuple[float, int, int]] = []  # seconds, RSS, open fds after each run
    heaps: list[tuple[int, int, int]] = []  # glibc in use, glibc held, Arrow, after each run
    problems: list[str] = []
    start = time.monotonic()
    tracer = Tracer() if args.trace else None
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        i = 0
        while time.monotonic() - start < args.minutes * 60:
            i += 1
            _edit(source, i)
            result = pipeline_flow(PipelineParams(source=str(source), work=str(work), config=cfg))
            manifest = load_manifest(result["data"])
            bad = [
                a
                for a in manifest.accounting
                if not a.lines == a.kept + a.headers + a.blank + a.quarantined
            ]
            if bad or manifest.quarantined != i:
                problems.append(f"run {i}: quarantined {manifest.quarantined}, unbalanced {bad}")
            kept = sum(a.kept for a in manifest.accounting if a.role == "ratings")
            if kept != sum(s.rows for s in manifest.splits.values()):
                problems.append(f"run {i}: kept {kept} != rows")
            samples.append((time.monotonic() - start, me.memory_info().rss, _open_fds()))
            heaps.append(_heaps())
            if tracer is not None:
                tracer.after_run(i)
            print(
                f"run {i}: {samples[-1][0]:.0f} s, RSS {samples[-1][1] / 2**20:.0f} MiB, "
                f"{samples[-1][2]} fds, glibc heap {heaps[-1][0] / 2**20:.0f} of "
                f"{heaps[-1][1] / 2**20:.0f} MiB in use, Arrow {heaps[-1][2] / 2**20:.1f} MiB, "
                f"test RMSE {result['metrics']['rmse']:.4f}",
                flush=True,
            )
        APILogHandler().flush()  # send the last runs' logs before the server goes
    server.stop()
    children.stop.set()
    if tracer is not None:
        tracer.report()
        return

    rss = [s[1] / 2**20 for s in samples]
    fds = [s[2] for s in samples]
    half = len(samples) // 2

    def mib(n: int) -> str:
        return f"{n / 2**20:.0f}"

    lines = [
        f"Command: `python bench/soak.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {machine()}  ",
        f"Data: `cfpipe synth netflix` 200 movies, 2,000 users, {args.ratings:,} ratings; each "
        "run appends one malformed line and one rating, so every stage runs again.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| pipeline runs (ingest, train 2 epochs, evaluate, publish) | {len(samples)} in "
        f"{samples[-1][0] / 60:.1f} min |",
        f"| flow process RSS after run 1 / after the last run / max | {rss[0]:.0f} / "
        f"{rss[-1]:.0f} / {max(rss):.0f} MiB |",
        f"| RSS growth over the second half of the runs | "
        f"{(rss[-1] - rss[half]) if half else 0:+.0f} MiB |",
        f"| glibc heap in use after run 1 / after the last run | {mib(heaps[0][0])} / "
        f"{mib(heaps[-1][0])} MiB |",
        f"| glibc heap held from the system after run 1 / after the last run | "
        f"{mib(heaps[0][1])} / {mib(heaps[-1][1])} MiB |",
        f"| Arrow memory pool allocated after run 1 / after the last run | "
        f"{mib(heaps[0][2])} / {mib(heaps[-1][2])} MiB |",
        f"| open file descriptors after run 1 / after the last run / max | {fds[0]} / "
        f"{fds[-1]} / {max(fds)} |",
        f"| largest RSS of a child process (a TensorFlow stage or a Dask worker) | "
        f"{children.peak / 2**20:.0f} MiB |",
        f"| runs whose accounting or quarantine did not hold | {len(problems)} |",
        "",
        "Flow process RSS after each run (MiB): " + ", ".join(f"{r:.0f}" for r in rss),
    ]
    write_section("Soak", "\n".join(lines))
    print("\n".join(lines))
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
