"""Tests CI must run: under ``CI=true`` a skip of one of them is a failure.

Mark a test ``@pytest.mark.required_in_ci("why")`` when it is the only proof of a promise
and it skips where the machine cannot run it (not root, no mount namespace, ...). Where
``CI`` is set (``.ci/run`` sets it), such a test that skips -- by ``pytest.skip``, a
``skip``/``skipif`` mark or a fixture -- is reported as failed with the skip's reason, and
one left out by ``-m`` or ``-k`` fails the session: CI cannot go green without running
it. Elsewhere (a developer's machine) the skip stays a skip.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); tested in ``tests/test_ci_required.py``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

MARKER = "required_in_ci"
_DESELECTED = pytest.StashKey[list[str]]()


def in_ci() -> bool:
    """Whether this run is CI's: ``CI`` set to a true value, as CI services set it."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reason): CI must run this test; under CI=true a skip of it is a failure",
    )
    config.stash[_DESELECTED] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    marker = item.get_closest_marker(MARKER)
    if marker is None or not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return report
    why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    why = why.removeprefix("Skipped: ")
    need = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
    report.outcome = "failed"
    report.longrepr = f"required in CI ({need}), but skipped: {why}"
    return report


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker(MARKER) is not None:
            item.config.stash[_DESELECTED].append(item.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left_out = session.config.stash.get(_DESELECTED, [])
    if left_out and in_ci() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    left_out = terminalreporter.config.stash.get(_DESELECTED, [])
    if left_out and in_ci():
        terminalreporter.section("required in CI, but deselected", red=True)
        for nodeid in left_out:
            terminalreporter.line(f"FAILED {nodeid}: deselected (-m/-k) under CI=true")
