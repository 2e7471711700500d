"""MovieLens readers on random garbage (hypothesis): a table or a ``DataFormatError``
naming a line, checked against the README's reference parser; and the config's source
formats."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cflib.errors import DataFormatError
from cflib.schema import RAW_RATINGS
from cflib.sources import movielens
from tests import _reference_lines as reference
from tests.sources._movielens import CSV_HEADER, ITEMS_HEADER, _flags, _write

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
