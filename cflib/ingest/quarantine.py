"""Repeated ratings, the quarantine and the per-file accounting of an ingest.

A user who rates the same item twice is caught where all copies of the pair first meet:
a bucket (copies share a split and a bucket, both chosen by the pair) or, for temporal
splits, a user bucket. Rows carry no line numbers, so the bucket keeps the first copy in
source order (pieces are concatenated in shard order and keep each shard's row order)
and records the later ones by shard; a later step re-reads only those shards line by
line to name each dropped copy's file and line. With ``--strict`` the first repeat
stops the ingest, naming both lines.

The scratch files (tallies, bad lines, repeats, located repeats) are named by
``ScratchLayout``; ``accounting`` gathers them into ``quarantine.parquet`` and the
manifest's per-file accounting.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cflib import schema
from cflib.data.manifest import FileAccount
from cflib.errors import DataFormatError, DatasetError
from cflib.ingest import hashing
from cflib.ingest.plan import Plan, load_plan
from cflib.ingest.scratch import ScratchLayout
from cflib.sources.accounting import QUARANTINE, BadLine, Report, Tally
from cflib.sources.formats import Shard, SourceVariant

_REPEAT_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.int32()),
        pa.field("raw_user", pa.int64()),
        pa.field("raw_item", pa.int64()),
        pa.field("rank", pa.int32()),  # copies of the pair in this shard before this one
    ]
)


def save_report(report: Report, tally_file: Path, bad_file: Path) -> None:
    """Write a report's tallies and (if any) its bad lines."""
    tallies = {path: vars(t) for path, t in report.tallies.items()}
    tally_file.write_text(json.dumps(tallies))
    if report.bad:
        pq.write_table(report.bad_table(), bad_file)


def shard_of_rows(pieces: Sequence[Path], rows: Sequence[int]) -> np.ndarray:
    """The shard index of each row of shards' pieces concatenated in order."""
    shards = [ScratchLayout.piece_shard(p) for p in pieces]
    return np.repeat(np.asarray(shards, np.int32), np.asarray(rows, np.int64))


def later_copies(raw_user: np.ndarray, raw_item: np.ndarray) -> np.ndarray:
    """A mask of the rows whose (user, item) pair an earlier row already holds."""
    if raw_user.size < 2:
        return np.zeros(raw_user.size, bool)
    if raw_user.min() >= 0 and raw_user.max() < 2**32:
        order = np.argsort(hashing.pair_keys(raw_item, raw_user), kind="stable")
    else:  # pair keys would truncate the user id
        order = np.lexsort((raw_user, raw_item))  # lexsort is stable too
    same = (raw_user[order][1:] == raw_user[order][:-1]) & (
        raw_item[order][1:] == raw_item[order][:-1]
    )
    mask = np.zeros(raw_user.size, bool)
    mask[order[1:][same]] = True
    return mask


