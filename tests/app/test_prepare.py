"""Which command lines set Prefect up: those that may run a flow or a server."""

from __future__ import annotations

import pytest

from flows.app.prepare import runs_flows


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "SRC", "--out", "W"], True),
        (["--verbose", "run", "SRC", "--out", "W"], True),
        (["--verbose", "train", "D", "--out", "R"], True),
        (["deploy", "serve"], True),
        (["predict", "1", "2", "--model", "M"], False),
        (["--verbose", "predict", "1", "2", "--model", "M"], False),
        (["models", "list", "--registry", "R"], False),
        (["--help"], False),
        (["train", "--help"], False),
        (["--verbose", "run", "--help"], False),
        ([], False),
    ],
)
def test_commands_that_run_flows_are_told_apart(args: list[str], expected: bool) -> None:
    assert runs_flows(args) is expected
