"""The synthetic Netflix generator: exact sizes, determinism, probe/qualifying semantics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cflib.config import SynthConfig
from cflib.errors import ConfigError
from cflib.sources import netflix
from cflib.synth import TRUTH_FILE, generate_netflix

TINY = SynthConfig(movies=20, users=60, ratings=500, seed=3, rank=4, probe_fraction=0.1,
                   qualifying_fraction=0.05)  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


def _pairs(items: np.ndarray, users: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(items.tolist(), users.tolist(), strict=True))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "netflix"
    generate_netflix(out, TINY)
    return out


def test_layout_and_byte_determinism(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_netflix(again, TINY)
    files = _files(tiny)
    assert files == _files(again)
    expected = {f"training_set/mv_{m:07d}.txt" for m in range(1, 21)}
    expected |= {"probe.txt", "qualifying.txt", "movie_titles.txt", TRUTH_FILE}
    assert set(files) == expected
    other = tmp_path / "other"
    generate_netflix(other, TINY.model_copy(update={"seed": 4}))
    assert _files(other)["training_set/mv_0000001.txt"] != files["training_set/mv_0000001.txt"]


def test_ratings_parse_with_exact_count(tiny: Path) -> None:
    table = netflix.read_training_files(netflix.list_training_files(tiny))
    assert table.num_rows == TINY.ratings
    items, users = table.column("raw_item").to_numpy(), table.column("raw_user").to_numpy()
    assert len(_pairs(items, users)) == TINY.ratings  # no customer rates a movie twice
    assert np.array_equal(np.unique(items), np.arange(1, TINY.movies + 1))
    assert np.unique(users).size == TINY.users  # every customer rated something
    assert users.min() >= 1 and users.max() <= 2_649_429
    stars = table.column("rating").to_numpy()
    assert set(np.unique(stars).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    days = table.column("date").to_pylist()
    assert str(min(days)) >= "1999-11-11" and str(max(days)) <= "2005-12-31"


def test_probe_is_a_subset_and_qualifying_is_disjoint(tiny: Path) -> None:
    table = netflix.read_training_files(netflix.list_training_files(tiny))
    rated = _pairs(table.column("raw_item").to_numpy(), table.column("raw_user").to_numpy())
    probe = netflix.read_probe(tiny / netflix.PROBE_FILE)
    qual = netflix.read_qualifying(tiny / netflix.QUALIFYING_FILE)
    probe_pairs = _pairs(probe.column("raw_item").to_numpy(), probe.column("raw_user").to_numpy())
    qual_pairs = _pairs(qual.column("raw_item").to_numpy(), qual.column("raw_user").to_numpy())
    assert probe.num_rows > 0 and probe_pairs <= rated
    assert qual.num_rows > 0 and not qual_pairs & rated
    assert len(qual_pairs) == qual.num_rows


def test_truth_matches_files(tiny: Path) -> None:
    truth = json.loads((tiny / TRUTH_FILE).read_text())
    table = netflix.read_training_files(netflix.list_training_files(tiny))
    assert truth["n_ratings"] == TINY.ratings
    assert truth["n_probe"] == netflix.read_probe(tiny / netflix.PROBE_FILE).num_rows
    qual = netflix.read_qualifying(tiny / netflix.QUALIFYING_FILE)
    assert truth["n_qualifying"] == qual.num_rows
    assert truth["global_mean"] == pytest.approx(float(np.mean(table.column("rating"))))
    assert (truth["movies"], truth["users"]) == (TINY.movies, TINY.users)
    assert truth["config"] == TINY.model_dump()
    titles = netflix.read_movie_titles(tiny / netflix.TITLES_FILE)
    assert titles.column("raw_item").to_pylist() == list(range(1, TINY.movies + 1))


@pytest.mark.parametrize(("noise", "low", "high"), [(0.0, 0.2, 0.4), (0.8, 0.7, 0.9)])
def test_oracle_rmse_tracks_noise(tmp_path: Path, noise: float, low: float, high: float) -> None:
    cfg = SynthConfig(movies=50, users=2_000, ratings=20_000, seed=1, noise=noise)
    truth = generate_netflix(tmp_path / "n", cfg)
    # Noise-free, only rounding to stars is left: RMSE ~ sqrt(1/12) = 0.29. With noise 0.8,
    # sqrt(0.8**2 + 1/12) = 0.85, a little less after clipping to 1..5 stars.
    assert low < truth["oracle_rmse_all"] < high
    assert abs(truth["oracle_rmse_probe"] - truth["oracle_rmse_all"]) < 0.15
    assert 3.2 < truth["global_mean"] < 3.9
    assert truth["n_probe"] == pytest.approx(cfg.ratings * cfg.probe_fraction, rel=0.25)
    assert truth["n_qualifying"] == pytest.approx(cfg.ratings * cfg.qualifying_fraction, rel=0.25)


def test_dense_config_fills_the_matrix(tmp_path: Path) -> None:
    cfg = SynthConfig(movies=4, users=7, ratings=28, seed=2)
    truth = generate_netflix(tmp_path / "dense", cfg)
    table = netflix.read_training_files(netflix.list_training_files(tmp_path / "dense"))
    assert table.num_rows == 28 and truth["n_qualifying"] == 0
    assert np.bincount(table.column("raw_item").to_numpy()).tolist() == [0, 7, 7, 7, 7]


def test_progress_reaches_the_end(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_netflix(tmp_path / "p", TINY, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (TINY.movies, TINY.movies)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"movies": 3, "users": 4, "ratings": 13}, "--ratings 13 is more than"),
        ({"movies": 30, "users": 4, "ratings": 20}, "--ratings 20 is less than --movies 30"),
    ],
)
def test_impossible_sizes(tmp_path: Path, sizes: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_netflix(tmp_path / "x", SynthConfig(**sizes))
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_out_and_cleans_up_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=f"--out {out}: already exists and is not empty"):
        generate_netflix(out, TINY)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    def fail(done: int, total: int) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        generate_netflix(tmp_path / "new", TINY, progress=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
