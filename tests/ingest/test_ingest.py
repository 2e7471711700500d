"""Ingest on tiny hand-written Netflix directories, without Prefect or Dask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cflib import schema
from cflib.config import IngestConfig
from cflib.data.manifest import load_manifest
from cflib.errors import ConfigError, DataFormatError, DatasetError, SourceError
from cflib.ingest.parallel import ingest_local
from tests.conftest import MOVIES, PROBE, held_elsewhere, write_netflix

N_RATINGS = sum(len(v) for v in MOVIES.values())


def _ratings(out: Path) -> dict[str, dict[tuple[int, int], float]]:
    table = ds.dataset(out / schema.RATINGS_DIR, partitioning="hive").to_table()
    result: dict[str, dict[tuple[int, int], float]] = {s: {} for s in schema.SPLITS}
    for row in table.to_pylist():
        result[row["split"]][(row["raw_item"], row["raw_user"])] = row["rating"]
    return result


def test_ingest_netflix_counts_ids_and_splits(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    manifest = ingest_local(netflix_dir, out, IngestConfig(validation_fraction=0.3))
    assert manifest["n_users"] == 6 and manifest["n_items"] == 3
    rows = {k: v["rows"] for k, v in manifest["splits"].items()}
    assert sum(rows.values()) == N_RATINGS
    assert rows["test"] == sum(len(v) for v in PROBE.values())

    by_split = _ratings(out)
    assert set(by_split["test"]) == {(m, u) for m, us in PROBE.items() for u in us}
    assert by_split["test"][(3, 60)] == 2.0
    assert (
        len(by_split["train"]) == rows["train"]
        and len(by_split["validation"]) == rows["validation"]
    )

    user_map = pq.read_table(out / schema.USER_MAP_FILE)
    users = user_map.column("raw_user").to_pylist()
    assert users == [10, 20, 30, 40, 50, 60]
    assert user_map.schema == schema.USER_MAP and user_map.column("gender").null_count == 6
    items = pq.read_table(out / schema.ITEM_MAP_FILE).to_pylist()
    assert [i["raw_item"] for i in items] == [1, 2, 3]
    assert items[1] == {
        "raw_item": 2,
        "year": None,
        "title": "Isle of Man TT, 2004 Review",
        "genres": [],
    }
    assert items[2]["title"] == "Caf\xe9 Noir"

    table = ds.dataset(out / schema.RATINGS_DIR, partitioning="hive").to_table()
    for u, raw in zip(table["user"].to_pylist(), table["raw_user"].to_pylist(), strict=True):
        assert users[u] == raw
    qualifying = pq.read_table(out / schema.QUALIFYING_FILE).to_pylist()
    assert [(q["raw_item"], q["raw_user"], q["user"]) for q in qualifying] == [
        (2, 20, 1),
        (2, 60, 5),
        (3, 10, 0),
    ]
    loaded = load_manifest(out)
    assert loaded.global_mean == pytest.approx(
        loaded.splits["train"].rating_sum / loaded.splits["train"].rows
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rerun_is_a_no_op_and_force_rebuilds(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    first = ingest_local(netflix_dir, out, IngestConfig())
    created = json.loads((out / schema.MANIFEST_FILE).read_text())["created_at"]
    again = ingest_local(netflix_dir, out, IngestConfig())
    assert again == {
        "up_to_date": True,
        "out": str(out.resolve()),
        "fingerprint": first["fingerprint"],
    }
    assert json.loads((out / schema.MANIFEST_FILE).read_text())["created_at"] == created
    rebuilt = ingest_local(netflix_dir, out, IngestConfig(force=True))
    assert rebuilt["splits"] == first["splits"]
    changed = ingest_local(netflix_dir, out, IngestConfig(seed=1))
    assert changed["fingerprint"] != first["fingerprint"]


def test_output_does_not_depend_on_shard_size(netflix_dir: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    many = tmp_path / "many"
    ingest_local(netflix_dir, one, IngestConfig(shard_mb=1e-6, bucket_rows=3))
    ingest_local(netflix_dir, many, IngestConfig(shard_mb=64, bucket_rows=3))
    names = sorted(p.relative_to(one) for p in one.rglob("*.parquet"))
    assert names == sorted(p.relative_to(many) for p in many.rglob("*.parquet"))
    assert len([n for n in names if "split=train" in str(n)]) > 1
    for name in names:
        assert (one / name).read_bytes() == (many / name).read_bytes(), name


def test_train_parts_are_shuffled_across_movies(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    movies = {
        m: [
            f"{u},{rng.integers(1, 6)},2005-01-01" for u in rng.choice(5000, 200, replace=False) + 1
        ]
        for m in range(1, 21)
    }
    src = write_netflix(tmp_path / "src", movies, extras=False)
    ingest_local(src, tmp_path / "data", IngestConfig(bucket_rows=1000))
    part = pq.read_table(tmp_path / "data" / schema.split_dir("train") / "part-00000.parquet")
    first = part.column("raw_item").to_numpy()[:200]
    assert len(np.unique(first)) > 10  # Not one movie after another, as in the source files.


def test_malformed_line_names_file_and_line_and_leaves_nothing(tmp_path: Path) -> None:
    movies = {**MOVIES, 2: ["10,4,2003-01-01", "30,9,2004-02-02"]}
    src = write_netflix(tmp_path / "src", movies)
    out = tmp_path / "data"
    with pytest.raises(DataFormatError) as err:
        ingest_local(src, out, IngestConfig(strict=True))
    assert err.value.path.endswith("mv_0000002.txt") and err.value.lineno == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_failed_rebuild_keeps_previous_dataset(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig())
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = netflix_dir / "training_set" / "mv_0000003.txt"
    bad.write_text(bad.read_text() + "70,3\n")
    with pytest.raises(DataFormatError):
        ingest_local(netflix_dir, out, IngestConfig(strict=True))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "netflix"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is empty"),
        (lambda p: (p.mkdir(), (p / "u.txt").write_text("x")), "no known source format"),
    ],
)
def test_bad_source_directories(tmp_path: Path, setup, message: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    setup(src)
    with pytest.raises(SourceError, match=message):
        ingest_local(src, tmp_path / "data", IngestConfig())
    assert not (tmp_path / "data").exists()


def test_temporal_split_takes_each_users_latest(tmp_path: Path) -> None:
    # User 7 rates 8 movies on days 1..8, user 9 rates 2 (too few for a test rating).
    movies = {m: [f"7,3,2005-01-0{m}"] for m in range(1, 9)}
    movies[1].append("9,4,2005-02-01")
    movies[2].append("9,5,2005-02-02")
    src = write_netflix(tmp_path / "src", movies)  # probe.txt is ignored by a temporal split
    cfg = IngestConfig(split="temporal", test_fraction=0.25, validation_fraction=0.5, bucket_rows=3)
    manifest = ingest_local(src, tmp_path / "data", cfg)
    by_split = _ratings(tmp_path / "data")
    assert set(by_split["test"]) == {(8, 7), (7, 7)}  # floor(0.25 * 8) = 2 latest of user 7
    assert set(by_split["validation"]) == {
        (6, 7),
        (5, 7),
        (4, 7),
        (2, 9),
    }  # floor(0.5 * 6), floor(0.5 * 2)
    assert len(by_split["train"]) == 4
    assert manifest["ingest_config"]["split"] == "temporal"
    again = ingest_local(src, tmp_path / "again", cfg.model_copy(update={"shard_mb": 1e-6}))
    assert again["splits"] == manifest["splits"]


def test_random_split_ignores_the_probe_when_asked(netflix_dir: Path, tmp_path: Path) -> None:
    cfg = IngestConfig(split="random", test_fraction=0.5, validation_fraction=0.01)
    manifest = ingest_local(netflix_dir, tmp_path / "data", cfg)
    assert manifest["probe_unmatched"] == 0
    by_split = _ratings(tmp_path / "data")
    assert 0 < len(by_split["test"]) < N_RATINGS
    assert set(by_split["test"]) != {(m, u) for m, us in PROBE.items() for u in us}


@pytest.mark.parametrize("split", ["auto", "temporal"])
def test_duplicate_pair_is_refused_when_strict(tmp_path: Path, split: str) -> None:
    movies = {**MOVIES, 2: ["10,4,2003-01-01", "30,2,2004-02-02", "10,5,2005-03-03"]}
    src = write_netflix(tmp_path / "src", movies)
    cfg = IngestConfig.model_validate({"split": split, "strict": True})
    with pytest.raises(DataFormatError, match="user 10 already rated item 2 on line 2$") as err:
        ingest_local(src, tmp_path / "data", cfg)
    assert err.value.path.endswith("mv_0000002.txt") and err.value.lineno == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_kaggle_combined_files_give_the_same_dataset(netflix_dir: Path, tmp_path: Path) -> None:
    combined = tmp_path / "kaggle"
    combined.mkdir()
    for extra in ("probe.txt", "qualifying.txt", "movie_titles.txt"):
        (combined / extra).write_bytes((netflix_dir / extra).read_bytes())
    groups = {1: [1, 2], 2: [3]}  # combined_data_N.txt -> the movies it holds, in order
    for n, movies in groups.items():
        blocks = "".join(f"{m}:\n" + "".join(f"{x}\n" for x in MOVIES[m]) for m in movies)
        (combined / f"combined_data_{n}.txt").write_text(blocks)
    cfg = IngestConfig(name="same", bucket_rows=3)
    a = ingest_local(netflix_dir, tmp_path / "a", cfg)
    b = ingest_local(combined, tmp_path / "b", cfg.model_copy(update={"shard_mb": 1e-5}))
    assert a["splits"] == b["splits"] and b["n_users"] == a["n_users"]
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert names == sorted(
        p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.parquet")
    )
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_dataset(
    netflix_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: BaseException
) -> None:
    """A crash or Ctrl-C while the parts are being written leaves the old dataset whole."""
    from cflib.ingest import compact as steps

    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig(bucket_rows=3))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    written = []

    def write_then_fail(table, where, **kwargs):  # type: ignore[no-untyped-def]
        if written:
            raise fault
        written.append(where)
        pq.write_table(table, where, **kwargs)

    monkeypatch.setattr(steps.pq, "write_table", write_then_fail)
    with pytest.raises(type(fault)):
        ingest_local(netflix_dir, out, IngestConfig(bucket_rows=3, force=True))
    assert written  # one part was written before the fault
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "netflix"]


def test_corrupt_part_is_named_and_not_up_to_date(netflix_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    ingest_local(netflix_dir, out, IngestConfig(bucket_rows=3))
    part = sorted((out / "ratings" / "split=train").glob("*.parquet"))[0]
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])  # truncated, as by a full disk or a crash
    with pytest.raises(DatasetError, match=f"{part}: corrupt or truncated Parquet part"):
        load_manifest(out)
    # The damaged dataset is rebuilt rather than taken as up to date.
    assert "up_to_date" not in ingest_local(netflix_dir, out, IngestConfig(bucket_rows=3))
    assert part.read_bytes() == good
    load_manifest(out)


def test_second_writer_to_the_same_output_is_refused(netflix_dir: Path, tmp_path: Path) -> None:
    """Another process writing DATA (here: holding its lock) makes ingest refuse, naming it."""
    out = tmp_path / "data"
    with held_elsewhere(
        "import time; from pathlib import Path; from cflib.fsutil import exclusive\n"
        f"with exclusive(Path({str(out)!r}), '--out'):\n"
        "    print('held', flush=True); time.sleep(60)"
    ) as holder:
        with pytest.raises(
            ConfigError, match=rf"--out {out}: another cfpipe process .*pid {holder.pid}"
        ):
            ingest_local(netflix_dir, out, IngestConfig())
        assert not out.exists()
    ingest_local(netflix_dir, out, IngestConfig())  # the lock died with its process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "netflix"]


def test_os_errors_without_a_file_name_name_the_output(tmp_path: Path) -> None:
    """pyarrow's write errors carry only an errno; ``naming`` gives them the output's path
    (the CLI prints ``PATH: No space left on device``), and leaves named errors alone."""
    import errno

    from cflib.fsutil import naming

    detail = "Error writing bytes to file. Detail: [errno 28] No space left on device"
    with pytest.raises(OSError) as raised, naming(tmp_path / "data"):
        raise OSError(errno.ENOSPC, detail)  # what pyarrow raises on a full disk
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "data")
    assert raised.value.strerror == "No space left on device"
    with pytest.raises(FileNotFoundError) as named, naming(tmp_path / "data"):
        open(tmp_path / "missing")  # noqa: SIM115 - raises before a file exists
    assert named.value.filename == str(tmp_path / "missing")
