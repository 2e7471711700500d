"""MovieLens ratings readers (``u.data``, ``ratings.dat``, ``ratings.csv``) against tiny
files written in the test: variant detection, values, byte ranges and malformed lines."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pytest

from cflib.errors import DataFormatError
from cflib.schema import RAW_RATINGS
from cflib.sources import movielens
from tests.sources._movielens import CSV_HEADER, _error, _write

DAY = 86_400


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
