"""bench/_peers.py: the export is cfpipe's split row for row, and each peer adapter fits
and scores sanely on a tiny planted dataset (Surprise and LIBMF: the `bench` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from bench._peers import (
    PEER_KEYS,
    Rows,
    export_splits,
    load_export,
    peer,
    read_split,
    rmse,
    run_peer,
)
from cflib import schema
from cflib.config import SynthConfig
from cflib.data.manifest import load_manifest
from tests._artifacts import ingest_synth

# Dense and low-noise, so that a fitted model is far from the global mean on 1,000 test rows.
SYNTH = SynthConfig(movies=40, users=250, ratings=10_000, rank=3, noise=0.3, probe_fraction=0.1)
MISSING = [m for m in ("surprise", "libmf") if importlib.util.find_spec(m) is None]
needs_extra = pytest.mark.skipif(
    bool(MISSING),
    reason=f"{', '.join(MISSING)} not installed: the `bench` extra "
    "(pip install -c constraints.txt -e '.[bench]', or make bench)",
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted dataset ingested by cfpipe, and its export."""
    root = tmp_path_factory.mktemp("peers")
    data = ingest_synth(root, SYNTH, "peers")
    export_splits(data, root / "export")
    return data, root / "export"


def test_the_export_holds_each_split_row_for_row(dataset: tuple[Path, Path]) -> None:
    data, export = dataset
    manifest = load_manifest(data)
    counts = export_splits(data, export)  # a second call finds the export up to date
    assert counts == {s: manifest.splits[s].rows for s in schema.SPLITS}
    assert counts["test"] > 500 and counts["validation"] > 200
    for split in schema.SPLITS:
        written, read = load_export(export, split), read_split(data, split)
        for column in ("user", "item", "rating"):
            np.testing.assert_array_equal(getattr(written, column), getattr(read, column))
        assert written.user.dtype == np.int32 and written.rating.dtype == np.float32


def test_rmse_clips_to_the_rating_scale() -> None:
    true = np.array([1.0, 5.0, 3.0])
    assert rmse(np.array([-2.0, 9.0, 4.0]), true) == pytest.approx(np.sqrt(1 / 3))


def test_an_unknown_peer_is_named() -> None:
    with pytest.raises(ValueError, match="Received: `key` = 'svd'"):
        peer("svd")


def test_rows_join_in_order() -> None:
    a = Rows(np.array([1], np.int32), np.array([2], np.int32), np.array([3.0], np.float32))
    b = Rows(np.array([4], np.int32), np.array([5], np.int32), np.array([1.0], np.float32))
    joined = Rows.join(a, b)
    assert joined.user.tolist() == [1, 4] and joined.rating.tolist() == [3.0, 1.0]


@needs_extra
@pytest.mark.parametrize("key", PEER_KEYS)
def test_each_peer_fits_train_and_validation_and_beats_the_mean(
    dataset: tuple[Path, Path], key: str
) -> None:
    data, export = dataset
    manifest = load_manifest(data)
    test = load_export(export, "test")
    mean = float(
        Rows.join(load_export(export, "train"), load_export(export, "validation")).rating.mean()
    )
    global_mean = rmse(np.full(len(test), mean), test.rating)

    result = run_peer(key, export)

    rows = manifest.splits
    assert result["train_rows"] == rows["train"].rows + rows["validation"].rows
    assert result["test_rows"] == rows["test"].rows
    # Every peer learns per-user and per-item structure: well below the global mean, above zero
    # (the planted noise is 0.3 before rounding to whole stars).
    assert 0.2 < result["rmse"] < 0.9 * global_mean, (result["rmse"], global_mean)
    assert result["fit_seconds"] >= 0 and result["prepare_seconds"] >= 0
    assert result["cpu_seconds"] > 0  # the fit did work on this process's threads
