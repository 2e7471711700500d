"""Ingest of MovieLens directories (100K, 1M, CSV releases) into the same dataset layout."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cflib import schema
from cflib.config import IngestConfig
from cflib.data.manifest import load_manifest
from cflib.ingest.parallel import ingest_local
from cflib.ingest.source import detect_format

GENRES_100K = 19


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(GENRES_100K))


def write_ml100k(root: Path) -> Path:
    root.mkdir(parents=True)
    ratings = [(1, 10, 4), (1, 20, 3), (2, 10, 5), (3, 30, 1), (2, 30, 2), (3, 20, 4)]
    (root / "u.data").write_text(
        "".join(f"{u}\t{i}\t{r}\t{881250949 + k * 86400}\n" for k, (u, i, r) in enumerate(ratings))
    )
    items = [
        f"10|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}",
        f"20|Caf\xe9 Society (1995)|01-Jan-1995||http://y|{_flags(8)}",
        f"30|Unknown Movie||||{_flags(0)}",
        f"40|Never Rated (1990)|01-Jan-1990||http://z|{_flags(8)}",
    ]
    (root / "u.item").write_bytes(("\n".join(items) + "\n").encode("iso-8859-1"))
    users = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|32067"]
    (root / "u.user").write_text("\n".join(users) + "\n")
    return root


def write_ml1m(root: Path) -> Path:
    root.mkdir(parents=True)
    ratings = [(1, 1193, 5), (1, 661, 3), (2, 1193, 4), (2, 3408, 4), (3, 661, 2), (3, 3408, 5)]
    (root / "ratings.dat").write_text(
        "".join(f"{u}::{i}::{r}::{978300760 + k}\n" for k, (u, i, r) in enumerate(ratings))
    )
    movies = [
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama",
        "3408::Erin Brockovich (2000)::Drama",
    ]
    (root / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode("iso-8859-1"))
    users = ["1::F::1::10::48067", "2::M::56::16::70072", "3::M::25::15::55117"]
    (root / "users.dat").write_text("\n".join(users) + "\n")
    return root


def write_ml_csv(root: Path, n_users: int = 3) -> Path:
    root.mkdir(parents=True)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, n_users + 1):
        lines += [f"{u},1,{(u % 9 + 1) / 2},964982703", f"{u},50,4.5,964982931", f"{u},296,0.5,1"]
    (root / "ratings.csv").write_text("\n".join(lines) + "\n")
    (root / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '50,"Usual Suspects, The (1995)",Crime|Mystery|Thriller\n'
        "296,Pulp Fiction (1994),(no genres listed)\n"
    )
    return root


def _all_ratings(out: Path) -> list[dict]:  # type: ignore[type-arg]
    return ds.dataset(out / schema.RATINGS_DIR, partitioning="hive").to_table().to_pylist()


def test_ml100k_with_user_and_item_features(tmp_path: Path) -> None:
    src = write_ml100k(tmp_path / "ml-100k")
    assert detect_format(src) == "ml-100k"
    manifest = ingest_local(src, tmp_path / "data", IngestConfig(test_fraction=0.3))
    assert manifest["source"]["format"] == "ml-100k"
    assert manifest["n_users"] == 3 and manifest["n_items"] == 3
    assert sum(s["rows"] for s in manifest["splits"].values()) == 6
    users = pq.read_table(tmp_path / "data" / schema.USER_MAP_FILE).to_pylist()
    assert users[1] == {
        "raw_user": 2,
        "gender": "F",
        "age": 53,
        "occupation": "other",
        "zip": "94043",
    }
    items = pq.read_table(tmp_path / "data" / schema.ITEM_MAP_FILE).to_pylist()
    assert [i["raw_item"] for i in items] == [10, 20, 30]  # 40 has no rating: not in the map
    assert items[0]["genres"] == ["Animation", "Children's", "Comedy"]
    assert items[1]["title"] == "Caf\xe9 Society (1995)" and items[1]["year"] == 1995
    assert items[2]["year"] is None


def test_ml1m_occupations_and_genres(tmp_path: Path) -> None:
    src = write_ml1m(tmp_path / "ml-1m")
    ingest_local(src, tmp_path / "data", IngestConfig())
    users = pq.read_table(tmp_path / "data" / schema.USER_MAP_FILE).to_pylist()
    assert users[0]["gender"] == "F" and users[0]["occupation"] == "K-12 student"
    items = pq.read_table(tmp_path / "data" / schema.ITEM_MAP_FILE).to_pylist()
    assert items[0] == {
        "raw_item": 661,
        "year": 1996,
        "title": "James and the Giant Peach (1996)",
        "genres": ["Animation", "Children's", "Musical"],
    }
    rows = _all_ratings(tmp_path / "data")
    assert sorted((r["raw_user"], r["raw_item"], r["rating"]) for r in rows)[0] == (1, 661, 3.0)


def test_ml_csv_half_stars_and_no_user_table(tmp_path: Path) -> None:
    src = write_ml_csv(tmp_path / "ml-latest-small")
    ingest_local(src, tmp_path / "data", IngestConfig())
    rows = _all_ratings(tmp_path / "data")
    assert len(rows) == 9
    assert {r["rating"] for r in rows if r["raw_item"] == 296} == {0.5}
    assert {r["rating"] for r in rows if r["raw_item"] == 50} == {4.5}
    # Each split's lowest and highest rating, which predictions are clipped to.
    manifest = load_manifest(tmp_path / "data")
    for split, info in manifest.splits.items():
        mine = [r["rating"] for r in rows if r["split"] == split]
        assert (info.rating_min, info.rating_max) == (
            (min(mine), max(mine)) if mine else (None, None)
        ), split
    train = [r["rating"] for r in rows if r["split"] == "train"]
    assert manifest.rating_range == (min(train), max(train))
    users = pq.read_table(tmp_path / "data" / schema.USER_MAP_FILE)
    assert users.column("gender").null_count == 3
    items = pq.read_table(tmp_path / "data" / schema.ITEM_MAP_FILE).to_pylist()
    assert items[1]["title"] == "Usual Suspects, The (1995)" and items[2]["genres"] == []


def test_byte_range_shards_give_identical_output(tmp_path: Path) -> None:
    src = write_ml_csv(tmp_path / "ml", n_users=300)
    ingest_local(src, tmp_path / "one", IngestConfig(shard_mb=64, bucket_rows=200))
    ingest_local(src, tmp_path / "many", IngestConfig(shard_mb=0.001, bucket_rows=200))
    parts = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.parquet"))
    assert len(parts) > 3
    for rel in parts:
        assert (tmp_path / "one" / rel).read_bytes() == (tmp_path / "many" / rel).read_bytes()
    assert sum(1 for _ in _all_ratings(tmp_path / "many")) == 900


def test_format_mismatch_is_refused(tmp_path: Path) -> None:
    from cflib.errors import SourceError

    src = write_ml1m(tmp_path / "ml-1m")
    with pytest.raises(
        SourceError, match="--format ml-100k given but the directory looks like ml-1m"
    ):
        ingest_local(src, tmp_path / "data", IngestConfig(format="ml-100k"))


def test_duplicate_pair_across_byte_ranges_is_refused(tmp_path: Path) -> None:
    from cflib.errors import DataFormatError

    src = write_ml_csv(tmp_path / "ml", n_users=200)
    with open(src / "ratings.csv", "a") as fh:
        fh.write("3,50,1.0,964982931\n")  # User 3 rated movie 50 near the top of the file.
    lines = (src / "ratings.csv").read_text().splitlines()
    first = next(n for n, line in enumerate(lines, 1) if line.startswith("3,50,"))
    with pytest.raises(
        DataFormatError, match=f"user 3 already rated item 50 on line {first}$"
    ) as err:
        ingest_local(src, tmp_path / "data", IngestConfig(shard_mb=0.001, strict=True))
    assert err.value.lineno == len(lines)
