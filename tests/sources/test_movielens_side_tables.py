"""MovieLens side tables (items: ``u.item``, ``movies.dat``, ``movies.csv``; users:
``u.user``, ``users.dat``) against tiny files written in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from cflib.schema import RAW_ITEMS_GENRES, RAW_USERS
from cflib.sources import movielens
from tests.sources._movielens import ITEMS_HEADER, _error, _flags, _write

# --- items -------------------------------------------------------------------------------


def test_ml100k_genres() -> None:
    assert len(movielens.ML100K_GENRES) == 19
    assert movielens.ML100K_GENRES[:2] == ("unknown", "Action")
    assert movielens.ML100K_GENRES[-1] == "Western"


def test_items_100k(tmp_path: Path) -> None:
    lines = [
        "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
        + _flags("Animation", "Children's", "Comedy"),
        "267|unknown|||http://x|" + _flags("unknown"),
        "1300|Misérables, Les|01-Jan-1998|||" + _flags("Drama", "Western"),
    ]
    path = _write(tmp_path / "u.item", "\r\n".join(lines), movielens.ENCODING_LATIN1)
    table = movielens.read_items_100k(path)
    assert table.schema == RAW_ITEMS_GENRES
    assert table.to_pylist() == [
        {
            "raw_item": 1,
            "year": 1995,
            "title": "Toy Story (1995)",
            "genres": ["Animation", "Children's", "Comedy"],
        },
        {"raw_item": 267, "year": None, "title": "unknown", "genres": ["unknown"]},
        {
            "raw_item": 1300,
            "year": 1998,
            "title": "Misérables, Les",
            "genres": ["Drama", "Western"],
        },
    ]


def test_items_100k_release_date_with_a_one_digit_day(tmp_path: Path) -> None:
    # As in the real u.item: "4-Feb-1971" beside "01-Jan-1995"; the year comes from it
    # where the title has none.
    lines = [
        "1|Toy Story (1995)|01-Jan-1995|||" + _flags("Comedy"),
        "1601|Harold and Maude|4-Feb-1971|||" + _flags("Comedy"),
    ]
    path = _write(tmp_path / "u.item", "\n".join(lines) + "\n", movielens.ENCODING_LATIN1)
    table = movielens.read_items_100k(path)
    assert [(r["raw_item"], r["year"], r["title"]) for r in table.to_pylist()] == [
        (1, 1995, "Toy Story (1995)"),
        (1601, 1971, "Harold and Maude"),
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2|GoldenEye (1995)|01-Jan-1995|||" + _flags()[:-2], "expected 24 '|'-separated fields"),
        ("x|GoldenEye (1995)|01-Jan-1995|||" + _flags(), "movie id 'x' is not a positive integer"),
        ("2||01-Jan-1995|||" + _flags(), "empty title"),
        (
            "2|G|1995-01-01|||" + _flags(),
            "release date '1995-01-01' is not empty or D-Mon-YYYY or DD-Mon-YYYY",
        ),
        ("2|G||||" + _flags()[:-1] + "2", "Western flag '2' is not 0 or 1"),
        ("2|G||||" + _flags().replace("0", "", 1), "unknown flag '' is not 0 or 1"),
        ("1|Again (1995)||||" + _flags(), "movie id 1 already on line 1"),
    ],
)
def test_items_100k_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "u.item", f"1|Toy Story (1995)||||{_flags()}\n\n{line}\n")
    error = _error(movielens.read_items_100k, path)
    assert (error.path, error.lineno) == (str(path), 3)
    assert error.reason.startswith(reason)


def test_items_1m(tmp_path: Path) -> None:
    lines = [
        "1::Toy Story (1995)::Animation|Children's|Comedy",
        "73::Misérables, Les (1995)::Drama|Musical",
        "2::Star Wars: Episode IV - A New Hope (1977)::Action",
        "3::No Year::(no genres listed)",
    ]
    path = _write(tmp_path / "movies.dat", "\n".join(lines), movielens.ENCODING_LATIN1)
    table = movielens.read_items_1m(path)
    assert table.schema == RAW_ITEMS_GENRES
    assert table.column("raw_item").to_pylist() == [1, 73, 2, 3]
    assert table.column("year").to_pylist() == [1995, 1995, 1977, None]
    assert table.column("title").to_pylist()[1:3] == [
        "Misérables, Les (1995)",
        "Star Wars: Episode IV - A New Hope (1977)",
    ]
    assert table.column("genres").to_pylist() == [
        ["Animation", "Children's", "Comedy"],
        ["Drama", "Musical"],
        ["Action"],
        [],
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2::Jumanji (1995)", "expected 3 '::'-separated fields (MovieID::Title::Genres), got 2"),
        ("2::Jumanji (1995)::", "empty genres"),
        ("2::Jumanji (1995)::Adventure||Fantasy", "empty genre in 'Adventure||Fantasy'"),
        ("2::::Drama", "empty title"),
        ("01::Again::Drama", "movie id 1 already on line 1"),
    ],
)
def test_items_1m_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "movies.dat", f"1::Toy Story (1995)::Comedy\n{line}\n")
    error = _error(movielens.read_items_1m, path)
    assert (error.lineno, error.reason) == (2, reason)


def test_items_csv(tmp_path: Path) -> None:
    content = (
        f"{ITEMS_HEADER}\r\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\r\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\r\n'
        "\r\n"
        '12,"Dracula: Dead and Loving It (1995) ",Comedy|Horror\r\n'
        '149532,"Marco Polo: One Hundred Eyes",(no genres listed)\r\n'
        '26,"Othello ""The Moor"" (1995)",Drama\r\n'
        "30,Shanghai Triad (Yao a yao yao dao waipo qiao) (1995),Crime|Drama\r\n"
        "31,Amélie (Fabuleux destin d'Amélie Poulain Le) (2001),Comedy|Romance"
    )
    table = movielens.read_items_csv(_write(tmp_path / "movies.csv", content))
    assert table.schema == RAW_ITEMS_GENRES
    assert table.column("raw_item").to_pylist() == [1, 11, 12, 149532, 26, 30, 31]
    assert table.column("year").to_pylist() == [1995, 1995, 1995, None, 1995, 1995, 2001]
    assert table.column("title").to_pylist() == [
        "Toy Story (1995)",
        "American President, The (1995)",
        "Dracula: Dead and Loving It (1995) ",
        "Marco Polo: One Hundred Eyes",
        'Othello "The Moor" (1995)',
        "Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)",
        "Amélie (Fabuleux destin d'Amélie Poulain Le) (2001)",
    ]
    genres = table.column("genres").to_pylist()
    assert genres[1] == ["Comedy", "Drama", "Romance"] and genres[3] == []
    header_only = _write(tmp_path / "h.csv", ITEMS_HEADER)
    assert movielens.read_items_csv(header_only) == RAW_ITEMS_GENRES.empty_table()


@pytest.mark.parametrize(
    ("lines", "lineno", "reason"),
    [
        (["movieId,title\n"], 1, "first line should be the header 'movieId,title,genres'"),
        (["1,Toy Story (1995)"], 3, "expected 3 comma-separated fields"),
        (['1,"Toy Story, (1995)",A,B'], 3, "expected 3 comma-separated fields"),
        (['1,"Toy Story (1995),Comedy'], 3, "expected 3 comma-separated fields"),
        (['1,"Toy\n Story",Comedy'], 3, "expected 3 comma-separated fields"),
        (["1,Toy\rStory,Comedy"], 3, "carriage return inside line"),
        (["x,Toy Story (1995),Comedy"], 3, "movie id 'x' is not a positive integer"),
        (["0,Toy Story (1995),Comedy"], 3, "movie id '0' is not a positive integer"),
        (["99999999999999999999,T,Comedy"], 3, "movie id '99999999999999999999' is not a"),
        (["1,,Comedy"], 3, "empty title"),
        (["1,T,"], 3, "empty genres"),
        (["1,T,Comedy|"], 3, "empty genre in 'Comedy|'"),
        (["1,T,Comedy", "2,U,Drama", "1,V,Drama"], 5, "movie id 1 already on line 3"),
    ],
)
def test_items_csv_malformed(tmp_path: Path, lines: list[str], lineno: int, reason: str) -> None:
    header = [] if lineno == 1 else [ITEMS_HEADER, ""]
    path = _write(tmp_path / "movies.csv", "\n".join(header + lines) + "\n")
    error = _error(movielens.read_items_csv, path)
    assert (error.path, error.lineno) == (str(path), lineno)
    assert error.reason.startswith(reason), error.reason


def test_items_csv_not_utf8(tmp_path: Path) -> None:
    content = f"{ITEMS_HEADER}\n1,Toy Story (1995),Comedy\n2,Misérables,Drama\n"
    path = _write(tmp_path / "movies.csv", content, movielens.ENCODING_LATIN1)
    error = _error(movielens.read_items_csv, path)
    assert error.lineno == 3 and error.reason.startswith("not valid utf-8")


# --- users -------------------------------------------------------------------------------


def test_users_100k(tmp_path: Path) -> None:
    path = _write(tmp_path / "u.user", "1|24|M|technician|85711\r\n2|53|F|other|T8H1N")
    table = movielens.read_users_100k(path)
    assert table.schema == RAW_USERS
    assert table.to_pylist() == [
        {"raw_user": 1, "gender": "M", "age": 24, "occupation": "technician", "zip": "85711"},
        {"raw_user": 2, "gender": "F", "age": 53, "occupation": "other", "zip": "T8H1N"},
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2|53|F|other", "expected 5 '|'-separated fields (user id | age | gender"),
        ("2|x|F|other|1", "age 'x' is not an integer in 1..150"),
        ("2|53|f|other|1", "gender 'f' is not M or F"),
        ("2|53|F||1", "empty occupation"),
        ("2|53|F|other|", "empty zip code"),
        ("1|53|F|other|1", "user id 1 already on line 1"),
    ],
)
def test_users_100k_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "u.user", f"1|24|M|technician|85711\n{line}\n")
    error = _error(movielens.read_users_100k, path)
    assert error.lineno == 2 and error.reason.startswith(reason)


def test_users_1m(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::0::55117"
    )
    table = movielens.read_users_1m(path)
    assert table.schema == RAW_USERS
    assert table.column("age").to_pylist() == [1, 56, 25]
    assert table.column("occupation").to_pylist() == [
        "K-12 student",
        "self-employed",
        "other or not specified",
    ]
    assert table.column("gender").to_pylist() == ["F", "M", "M"]
    assert table.column("zip").to_pylist() == ["48067", "70072", "55117"]
    assert len(movielens.ML1M_OCCUPATIONS) == 21 and movielens.ML1M_OCCUPATIONS[20] == "writer"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("2::M::56::16", "expected 5 '::'-separated fields"),
        ("2::X::56::16::1", "gender 'X' is not M or F"),
        ("2::M::30::16::1", "age '30' is not one of 1, 18, 25, 35, 45, 50, 56"),
        ("2::M::56::21::1", "occupation '21' is not a code in 0..20"),
        ("2::M::56::-1::1", "occupation '-1' is not a code in 0..20"),
        ("1::M::56::16::1", "user id 1 already on line 1"),
    ],
)
def test_users_1m_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _write(tmp_path / "users.dat", f"1::F::1::10::48067\n{line}")
    error = _error(movielens.read_users_1m, path)
    assert error.lineno == 2 and error.reason.startswith(reason)
