"""Netflix Prize readers against tiny files written in the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cflib.errors import DataFormatError, SourceError
from cflib.schema import RAW_ITEMS, RAW_PAIRS, RAW_QUALIFYING, RAW_RATINGS
from cflib.sources import netflix


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    return path


def _movie(tmp_path: Path, movie: int, content: str | bytes) -> Path:
    return _write(tmp_path / netflix.TRAINING_DIR / f"mv_{movie:07d}.txt", content)


def _error(call, *args) -> DataFormatError:  # type: ignore[no-untyped-def]
    with pytest.raises(DataFormatError) as info:
        call(*args)
    return info.value


# --- list_training_files ---------------------------------------------------------------------


def test_list_training_files_sorted(tmp_path: Path) -> None:
    for movie in (3, 1, 2):
        _movie(tmp_path, movie, f"{movie}:\n")
    _write(tmp_path / netflix.TRAINING_DIR / "README", "not a movie")
    names = [p.name for p in netflix.list_training_files(tmp_path)]
    assert names == ["mv_0000001.txt", "mv_0000002.txt", "mv_0000003.txt"]


def test_list_training_files_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="training_set: directory does not exist"):
        netflix.list_training_files(tmp_path)
    (tmp_path / netflix.TRAINING_DIR).mkdir()
    with pytest.raises(SourceError, match=r"no mv_\*\.txt files"):
        netflix.list_training_files(tmp_path)


# --- read_training_files ---------------------------------------------------------------------


def test_training_values_and_schema(tmp_path: Path) -> None:
    a = _movie(tmp_path, 1, "1:\n10,3,2005-09-06\n2649429,5,2004-02-29\n")
    b = _movie(tmp_path, 2, "2:\n007,1,1999-11-11\n")
    empty = _movie(tmp_path, 3, "3:\n")
    table = netflix.read_training_files([a, empty, b])
    assert table.schema == RAW_RATINGS
    assert table.column("raw_user").to_pylist() == [10, 2649429, 7]
    assert table.column("raw_item").to_pylist() == [1, 1, 2]
    assert table.column("rating").to_pylist() == [3.0, 5.0, 1.0]
    assert table.column("date").to_pylist() == [
        dt.date(2005, 9, 6),
        dt.date(2004, 2, 29),
        dt.date(1999, 11, 11),
    ]


def test_training_crlf_missing_newline_and_blank_lines(tmp_path: Path) -> None:
    crlf = _movie(tmp_path, 1, "1:\r\n10,3,2005-09-06\r\n11,4,2005-09-07")
    blanks = _movie(tmp_path, 2, "2:\n\n12,2,2005-01-01\n\r\n13,1,2005-01-02\n\n\n")
    header_only = _movie(tmp_path, 3, "3:")
    table = netflix.read_training_files([crlf, blanks, header_only])
    assert table.num_rows == 4
    assert table.column("raw_user").to_pylist() == [10, 11, 12, 13]
    assert table.column("raw_item").to_pylist() == [1, 1, 2, 2]
    assert netflix.read_training_files([]).num_rows == 0


@pytest.mark.parametrize(
    ("content", "lineno", "reason"),
    [
        ("", 1, "empty file"),
        ("foo\n10,3,2005-01-01\n", 1, "first line should be 'MovieID:', got 'foo'"),
        ("\n1:\n", 1, "first line should be 'MovieID:', got ''"),
        ("2:\n10,3,2005-01-01\n", 1, "movie id 2 does not match file name mv_0000001.txt"),
        ("0:\n", 1, "movie id '0' is not a positive integer"),
        ("1:\n10,3\n", 2, "expected 3 comma-separated fields (CustomerID,Rating,Date), got 2"),
        ("1:\n10,3,2005-01-01,x\n", 2, "expected 3 comma-separated fields"),
        ("1:\n10,7,2005-01-01\n", 2, "rating '7' is not an integer in 1..5"),
        ("1:\n10,0,2005-01-01\n", 2, "rating '0' is not an integer in 1..5"),
        ("1:\n10,3.0,2005-01-01\n", 2, "rating '3.0' is not an integer in 1..5"),
        ("1:\n10,3,2005-13-01\n", 2, "bad date '2005-13-01'"),
        ("1:\n10,3,2005-02-29\n", 2, "bad date '2005-02-29'"),
        ("1:\n10,3,0000-01-01\n", 2, "bad date '0000-01-01'"),
        ("1:\n10,3,20050101\n", 2, "bad date '20050101'"),
        ("1:\nabc,3,2005-01-01\n", 2, "customer id 'abc' is not a positive integer"),
        ("1:\n0,3,2005-01-01\n", 2, "customer id '0' is not a positive integer"),
        ("1:\n-5,3,2005-01-01\n", 2, "customer id '-5' is not a positive integer"),
        ("1:\n 10,3,2005-01-01\n", 2, "customer id ' 10' is not a positive integer"),
        ("1:\n0x1f,3,2005-01-01\n", 2, "customer id '0x1f' is not a positive integer"),
        ("1:\n,3,2005-01-01\n", 2, "customer id '' is not a positive integer"),
        ("1:\n99999999999999999999,3,2005-01-01\n", 2, "customer id '99999999999999999999'"),
        ("1:\n10,3,2005-01-01\n1:\n", 3, "unexpected header '1:'"),
        ("1:\n10,3,2005-01-01\n\n\n11,9,2005-01-01\n", 5, "rating '9'"),
        ("1:\r\n10,3,2005-01-01\r\n11,9,2005-01-01\r\n", 3, "rating '9'"),
        ("1:\n10,3,2005-01-01\r\r\n", 2, "bad date '2005-01-01\\r'"),
        ("1:\n10,3,2005\r-01-01\n", 2, "bad date"),
        ("1:\n10,3,2005-01-01\n11,5,2005-01-01\n12,6,bad\n13,7,2005-01-01", 4, "rating '6'"),
    ],
)
def test_training_malformed(tmp_path: Path, content: str, lineno: int, reason: str) -> None:
    good = _movie(tmp_path, 2, "2:\n10,3,2005-01-01\n")
    bad = _movie(tmp_path, 1, content)
    err = _error(netflix.read_training_files, [good, bad])
    assert (err.path, err.lineno) == (str(bad), lineno)
    assert reason in err.reason
    assert str(err).startswith(f"{bad}:{lineno}: ")


def test_training_reports_first_bad_file(tmp_path: Path) -> None:
    files = [_movie(tmp_path, m, f"{m}:\n10,3,2005-01-01\n") for m in range(1, 4)]
    _movie(tmp_path, 2, "2:\n10,3,2005-01-01\n11,8,2005-01-01\n")
    _movie(tmp_path, 3, "3:\nx\n")
    err = _error(netflix.read_training_files, files)
    assert (err.path, err.lineno) == (str(files[1]), 3)


def test_training_blank_lines_do_not_shift_later_files(tmp_path: Path) -> None:
    blanks = _movie(tmp_path, 1, "1:\n\n10,3,2005-01-01\n\n")
    bad = _movie(tmp_path, 2, "2:\n10,3,2005-01-01\n11,9,2005-01-01\n")
    err = _error(netflix.read_training_files, [blanks, bad])
    assert (err.path, err.lineno) == (str(bad), 3)


def test_training_non_standard_name_skips_name_check(tmp_path: Path) -> None:
    path = _write(tmp_path / "movie.txt", "42:\n10,3,2005-01-01\n")
    assert netflix.read_training_files([path]).column("raw_item").to_pylist() == [42]


# --- probe and qualifying --------------------------------------------------------------------


def test_probe_values(tmp_path: Path) -> None:
    path = _write(tmp_path / "probe.txt", "1:\r\n30878\r\n2647871\r\n\r\n8:\n1\n9:\n10:\n5")
    table = netflix.read_probe(path)
    assert table.schema == RAW_PAIRS
    assert table.column("raw_item").to_pylist() == [1, 1, 8, 10]
    assert table.column("raw_user").to_pylist() == [30878, 2647871, 1, 5]


@pytest.mark.parametrize(
    ("content", "lineno", "reason"),
    [
        ("30878\n1:\n", 1, "data line '30878' before any 'MovieID:' header"),
        ("\n\n5\n", 3, "before any 'MovieID:' header"),
        ("1:\n10,2\n", 2, "expected 1 field (CustomerID), got 2"),
        ("1:\n10\nx:\n", 3, "expected 'MovieID:', got 'x:'"),
        ("1:\n10\n0:\n", 3, "movie id '0' is not a positive integer"),
        ("1:\n10\n0\n", 3, "customer id '0' is not a positive integer"),
        ("1:\n10\n1é\n", 3, "customer id '1é' is not a positive integer"),
        ("1:\n99999999999999999999\n", 2, "customer id '99999999999999999999'"),
        ("99999999999999999999:\n1\n", 1, "movie id '99999999999999999999'"),
    ],
)
def test_probe_malformed(tmp_path: Path, content: str, lineno: int, reason: str) -> None:
    path = _write(tmp_path / "probe.txt", content)
    err = _error(netflix.read_probe, path)
    assert (err.path, err.lineno) == (str(path), lineno)
    assert reason in err.reason


def test_qualifying_values(tmp_path: Path) -> None:
    content = "1:\n1046323,2005-12-19\n1080030,2005-12-23\n10:\n1952305,2005-10-19"
    table = netflix.read_qualifying(_write(tmp_path / "q.txt", content))
    assert table.schema == RAW_QUALIFYING
    assert table.column("raw_item").to_pylist() == [1, 1, 10]
    assert table.column("raw_user").to_pylist() == [1046323, 1080030, 1952305]
    assert table.column("date").to_pylist()[2] == dt.date(2005, 10, 19)


@pytest.mark.parametrize(
    ("content", "lineno", "reason"),
    [
        ("\n1046323,2005-12-19\n", 2, "before any 'MovieID:' header"),
        ("1:\n1046323\n", 2, "expected 2 comma-separated fields (CustomerID,Date), got 1"),
        ("1:\n1,2005-01-01\n2,2005-02-30\n", 3, "bad date '2005-02-30'"),
        ("1:\n1,0000-01-01\n", 2, "bad date '0000-01-01'"),
        ("1:\n0,2005-01-01\n", 2, "customer id '0' is not a positive integer"),
        ("1:\n1,2005-01-01,3\n", 2, "got 3"),
    ],
)
def test_qualifying_malformed(tmp_path: Path, content: str, lineno: int, reason: str) -> None:
    path = _write(tmp_path / "q.txt", content)
    err = _error(netflix.read_qualifying, path)
    assert (err.path, err.lineno) == (str(path), lineno)
    assert reason in err.reason


# --- movie titles ----------------------------------------------------------------------------


def test_titles_values(tmp_path: Path) -> None:
    content = "1,2003,Dinosaur Planet\r\n2,NULL,Amélie, or: Paris, 2001\r\n\r\n3,1896,Café\r\n"
    table = netflix.read_movie_titles(_write(tmp_path / "t.txt", content.encode("latin-1")))
    assert table.schema == RAW_ITEMS
    assert table.column("raw_item").to_pylist() == [1, 2, 3]
    assert table.column("year").to_pylist() == [2003, None, 1896]
    assert table.column("title").to_pylist() == [
        "Dinosaur Planet",
        "Amélie, or: Paris, 2001",
        "Café",
    ]


@pytest.mark.parametrize(
    ("content", "lineno", "reason"),
    [
        ("1,2003,A\n2,200,B\n", 2, "year '200' is not 4 digits or NULL"),
        ("1,2003\n", 1, "expected 3 comma-separated fields (MovieID,Year,Title), got 2"),
        ("1,2003,\n", 1, "empty title"),
        ("a,2003,A\n", 1, "movie id 'a' is not a positive integer"),
        ("1,null,A\n", 1, "year 'null'"),
        ("1,2003,A\n2,2003,B\n\n1,2004,C\n", 4, "movie id 1 already on line 1"),
    ],
)
def test_titles_malformed(tmp_path: Path, content: str, lineno: int, reason: str) -> None:
    path = _write(tmp_path / "t.txt", content)
    err = _error(netflix.read_movie_titles, path)
    assert (err.path, err.lineno) == (str(path), lineno)
    assert reason in err.reason


# --- random garbage: a table or a DataFormatError with a line, never anything else ----------

_ALPHABET = "0123456789,-:\r \tx.é+N"
_garbage = st.lists(
    st.one_of(
        st.text(_ALPHABET, max_size=14),
        st.sampled_from(["5:", "12,3,2005-01-01", "7,2005-01-01", "9,NULL,T, t", "0", "1,-0"]),
    ),
    max_size=5,
)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(lines=_garbage, crlf=st.booleans())
def test_garbage_lines_training(tmp_path_factory: pytest.TempPathFactory, lines, crlf) -> None:  # type: ignore[no-untyped-def]
    eol = "\r\n" if crlf else "\n"
    content = eol.join(["1:", "10,3,2005-01-01", *lines])
    path = _movie(tmp_path_factory.mktemp("g"), 1, content)
    try:
        table = netflix.read_training_files([path])
    except DataFormatError as err:
        assert err.lineno is not None and err.path == str(path)  # never the fallback
        return
    body = [line.removesuffix("\r") for line in content.split("\n")[1:]]
    assert table.num_rows == sum(1 for line in body if line)


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=_garbage, which=st.sampled_from(["probe", "qualifying", "titles"]))
def test_garbage_lines_other_files(tmp_path: Path, lines, which) -> None:  # type: ignore[no-untyped-def]
    valid, reader = {
        "probe": ("1:\n10", netflix.read_probe),
        "qualifying": ("1:\n10,2005-01-01", netflix.read_qualifying),
        "titles": ("1,2000,Title", netflix.read_movie_titles),
    }[which]
    path = _write(tmp_path / f"{which}.txt", "\n".join([valid, *lines]))
    try:
        table = reader(path)
    except DataFormatError as err:
        assert err.lineno is not None and err.path == str(path)
        return
    assert isinstance(table, pa.Table) and table.num_rows >= 1
