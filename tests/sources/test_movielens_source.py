"""MovieLens readers against tiny files written in the test."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cflib.errors import DataFormatError
from cflib.schema import RAW_ITEMS_GENRES, RAW_RATINGS, RAW_USERS
from cflib.sources import movielens
from tests import _reference_lines as reference

CSV_HEADER = "userId,movieId,rating,timestamp"
ITEMS_HEADER = "movieId,title,genres"
DAY = 86_400


def _write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def _error(call: Callable[..., object], *args: object, **kwargs: object) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        call(*args, **kwargs)
    return info.value


# (reader, file name, separator, header line or None, how a rating is written)
VARIANTS = {
    "100k": (movielens.read_ratings_100k, movielens.ML100K_RATINGS, "\t", None, "{:.0f}"),
    "1m": (movielens.read_ratings_1m, movielens.ML1M_RATINGS, "::", None, "{:.0f}"),
    "csv": (movielens.read_ratings_csv, movielens.CSV_RATINGS, ",", CSV_HEADER, "{:.1f}"),
}


def _ratings_file(tmp_path: Path, variant: str, lines: list[str], eol: str = "\n") -> Path:
    _, name, _, header, _ = VARIANTS[variant]
    return _write(tmp_path / name, eol.join(([header] if header else []) + lines) + eol)


# --- detect_variant, byte_ranges -------------------------------------------------------------


def test_detect_variant(tmp_path: Path) -> None:
    assert movielens.detect_variant(tmp_path) is None
    expected = [("ratings.csv", "ml-csv"), ("ratings.dat", "ml-1m"), ("u.data", "ml-100k")]
    for name, variant in expected:
        _write(tmp_path / name, "")
        assert movielens.detect_variant(tmp_path) == variant
    assert movielens.detect_variant(tmp_path / "missing") is None


def test_byte_ranges(tmp_path: Path) -> None:
    path = _write(tmp_path / "f", "x" * 10)
    assert movielens.byte_ranges(path, 4) == [(0, 4), (4, 8), (8, 10)]
    assert movielens.byte_ranges(path, 10) == [(0, 10)]
    assert movielens.byte_ranges(_write(tmp_path / "e", ""), 4) == [(0, 0)]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`chunk_bytes` should be a positive integer"):
            movielens.byte_ranges(path, bad)  # type: ignore[arg-type]


def test_bad_range_arguments(tmp_path: Path) -> None:
    path = _ratings_file(tmp_path, "100k", ["1\t2\t3\t0"])
    with pytest.raises(ValueError, match="`start` should be a non-negative integer"):
        movielens.read_ratings_100k(path, start=-1)
    with pytest.raises(ValueError, match="`end` should be None or an integer >= `start`"):
        movielens.read_ratings_100k(path, start=5, end=4)


# --- ratings: values ---------------------------------------------------------------------


def test_ratings_100k_values(tmp_path: Path) -> None:
    path = _ratings_file(
        tmp_path, "100k", ["196\t242\t3\t881250949", "7\t1\t5\t86399", "1\t9\t1\t0"]
    )
    table = movielens.read_ratings_100k(path)
    assert table.schema == RAW_RATINGS
    assert table.column("raw_user").to_pylist() == [196, 7, 1]
    assert table.column("raw_item").to_pylist() == [242, 1, 9]
    assert table.column("rating").to_pylist() == [3.0, 5.0, 1.0]
    assert table.column("date").to_pylist() == [
        dt.date(1997, 12, 4),  # 881250949 is 1997-12-04 15:55:49 UTC
        dt.date(1970, 1, 1),
        dt.date(1970, 1, 1),
    ]


def test_ratings_1m_values_and_10m_half_stars(tmp_path: Path) -> None:
    path = _ratings_file(tmp_path, "1m", ["1::1193::5::978300760", "6040::3::1::86400"])
    table = movielens.read_ratings_1m(path)
    assert table.schema == RAW_RATINGS
    assert table.to_pylist() == [
        {"raw_user": 1, "raw_item": 1193, "rating": 5.0, "date": dt.date(2000, 12, 31)},
        {"raw_user": 6040, "raw_item": 3, "rating": 1.0, "date": dt.date(1970, 1, 2)},
    ]
    half = _write(tmp_path / "10m.dat", "1::122::2.5::838985046\n2::3::5::0\n")
    assert movielens.read_ratings_1m(half, half_stars=True).column("rating").to_pylist() == [2.5, 5]
    error = _error(movielens.read_ratings_1m, half)
    assert (error.lineno, error.reason) == (1, "rating '2.5' is not one of 1..5")


def test_ratings_csv_values(tmp_path: Path) -> None:
    lines = ["1,296,5.0,1147880044", "1,307,0.5,0", "2,1,4,1", "3,2,3.50,86400", "4,5,.5,0"]
    table = movielens.read_ratings_csv(_ratings_file(tmp_path, "csv", lines))
    assert table.schema == RAW_RATINGS
    assert table.column("raw_user").to_pylist() == [1, 1, 2, 3, 4]
    assert table.column("raw_item").to_pylist() == [296, 307, 1, 2, 5]
    assert table.column("rating").to_pylist() == [5.0, 0.5, 4.0, 3.5, 0.5]
    assert table.column("date").to_pylist() == [
        dt.date(2006, 5, 17),
        dt.date(1970, 1, 1),
        dt.date(1970, 1, 1),
        dt.date(1970, 1, 2),
        dt.date(1970, 1, 1),
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_ratings_crlf_blank_lines_and_no_final_newline(tmp_path: Path, variant: str) -> None:
    reader, name, sep, header, _ = VARIANTS[variant]
    rows = [sep.join(["1", "2", "3", "4"]), sep.join(["5", "6", "4", str(DAY)])]
    content = "\r\n".join(([header] if header else []) + ["", rows[0], "", "", rows[1]])
    table = reader(_write(tmp_path / name, content))
    assert table.to_pylist() == [
        {"raw_user": 1, "raw_item": 2, "rating": 3.0, "date": dt.date(1970, 1, 1)},
        {"raw_user": 5, "raw_item": 6, "rating": 4.0, "date": dt.date(1970, 1, 2)},
    ]
    assert reader(_write(tmp_path / name, content + "\r")).num_rows == 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_ratings_empty(tmp_path: Path, variant: str) -> None:
    reader, name, _, header, _ = VARIANTS[variant]
    path = _write(tmp_path / name, f"{header}\n\n" if header else "\n\n")
    assert reader(path) == RAW_RATINGS.empty_table()
    if header is None:
        assert reader(_write(tmp_path / name, "")).num_rows == 0


# --- ratings: byte ranges ------------------------------------------------------------------


def _big_lines(variant: str, n: int) -> list[str]:
    """n rating lines with a few blank and CRLF lines mixed in."""
    _, _, sep, _, fmt = VARIANTS[variant]
    rng = random.Random(7)
    lines = []
    for i in range(n):
        stars = rng.randint(1, 5) - (0.5 * rng.randint(0, 1) if variant == "csv" else 0)
        line = sep.join(
            [str(rng.randint(1, 10**6)), str(i + 1), fmt.format(stars), str(rng.randint(0, 2**31))]
        )
        lines.append(line + "\r" if i % 17 == 0 else line)
        if i % 29 == 0:
            lines.append("")
    return lines


@pytest.mark.parametrize("variant", VARIANTS)
def test_ranges_cover_every_line_once(tmp_path: Path, variant: str) -> None:
    reader = VARIANTS[variant][0]
    path = _ratings_file(tmp_path, variant, _big_lines(variant, 200))
    _write(path, path.read_bytes().removesuffix(b"\n"))  # no final newline
    whole = reader(path)
    assert whole.num_rows == 200 and whole.column("raw_item").to_pylist() == list(range(1, 201))
    size = path.stat().st_size
    for chunk in (1, 7, 23, 64, 1000, size, size + 5):
        parts = [reader(path, start=s, end=e) for s, e in movielens.byte_ranges(path, chunk)]
        assert pa.concat_tables(parts).equals(whole), chunk
    # Ranges that cut exactly at line starts and ends, and an open end.
    starts = [0] + [i + 1 for i, b in enumerate(path.read_bytes()) if b == ord("\n")]
    cut = starts[100]
    both = [reader(path, start=0, end=cut), reader(path, start=cut)]
    assert pa.concat_tables(both).equals(whole)
    assert reader(path, start=cut, end=cut).num_rows == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_error_in_a_later_range_has_whole_file_line_number(tmp_path: Path, variant: str) -> None:
    reader, _, sep, header, _ = VARIANTS[variant]
    lines = _big_lines(variant, 200)
    lines[150] = sep.join(["1", "2", "9", "0"])
    path = _ratings_file(tmp_path, variant, lines)
    lineno = 151 + (header is not None)
    stars = "one of 1..5" if header is None else "a half star in 0.5..5.0"
    for chunk in (1, 50, 2000):
        errors = []
        for start, end in movielens.byte_ranges(path, chunk):
            try:
                reader(path, start=start, end=end)
            except DataFormatError as err:
                errors.append(err)
        assert len(errors) == 1, chunk
        assert (errors[0].path, errors[0].lineno) == (str(path), lineno)
        assert errors[0].reason == f"rating '9' is not {stars}"


# --- ratings: malformed lines ----------------------------------------------------------------

_TAB_ERRORS = [
    ("1\t2\t3", "expected 4 tab-separated fields (user id | item id | rating | timestamp), got 3"),
    ("1\t2\t3\t4\t", "expected 4 tab-separated fields"),
    ("1 2 3 4", "expected 4 tab-separated fields"),
    ("0\t2\t3\t4", "user id '0' is not a positive integer"),
    ("x\t2\t3\t4", "user id 'x' is not a positive integer"),
    ("1\t-2\t3\t4", "item id '-2' is not a positive integer"),
    ("99999999999999999999\t2\t3\t4", "user id '99999999999999999999' is not a positive"),
    ("1\t2\t6\t4", "rating '6' is not one of 1..5"),
    ("1\t2\t0\t4", "rating '0' is not one of 1..5"),
    ("1\t2\t3.5\t4", "rating '3.5' is not one of 1..5"),
    ("1\t2\t\t4", "rating '' is not one of 1..5"),
    ("1\t2\t3\tabc", "timestamp 'abc' is not a non-negative integer"),
    ("1\t2\t3\t-4", "timestamp '-4' is not a non-negative integer"),
    ("1\t2\t3\t 4", "timestamp ' 4' is not a non-negative integer"),
    ("1\t2\t3\t1147880044000", "timestamp '1147880044000' is after the year 9999"),
    ("1\t2\t3\r\t4", "rating '3\\r' is not one of 1..5"),
]


@pytest.mark.parametrize(("line", "reason"), _TAB_ERRORS)
def test_ratings_100k_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _ratings_file(tmp_path, "100k", ["1\t1\t1\t1", "", line, "2\t2\t2\t2"])
    error = _error(movielens.read_ratings_100k, path)
    assert (error.path, error.lineno) == (str(path), 3)
    assert error.reason.startswith(reason)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1::2::3", "expected 4 '::'-separated fields (UserID::MovieID::Rating::Timestamp), got 3"),
        ("1:2::3::4", "expected 4 '::'-separated fields"),
        ("1:::2::3::4", "movie id ':2' is not a positive integer"),
        ("1:9:2:9:3:9:4", "expected 4 '::'-separated fields"),
        ("1::2::3::", "timestamp '' is not a non-negative integer"),
        ("1::2::3::4::", "expected 4 '::'-separated fields"),
        ("1,2::3::4::5", "user id '1,2' is not a positive integer"),
        ("1::2::5.0::4", "rating '5.0' is not one of 1..5"),
        ("1::2::7::4", "rating '7' is not one of 1..5"),
        ("1::0::3::4", "movie id '0' is not a positive integer"),
        ("1::2::3::x", "timestamp 'x' is not a non-negative integer"),
    ],
)
def test_ratings_1m_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _ratings_file(tmp_path, "1m", ["1::1::1::1", line])
    error = _error(movielens.read_ratings_1m, path)
    assert error.lineno == 2 and error.reason.startswith(reason), error.reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1,2,3.7,4", "rating '3.7' is not a half star in 0.5..5.0"),
        ("1,2,0,4", "rating '0' is not a half star in 0.5..5.0"),
        ("1,2,5.5,4", "rating '5.5' is not a half star in 0.5..5.0"),
        ("1,2,.,4", "rating '.' is not a half star in 0.5..5.0"),
        ("1,2,1e0,4", "rating '1e0' is not a half star in 0.5..5.0"),
        ("1,2,+3,4", "rating '+3' is not a half star in 0.5..5.0"),
        ("1,2,NaN,4", "rating 'NaN' is not a half star in 0.5..5.0"),
        ("1.0,2,3,4", "user id '1.0' is not a positive integer"),
        ("1,2,3,4.0", "timestamp '4.0' is not a non-negative integer"),
        (",2,3,4", "user id '' is not a positive integer"),
        ("1,2,,4", "rating '' is not a half star in 0.5..5.0"),
        ("1,2,3", "expected 4 comma-separated fields (userId,movieId,rating,timestamp), got 3"),
        ('1,"2",3,4', "movie id '\"2\"' is not a positive integer"),
        (CSV_HEADER, "user id 'userId' is not a positive integer"),
    ],
)
def test_ratings_csv_malformed(tmp_path: Path, line: str, reason: str) -> None:
    path = _ratings_file(tmp_path, "csv", ["1,1,1,1", line])
    error = _error(movielens.read_ratings_csv, path)
    assert (error.lineno, error.reason) == (3, reason)


@pytest.mark.parametrize(
    ("content", "got"),
    [
        ("1,2,3.5,4\n", "'1,2,3.5,4'"),
        ("userid,movieId,rating,timestamp\n1,2,3,4\n", "'userid,movieId,rating,timestamp'"),
        ("\nuserId,movieId,rating,timestamp\n1,2,3,4\n", "''"),
        ("", "''"),
        (" userId,movieId,rating,timestamp\n", "' userId,movieId,rating,timestamp'"),
    ],
)
def test_ratings_csv_header(tmp_path: Path, content: str, got: str) -> None:
    path = _write(tmp_path / "ratings.csv", content)
    for end in (None, 0, 1):
        error = _error(movielens.read_ratings_csv, path, end=end)
        assert error.lineno == 1
        assert error.reason == f"first line should be the header '{CSV_HEADER}', got {got}"


def test_ratings_csv_header_only_in_first_range(tmp_path: Path) -> None:
    path = _ratings_file(tmp_path, "csv", ["1,2,3,4", "5,6,4.5,7"])
    assert movielens.read_ratings_csv(path, end=0).num_rows == 0
    assert movielens.read_ratings_csv(path, end=1).num_rows == 0  # the header line only
    assert movielens.read_ratings_csv(path, start=1).num_rows == 2
    headerless = _write(tmp_path / "r.csv", "1,2,3,4\n5,6,4.5,7\n")
    assert movielens.read_ratings_csv(headerless, start=1).num_rows == 1


# --- items -------------------------------------------------------------------------------


def _flags(*on: str) -> str:
    return "|".join("1" if g in on else "0" for g in movielens.ML100K_GENRES)


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


# --- random garbage: a table or a DataFormatError with a line, never anything else ----------

_ALPHABET = '0123456789,.:|\t\r -"xé+e'
_garbage = st.lists(
    st.one_of(
        st.text(_ALPHABET, max_size=14),
        st.sampled_from(["1\t2\t3\t4", "1::2::3::4", "1,2,3.5,4", "1,T (1999),A|B", "", "\r"]),
    ),
    max_size=6,
)
_READERS = {
    "100k": (movielens.read_ratings_100k, ""),
    "1m": (movielens.read_ratings_1m, ""),
    "csv": (movielens.read_ratings_csv, CSV_HEADER + "\n"),
}
_COMMON = {
    "fields": "expected 4 ",
    "user": "user id ",
    "rating": "rating ",
    "timestamp": "timestamp ",
}
#: How each reader's reason starts for each kind of fault the reference finds.
_REASONS = {
    "100k": {**_COMMON, "item": "item id "},
    "1m": {**_COMMON, "item": "movie id "},
    "csv": {**_COMMON, "item": "movie id ", "header": "first line should be the header "},
}
_VALID = {
    "100k": ["1\t2\t3\t4", "10\t20\t5\t86400", "07\t1\t1\t253402300799"],
    "1m": ["1::2::3::4", "10::20::5::86400", "7::1::1::0"],
    "csv": ["1,2,3.5,4", "10,20,0.5,86400", "7,1,5.,0", "3,4,.5,1"],
}


@st.composite
def _ratings_files(draw: st.DrawFn) -> tuple[str, str]:
    """A variant and file content: valid lines, valid lines with one character changed,
    and garbage, so that both the tables and the errors get exercised."""
    variant = draw(st.sampled_from(sorted(_READERS)))
    valid = st.sampled_from(_VALID[variant])
    mutated = st.tuples(valid, st.integers(0, 20), st.text(_ALPHABET, max_size=2)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]
    )
    line = st.one_of(valid, valid, mutated, st.text(_ALPHABET, max_size=14), st.just(""))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    return variant, _READERS[variant][1] + eol.join(draw(st.lists(line, max_size=6)))


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=_ratings_files(), cut=st.integers(0, 60))
def test_garbage_ratings(tmp_path: Path, case: tuple[str, str], cut: int) -> None:
    variant, content = case
    reader = _READERS[variant][0]
    path = _write(tmp_path / "ratings", content, "latin-1")
    # Against a parser written from the README, not the line rules the reader calls.
    expected = reference.movielens_ratings(content, variant)
    try:
        table = reader(path)
    except DataFormatError as err:
        assert isinstance(expected, reference.Bad), (content, err)
        assert (err.path, err.lineno) == (str(path), expected.lineno), (content, err)
        prefixes = [_REASONS[variant][kind] for kind in expected.kinds]
        assert err.reason.startswith(tuple(prefixes)), (content, err.reason, expected)
    else:
        assert not isinstance(expected, reference.Bad), (content, expected)
        assert table.schema == RAW_RATINGS
        assert list(zip(*table.to_pydict().values(), strict=True)) == expected, content
        parts = [reader(path, start=0, end=cut), reader(path, start=cut)]
        assert pa.concat_tables(parts).equals(table)


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=_garbage, which=st.sampled_from(["100k", "1m", "csv", "u100k", "u1m"]))
def test_garbage_side_tables(tmp_path: Path, lines: list[str], which: str) -> None:
    reader, first = {
        "100k": (movielens.read_items_100k, f"1|T (1999)||||{_flags()}"),
        "1m": (movielens.read_items_1m, "1::T (1999)::Drama"),
        "csv": (movielens.read_items_csv, f"{ITEMS_HEADER}\n1,T,Drama"),
        "u100k": (movielens.read_users_100k, "1|20|M|writer|1"),
        "u1m": (movielens.read_users_1m, "1::M::1::0::1"),
    }[which]
    path = _write(tmp_path / "side", "\n".join([first, *lines]))
    try:
        table = reader(path)
    except DataFormatError as err:
        assert err.lineno is not None and err.path == str(path)
        return
    assert isinstance(table, pa.Table) and table.num_rows >= 1


def test_the_config_offers_exactly_the_formats_ingest_reads() -> None:
    """``cflib.config.SourceFormat`` (the CLI's and the run form's choices) is a literal so
    that the config stays free of the parsers; it must name the same formats."""
    from typing import get_args

    from cflib.config import SourceFormat
    from cflib.sources import FORMAT_NAMES

    assert get_args(SourceFormat) == ("auto", *FORMAT_NAMES)
