"""Kaggle's combined_data_*.txt reader against tiny files written in the test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cflib.errors import DataFormatError, SourceError
from cflib.schema import RAW_RATINGS
from cflib.sources import _netflix_combined, movielens, netflix
from tests import _reference_lines as reference

# Three movies; movie 2 has no ratings, movie 3's block is long enough that ranges start
# far from its header.
BLOCKS = {
    1: ["5,3,2005-01-02", "7,1,2004-12-31"],
    2: [],
    3: [f"{100 + i},{i % 5 + 1},2003-0{i % 9 + 1}-1{i % 10}" for i in range(40)],
}


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    return path


def _combined_text(blocks: dict[int, list[str]]) -> str:
    return "".join(
        f"{movie}:\n" + "".join(f"{line}\n" for line in lines) for movie, lines in blocks.items()
    )


def _ranges(path: Path, chunk: int) -> pa.Table:
    parts = [
        netflix.read_combined_range(path, start=s, end=e)
        for s, e in movielens.byte_ranges(path, chunk)
    ]
    return pa.concat_tables(parts)


def _error(path: Path, start: int = 0, end: int | None = None) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        netflix.read_combined_range(path, start=start, end=end)
    return info.value


@pytest.fixture(autouse=True)
def _small_back_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Backwards searches cross several chunks even in these tiny files.
    monkeypatch.setattr(_netflix_combined, "BACK_CHUNK", 7)


# --- list_combined_files ---------------------------------------------------------------------


def test_list_combined_files_natural_order(tmp_path: Path) -> None:
    for n in (10, 2, 1, 9):
        _write(tmp_path / f"combined_data_{n}.txt", "1:\n")
    _write(tmp_path / "movie_titles.txt", "1,2000,A\n")
    names = [p.name for p in netflix.list_combined_files(tmp_path)]
    assert names == [f"combined_data_{n}.txt" for n in (1, 2, 9, 10)]


def test_list_combined_files_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="directory does not exist"):
        netflix.list_combined_files(tmp_path / "nope")
    with pytest.raises(SourceError, match=r"no combined_data_\*\.txt files"):
        netflix.list_combined_files(tmp_path)


# --- values ----------------------------------------------------------------------------------


def test_values_dtypes_and_rows(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.txt", "1:\n5,3,2005-01-02\n7,1,2004-12-31\n2:\n3:\n9,5,2000-02-29\n"
    )
    table = netflix.read_combined_range(path)
    assert table.schema == RAW_RATINGS
    assert table.num_rows == 3
    assert table.column("raw_user").to_pylist() == [5, 7, 9]
    assert table.column("raw_item").to_pylist() == [1, 1, 3]
    assert table.column("rating").to_pylist() == [3.0, 1.0, 5.0]
    assert table.column("date").to_pylist() == [
        dt.date(2005, 1, 2),
        dt.date(2004, 12, 31),
        dt.date(2000, 2, 29),
    ]


def test_crlf_blank_lines_missing_newline_and_empty(tmp_path: Path) -> None:
    lf = "1:\n5,3,2005-01-02\n\n7,1,2004-12-31\n2:\n\n9,5,2000-02-29"
    crlf = lf.replace("\n", "\r\n")
    expected = netflix.read_combined_range(_write(tmp_path / "lf.txt", lf + "\n"))
    for content in (lf, crlf, crlf + "\r\n", "\n\n" + lf):
        path = _write(tmp_path / "c.txt", content)
        assert netflix.read_combined_range(path).equals(expected)
        for chunk in (1, 3, 8):
            assert _ranges(path, chunk).equals(expected)
    for content in ("", "\n\n", "1:\n", "1:\n2:\n\n"):
        path = _write(tmp_path / "e.txt", content)
        assert netflix.read_combined_range(path).num_rows == 0
        assert _ranges(path, 1).num_rows == 0


@pytest.mark.parametrize("chunk", [1, 2, 5, 13, 64, 1000])
def test_ranges_equal_whole_file_and_training_files(tmp_path: Path, chunk: int) -> None:
    path = _write(tmp_path / "combined_data_1.txt", _combined_text(BLOCKS))
    whole = netflix.read_combined_range(path)
    assert whole.num_rows == sum(len(lines) for lines in BLOCKS.values())
    assert _ranges(path, chunk).equals(whole)
    training = tmp_path / "training_set"
    training.mkdir()
    files = [
        _write(training / f"mv_{movie:07d}.txt", _combined_text({movie: lines}))
        for movie, lines in BLOCKS.items()
    ]
    assert netflix.read_training_files(files).equals(whole)


def test_range_far_inside_a_block(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", _combined_text(BLOCKS))
    size = path.stat().st_size
    table = netflix.read_combined_range(path, start=size - 40, end=size - 20)
    assert table.num_rows >= 1
    assert set(table.column("raw_item").to_pylist()) == {3}


def test_bad_range_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", "1:\n")
    with pytest.raises(ValueError, match="`start` should be"):
        netflix.read_combined_range(path, start=-1)
    with pytest.raises(ValueError, match="`end` should be"):
        netflix.read_combined_range(path, start=2, end=1)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("9,6,2005-01-01", "rating '6' is not an integer in 1..5"),
        ("0,1,2005-01-01", "customer id '0' is not a positive integer"),
        (" 9,1,2005-01-01", "customer id ' 9' is not a positive integer"),
        ("9,1,2005-02-30", "bad date '2005-02-30'"),
        ("9,1", "expected 3 comma-separated fields"),
        ("12a:", "expected 'MovieID:', got '12a:'"),
        ("0:", "movie id '0' is not a positive integer"),
    ],
)
def test_malformed_line_in_a_later_range(tmp_path: Path, bad: str, reason: str) -> None:
    lines = _combined_text(BLOCKS).splitlines()
    lines.insert(30, bad)
    path = _write(tmp_path / "c.txt", "\n".join(lines) + "\n")
    start = len("\n".join(lines[:28])) + 1  # a range of lines 29.. (inside movie 3's block)
    error = _error(path, start, start + 200)
    assert (error.lineno, error.path) == (31, str(path))
    assert reason in error.reason
    assert _error(path).lineno == 31
    netflix.read_combined_range(path, start=0, end=start)  # the lines before are fine


def test_data_line_before_any_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", "\n5,3,2005-01-02\n7,1,2004-12-31\n1:\n9,5,2000-02-29\n")
    error = _error(path)
    assert error.lineno == 2
    assert "before any 'MovieID:' header" in error.reason
    # A range that starts after it, inside the headerless lines, names the same line.
    assert _error(path, 16).lineno == 2
    assert netflix.read_combined_range(path, start=32).num_rows == 1  # starts at a header


def test_bad_header_of_the_block_a_range_starts_inside(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", "1:\n5,3,2005-01-02\n0:\n9,5,2000-02-29\n9,5,2000-02-29\n")
    error = _error(path, 22)
    assert error.lineno == 3
    assert "movie id '0'" in error.reason


# --- garbage -----------------------------------------------------------------------------------

_LINE = st.one_of(
    st.sampled_from(["1:", "17:", "0:", "5,3,2005-01-02", "7,1,2004-12-31", "", "\r", ":"]),
    st.text(alphabet="0123456789,-:\r x", max_size=16),
)


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(lines=st.lists(_LINE, max_size=12), crlf=st.booleans(), chunk=st.integers(1, 40))
def test_garbage_lines(tmp_path: Path, lines: list[str], crlf: bool, chunk: int) -> None:
    text = ("\r\n" if crlf else "\n").join(lines)
    path = _write(tmp_path / "g.txt", text)
    # Against a parser written from the README, not the line rules the reader calls.
    expected = reference.netflix_combined(text)
    try:
        whole = netflix.read_combined_range(path)
    except DataFormatError as exc:
        assert isinstance(expected, reference.Bad), (text, exc)
        assert (exc.path, exc.lineno) == (str(path), expected.lineno), (text, exc)
        prefixes = [p for kind in expected.kinds for p in _REASONS[kind]]
        assert exc.reason.startswith(tuple(prefixes)), (text, exc.reason, expected)
        return
    assert not isinstance(expected, reference.Bad), (text, expected)
    assert list(zip(*whole.to_pydict().values(), strict=True)) == expected, text
    assert _ranges(path, chunk).equals(whole)


#: How the reader's reason starts for each kind of fault the reference finds.
_REASONS = {
    "header": ("expected 'MovieID:'", "movie id "),
    "before": ("data line ",),
    "fields": ("expected 3 comma-separated fields",),
    "customer": ("customer id ",),
    "rating": ("rating ",),
    "date": ("bad date ",),
}