def _ranks(users: np.ndarray, items: np.ndarray, shards: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows hold its (user, item) pair in its shard."""
    n = users.size
    order = np.lexsort((np.arange(n), shards, users, items))
    u, i, s = users[order], items[order], shards[order]
    start = np.r_[True, (u[1:] != u[:-1]) | (i[1:] != i[:-1]) | (s[1:] != s[:-1])]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    ranks = np.empty(n, np.int32)
    ranks[order] = np.arange(n) - first
    return ranks


def drop_repeats(
    table: pa.Table,
    shards: np.ndarray,
    *,
    variant: SourceVariant,
    plan_shards: Sequence[Shard],
    strict: bool,
    record: Path,
) -> pa.Table:
    """``table`` without the later copies of repeated pairs, recorded to ``record``.

    Raises:
        DataFormatError: ``strict`` and a pair repeats; it names both lines.
    """
    raw_user = table.column("raw_user").to_numpy()
    raw_item = table.column("raw_item").to_numpy()
    later = later_copies(raw_user, raw_item)
    if not later.any():
        return table
    if strict:
        _raise_first(variant, plan_shards, raw_user, raw_item, shards, later)
    keys = hashing.pair_keys(raw_item, raw_user)
    # Every copy of a repeated pair (and, were ids past 2**32, maybe a few others).
    rows = np.flatnonzero(np.isin(keys, np.unique(keys[later])))
    users, items, where = raw_user[rows], raw_item[rows], shards[rows]
    ranks = _ranks(users, items, where)
    dropped = later[rows]
    repeats = pa.Table.from_arrays(
        [
            pa.array(where[dropped], pa.int32()),
            pa.array(users[dropped], pa.int64()),
            pa.array(items[dropped], pa.int64()),
            pa.array(ranks[dropped], pa.int32()),
        ],
        schema=_REPEAT_SCHEMA,
    )
    record.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(repeats, record)
    return table.filter(pa.array(~later))


def _raise_first(
    variant: SourceVariant,
    plan_shards: Sequence[Shard],
    raw_user: np.ndarray,
    raw_item: np.ndarray,
    shards: np.ndarray,
    later: np.ndarray,
) -> NoReturn:
    """Name the first repeated pair's first two lines (in the order rows are listed)."""
    row = int(np.argmax(later))
    user, item = int(raw_user[row]), int(raw_item[row])
    copies = np.flatnonzero((raw_user == user) & (raw_item == item))
    found: list[tuple[str, int]] = []
    for shard in sorted({int(shards[i]) for i in copies[:2]}):
        found += [
            (path, lineno)
            for path, lineno, _, u, i in variant.shard_lines(plan_shards[shard])
            if u == user and i == item
        ]
    (first_path, first_line), (path, lineno) = found[0], found[1]
    where = f"line {first_line}" + ("" if first_path == path else f" of {first_path}")
    raise DataFormatError(path, lineno, f"user {user} already rated item {item} on {where}")


def repeat_jobs(layout: ScratchLayout) -> list[tuple[int, pa.Table]]:
    """The recorded repeats grouped by shard: (shard, its repeats)."""
    files = layout.repeat_files()
    if not files:
        return []
    table = pa.concat_tables(pq.read_table(f) for f in files)
    shards = table.column("shard").to_numpy()
    return [(int(s), table.filter(pa.array(shards == s))) for s in np.unique(shards)]


def locate_repeats(stage: str, index: int, repeats: pa.Table) -> dict[str, int]:
    """Find the lines of one shard's dropped copies; write them as quarantine rows.

    Returns the number of dropped copies per file (they move from kept to quarantined).
    """
    plan = load_plan(stage)
    shard = plan.shards[index]
    return _locate(plan.source_variant, shard, index, repeats, plan.layout)


def _locate(
    variant: SourceVariant, shard: Shard, index: int, repeats: pa.Table, layout: ScratchLayout
) -> dict[str, int]:
    """``locate_repeats`` of one shard with its plan read."""
    wanted: dict[tuple[int, int], set[int]] = {}
    for user, item, rank in zip(
        repeats.column("raw_user").to_pylist(),
        repeats.column("raw_item").to_pylist(),
        repeats.column("rank").to_pylist(),
        strict=True,
    ):
        wanted.setdefault((user, item), set()).add(rank)
    seen: dict[tuple[int, int], int] = {}
    bad: list[BadLine] = []
    for path, lineno, line, user, item in variant.shard_lines(shard):
        ranks = wanted.get((user, item))
        if ranks is None:
            continue
        rank = seen.get((user, item), 0)
        seen[(user, item)] = rank + 1
        if rank in ranks:
            reason = f"user {user} already rated item {item} (the first rating is kept)"
            bad.append(BadLine(path, lineno, line, reason))
    if len(bad) != repeats.num_rows:
        raise DatasetError(
            f"shard {index}: found {len(bad)} of {repeats.num_rows} repeated ratings' lines"
        )
    report = Report(bad=bad)
    pq.write_table(report.bad_table(), layout.located(index))
    moved: dict[str, int] = {}
    for b in bad:
        moved[b.file] = moved.get(b.file, 0) + 1
    return moved


def collect(
    layout: ScratchLayout, moved: Iterable[dict[str, int]]
) -> tuple[dict[str, Tally], pa.Table]:
    """Every file's final tally and the whole quarantine, sorted by file and line."""
    tallies: dict[str, Tally] = {}
    for path in layout.tally_files():
        for file, counts in json.loads(path.read_text()).items():
            tallies.setdefault(file, Tally()).add(Tally(**counts))
    for counts in moved:
        for file, n in counts.items():
            tallies[file].kept -= n
            tallies[file].quarantined += n
    bad_files = layout.bad_files()
    if bad_files:
        table = pa.concat_tables(pq.read_table(f) for f in bad_files)
        table = table.sort_by([("file", "ascending"), ("line", "ascending")])
    else:
        table = QUARANTINE.empty_table()
    return tallies, table


def check_balanced(
    tallies: dict[str, Tally], quarantine: pa.Table, rows: int, ratings: set[str]
) -> None:
    """Refuse a dataset whose accounting does not add up (a bug, never bad input)."""
    for file, t in tallies.items():
        if not t.balanced():
            raise DatasetError(f"{file}: accounting does not add up: {vars(t)}")
    if sum(t.quarantined for t in tallies.values()) != quarantine.num_rows:
        raise DatasetError("the quarantine does not match the per-file counts")
    kept = sum(t.kept for f, t in tallies.items() if f in ratings)
    if kept != rows:
        raise DatasetError(f"ratings kept per file ({kept}) differ from the rows written ({rows})")


def accounting(plan: Plan, rows: int, moved: list[dict[str, int]]) -> list[FileAccount]:
    """Per-file tallies, checked against the ``rows`` written; writes ``quarantine.parquet``.

    ``moved`` is what ``locate_repeats`` returned for each shard.
    """
    root = plan.stage_path
    tallies, bad = collect(plan.layout, moved)
    rating_files = {f for shard in plan.shards for f in shard.files}
    rating_files |= {shard.path for shard in plan.shards if shard.path is not None}
    check_balanced(tallies, bad, rows, rating_files)
    source = Path(plan.source)
    side = (plan.probe, "probe"), (plan.qualifying, "qualifying"), (plan.items, "items")
    roles = {path: role for path, role in (*side, (plan.users, "users")) if path is not None}

    def rel(path: str) -> str:
        return Path(path).relative_to(source).as_posix()

    bad = bad.set_column(0, "file", pa.array([rel(f) for f in bad.column("file").to_pylist()]))
    pq.write_table(bad, root / schema.QUARANTINE_FILE)
    return [
        FileAccount(file=rel(path), role=roles.get(path, "ratings"), **vars(tally))
        for path, tally in sorted(tallies.items(), key=lambda kv: rel(kv[0]))
    ]
