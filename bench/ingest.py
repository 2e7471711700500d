"""Ingest benchmark: `cfpipe ingest` end to end (Prefect flow on a Dask LocalCluster)
next to a bare pyarrow.csv parse of the same bytes, on data from `cfpipe synth netflix`.

    .venv/bin/python bench/ingest.py --ratings 10000000
    .venv/bin/python bench/ingest.py --ratings 100480507 --users 480189   # full Netflix shape

Writes the "Ingest" section of BENCHMARKS.md. Generated data is cached in bench/out/.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._report import PeakRSS, machine, write_section  # noqa: E402
from cflib.config import IngestConfig, SynthConfig  # noqa: E402
from cflib.ingest.source import find_source, plan_shards  # noqa: E402
from cflib.sources import netflix  # noqa: E402
from cflib.synth import generate_netflix  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def bare_parse(shards: list[list[str]]) -> tuple[int, float]:
    """Rows and seconds of the floor: read the bodies, one pyarrow.csv parse per shard."""
    opts = pacsv.ReadOptions(column_names=["user", "rating", "date"])
    types = {"user": pa.int64(), "rating": pa.int8(), "date": pa.date32()}
    rows, start = 0, time.perf_counter()
    for shard in shards:
        bodies = []
        for path in shard:
            data = Path(path).read_bytes()
            bodies.append(data[data.index(b"\n") + 1 :])
        table = pacsv.read_csv(
            io.BytesIO(b"".join(bodies)),
            read_options=opts,
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
        rows += table.num_rows
    return rows, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=10_000_000)
    parser.add_argument("--movies", type=int, default=17_770)
    parser.add_argument("--users", type=int, default=480_189)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-mb", type=float, default=64)
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    synth = SynthConfig(movies=args.movies, users=args.users, ratings=args.ratings, seed=0)
    source = OUT / f"netflix-{args.movies}x{args.users}x{args.ratings}"
    timing = source.with_name(source.name + ".synth.json")  # Kept with the cached data.
    if not (source / "truth.json").is_file():
        shutil.rmtree(source, ignore_errors=True)
        start = time.perf_counter()
        generate_netflix(source, synth)
        timing.write_text(json.dumps({"seconds": time.perf_counter() - start}))
    synth_s = json.loads(timing.read_text())["seconds"] if timing.is_file() else None
    files = netflix.list_training_files(source)
    size = sum(p.stat().st_size for p in files)

    shards = [s.files for s in plan_shards(find_source(source), int(args.shard_mb * 1e6))]
    for path in files:  # Warm the page cache, so that neither measure pays for the disk.
        path.read_bytes()
    rows, bare_s = bare_parse(shards)

    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.ingest import run_ingest

    data = OUT / f"data-{args.ratings}"
    cfg = IngestConfig(n_workers=args.workers, shard_mb=args.shard_mb, force=True)
    start = time.perf_counter()
    server = SubprocessASGIServer()
    server.start()  # Started here so that its start-up is not counted as ingest time.
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        server_s = time.perf_counter() - start
        with PeakRSS() as rss:
            start = time.perf_counter()
            manifest = run_ingest(str(source), str(data), cfg)
            ingest_s = time.perf_counter() - start
    total = sum(s["rows"] for s in manifest["splits"].values())
    assert total == rows == args.ratings, (total, rows, args.ratings)
    # LocalCluster workers are multiprocessing children started by spawn_main.
    workers = [v for v in rss.peaks.values() if "spawn_main" in v[0]]
    main_rss = rss.peaks[os.getpid()][1]
    worker_peak = max((v[1] for v in workers), default=0)

    cmd = " ".join(["python", "bench/ingest.py", *sys.argv[1:]])
    lines = [
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}  ",
        f"Data: `cfpipe synth netflix` {args.movies:,} movies, {args.users:,} users, "
        f"{rows:,} ratings, {size / 1e6:,.0f} MB in {len(files):,} files"
        + (f" (generated in {synth_s:.0f} s)" if synth_s else ""),
        "",
        "| measure | value |",
        "|---|---:|",
        f"| bare pyarrow.csv parse: read, strip headers, one parse per {args.shard_mb:g} MB "
        f"shard ({len(shards)} shards) | "
        f"{rows / bare_s / 1e6:.2f} M ratings/s ({bare_s:.1f} s) |",
        f"| `cfpipe ingest` flow end to end, {args.workers} Dask workers | "
        f"{rows / ingest_s / 1e6:.2f} M ratings/s ({ingest_s:.1f} s) |",
        f"| end to end / bare parse | {bare_s / ingest_s * 100:.0f}% |",
        f"| peak RSS per Dask worker | {worker_peak / 2**30:.2f} GiB |",
        f"| peak RSS of the flow process | {main_rss / 2**30:.2f} GiB |",
        f"| temporary Prefect server start (not in the figures above) | {server_s:.1f} s |",
        "",
        "Both measures start with the source files in the page cache. End to end covers "
        "parsing, the dense id maps, the hash split, the shuffle into parts and the "
        "manifest: every rating is read twice and written twice after the parse.",
    ]
    write_section(f"Ingest, {rows:,} ratings", "\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({"rows": rows, "bare_s": bare_s, "ingest_s": ingest_s}))


if __name__ == "__main__":
    main()
