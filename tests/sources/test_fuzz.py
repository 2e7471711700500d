"""Fuzzing every parser: random bytes, BOMs, CRLF, huge lines, empty files, a missing
final newline, odd ids, ratings and dates. Lenient reads never raise and account for
every line exactly; strict reads succeed with the same rows or name a line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cflib.errors import DataFormatError
from cflib.sources import movielens, netflix
from cflib.sources.accounting import Report

Reader = Callable[[Path, Report | None], pa.Table]


def _ranged(read: Callable[..., pa.Table], cut: int = 37) -> Reader:
    """A reader over byte ranges of ``cut`` bytes, the way ingest shards a big file."""

    def run(path: Path, report: Report | None) -> pa.Table:
        return pa.concat_tables(
            read(path, start=s, end=e, report=report) for s, e in movielens.byte_ranges(path, cut)
        )

    return run


def _training(path: Path, report: Report | None) -> pa.Table:
    return netflix.read_training_files([path], report)


# name: (file name, reader, valid lines)
FORMATS: dict[str, tuple[str, Reader, list[str]]] = {
    "training": ("mv_0000001.txt", _training, ["1:", "10,3,2005-01-01", "20,5,1999-12-31"]),
    "combined": (
        "combined_data_1.txt",
        _ranged(netflix.read_combined_range),
        ["1:", "10,3,2005-01-01", "2:", "20,5,1999-12-31"],
    ),
    "probe": ("probe.txt", netflix.read_probe, ["1:", "10", "2:", "20"]),
    "qualifying": ("qualifying.txt", netflix.read_qualifying, ["1:", "10,2005-01-01"]),
    "titles": ("movie_titles.txt", netflix.read_movie_titles, ["1,2000,A, B", "2,NULL,C"]),
    "ml-100k": ("u.data", _ranged(movielens.read_ratings_100k), ["1\t2\t3\t881250949"]),
    "ml-1m": ("ratings.dat", _ranged(movielens.read_ratings_1m), ["1::2::3::978300760"]),
    "ml-csv": (
        "ratings.csv",
        _ranged(movielens.read_ratings_csv),
        ["userId,movieId,rating,timestamp", "1,2,3.5,964982703"],
    ),
    "u.item": (
        "u.item",
        movielens.read_items_100k,
        ["1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join("0" * 18 + "1")],
    ),
    "movies.dat": ("movies.dat", movielens.read_items_1m, ["1::Toy Story (1995)::Comedy"]),
    "movies.csv": (
        "movies.csv",
        movielens.read_items_csv,
        ["movieId,title,genres", '1,"Toy, Story (1995)",Comedy'],
    ),
    "u.user": ("u.user", movielens.read_users_100k, ["1|24|M|technician|85711"]),
    "users.dat": ("users.dat", movielens.read_users_1m, ["1::F::1::10::48067"]),
}

_ODD = st.sampled_from(
    [
        "",
        "\xef\xbb\xbf1:",  # a UTF-8 BOM (its bytes) before a header
        "0",
        "-1,3,2005-01-01",
        "99999999999999999999,3,2005-01-01",  # past int64
        "10,0,2005-01-01",
        "10,6,2005-01-01",
        "10,3,2005-02-30",
        "10,3,0000-01-01",
        "10,3",
        "7:",
        "x:",
        "1::2::9::978300760",
        "1,2,5.5,964982703",
        "1,2,3.5,99999999999999",
        "1\t2\t3",
        "1|2|3",
        '1,"a\rb",Drama',
        "\x00\x01",
        "é,ü",
        "x" * 5000,  # a huge line
    ]
)
_BYTES = st.binary(max_size=24).map(lambda b: b.replace(b"\n", b"").decode("latin-1"))


def _content(draw: st.DrawFn, valid: list[str]) -> bytes:
    lines = draw(
        st.lists(st.one_of(st.sampled_from(valid), _ODD, _BYTES), max_size=12)
        if draw(st.booleans())
        else st.just([])
    )
    if draw(st.booleans()):
        lines = [*valid, *lines]
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines) + (eol if lines and draw(st.booleans()) else "")
    data = text.encode("latin-1")
    if draw(st.booleans()):
        data = text.encode("utf-8")  # multi-byte characters where latin-1 is expected
    return data


@st.composite
def _cases(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(FORMATS)))
    return name, _content(draw, FORMATS[name][2])


def _lines(data: bytes) -> int:
    return data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_cases())
def test_every_parser_accounts_for_every_line(tmp_path: Path, case: tuple[str, bytes]) -> None:
    name, data = case
    file_name, read, _ = FORMATS[name]
    path = tmp_path / file_name
    path.write_bytes(data)

    report = Report()
    table = read(path, report)  # lenient: never raises
    tally = report.tallies.get(str(path))
    if tally is None:  # nothing was read: an empty file
        assert _lines(data) == 0
    else:
        assert tally.balanced() and tally.lines == _lines(data)
        assert tally.kept == table.num_rows and tally.quarantined == len(report.bad)
        assert all(b.line is not None and 1 <= b.line <= tally.lines for b in report.bad)
    try:
        strict = read(path, None)
    except DataFormatError as err:
        assert err.path == str(path) and (err.lineno is not None or not data.strip())
        return
    # Accepted whole: the lenient read found nothing to quarantine and kept the same rows.
    assert not report.bad and strict.equals(table)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_empty_file(tmp_path: Path, name: str) -> None:
    file_name, read, _ = FORMATS[name]
    path = tmp_path / file_name
    path.write_bytes(b"")
    report = Report()
    assert read(path, report).num_rows == 0 and not report.bad
