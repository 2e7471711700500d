"""N(u) as CSR: every split and the qualifying pairs, streamed, cached by fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cflib import schema
from cflib.config import IngestConfig
from cflib.data import implicit
from cflib.data.manifest import load_manifest
from cflib.errors import DatasetError
from cflib.ingest.parallel import ingest_local
from tests.conftest import QUALIFYING, write_netflix


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-written Netflix directory, plus a qualifying pair of an unknown user."""
    root = tmp_path_factory.mktemp("implicit")
    source = write_netflix(root / "netflix")
    qualifying = {**QUALIFYING, 1: ["99,2005-01-01"]}  # customer 99 rated nothing
    blocks = "".join(f"{m}:\n" + "".join(f"{x}\n" for x in xs) for m, xs in qualifying.items())
    (source / "qualifying.txt").write_text(blocks)
    ingest_local(source, root / "data", IngestConfig(validation_fraction=0.3))
    return root / "data"


def _pairs(data: Path) -> set[tuple[int, int]]:
    """Every (user, item) of every split and of the qualifying pairs with known ids."""
    pairs = set()
    for path in [*data.glob(f"{schema.RATINGS_DIR}/*/*.parquet"), data / schema.QUALIFYING_FILE]:
        table = pq.read_table(path, columns=["user", "item"]).drop_null()
        pairs |= set(zip(table["user"].to_pylist(), table["item"].to_pylist(), strict=True))
    return pairs


def test_csr_holds_every_split_and_the_qualifying_pairs(dataset: Path, tmp_path: Path) -> None:
    manifest = load_manifest(dataset)
    sets = implicit.build(dataset, manifest, tmp_path / "n")
    assert sets.offsets.dtype == np.int64 and sets.items.dtype == np.int32
    assert sets.n_users == manifest.n_users and sets.offsets[0] == 0
    got = {
        (u, int(i))
        for u in range(sets.n_users)
        for i in sets.items[sets.offsets[u] : sets.offsets[u + 1]]
    }
    assert len(sets.items) == len(got)  # no pair twice
    rated = sum(s.rows for s in manifest.splits.values())
    assert len(got) == rated + manifest.qualifying_rows - 1  # all but customer 99's pair
    assert got == _pairs(dataset)
    # The qualifying pairs are in: customer 60 (test split) also has movie 2 to predict.
    users = pq.read_table(dataset / schema.USER_MAP_FILE)["raw_user"].to_pylist()
    items = pq.read_table(dataset / schema.ITEM_MAP_FILE)["raw_item"].to_pylist()
    assert (users.index(60), items.index(2)) in got


def test_cached_in_the_dataset_by_fingerprint(dataset: Path, tmp_path: Path) -> None:
    manifest = load_manifest(dataset)
    first = implicit.load_or_build(dataset, manifest, tmp_path / "fallback")
    cached = dataset / implicit.CACHE_DIR / manifest.fingerprint[:16]
    assert sorted(p.name for p in cached.iterdir()) == [implicit.ITEMS_FILE, implicit.OFFSETS_FILE]
    stamp = (cached / implicit.ITEMS_FILE).stat().st_mtime_ns
    again = implicit.load_or_build(dataset, manifest, tmp_path / "fallback")
    assert (cached / implicit.ITEMS_FILE).stat().st_mtime_ns == stamp  # read, not rebuilt
    np.testing.assert_array_equal(again.items, first.items)
    assert not (tmp_path / "fallback").exists()
    assert not [p for p in (dataset / implicit.CACHE_DIR).iterdir() if p.name.startswith(".")]


def test_read_only_dataset_builds_in_the_fallback(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = load_manifest(dataset).model_copy(update={"fingerprint": "f" * 64})

    def read_only(final: Path, tag: str = "tmp") -> Path:
        raise PermissionError(13, "Permission denied", str(final.parent))

    monkeypatch.setattr(implicit, "staging_dir", read_only)
    (tmp_path / "fallback").mkdir()
    (tmp_path / "fallback" / "half-written").write_text("")  # a killed build's leftovers
    sets = implicit.load_or_build(dataset, manifest, tmp_path / "fallback")
    assert sorted(p.name for p in (tmp_path / "fallback").iterdir()) == [
        implicit.ITEMS_FILE, implicit.OFFSETS_FILE,
    ]  # fmt: skip
    assert len(sets.items) == len(_pairs(dataset))
    assert not (dataset / implicit.CACHE_DIR / ("f" * 16)).exists()


def test_an_id_out_of_range_names_the_file(dataset: Path, tmp_path: Path) -> None:
    manifest = load_manifest(dataset)
    small = manifest.model_copy(update={"n_items": 1})
    message = r"part-\d+\.parquet: column 'item' holds id \d+ .*outside 0\.\.0"
    with pytest.raises(DatasetError, match=message):
        implicit.build(dataset, small, tmp_path / "n")


def test_damaged_cache_is_named(dataset: Path, tmp_path: Path) -> None:
    manifest = load_manifest(dataset)
    implicit.build(dataset, manifest, tmp_path / "n")
    np.save(tmp_path / "n" / implicit.OFFSETS_FILE, np.array([0, 1], np.int64))
    with pytest.raises(DatasetError, match="offsets.npy: ends at 1, .*items.npy holds \\d+ items"):
        implicit.load(tmp_path / "n", manifest.n_items)
