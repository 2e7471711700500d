"""Shared fixtures: tiny hand-written Netflix directories and a Prefect test server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

# Under CI=true a skipped @pytest.mark.required_in_ci test fails the run (tests/_ci_required.py).
pytest_plugins = ["tests._ci_required"]

# movie id -> lines after the "MovieID:" header
MOVIES = {
    1: ["10,3,2005-09-06", "20,5,2005-05-13", "30,4,2004-10-19", "40,1,2005-12-26"],
    2: ["10,4,2003-01-01", "30,2,2004-02-02", "50,5,2005-03-03"],
    3: ["20,1,2002-06-30", "40,3,2001-01-15", "50,4,2000-07-04", "60,2,1999-12-31"],
}
PROBE = {1: [20], 3: [50, 60]}
QUALIFYING = {2: ["20,2005-10-01", "60,2005-11-11"], 3: ["10,2005-01-02"]}
TITLES = ["1,2003,Dinosaur Planet", "2,NULL,Isle of Man TT, 2004 Review", "3,1997,Caf\xe9 Noir"]


@contextlib.contextmanager
def held_elsewhere(code: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``code`` in another Python process until the block ends (then kill it). The
    code prints ``held`` once it holds what it takes (a lock); the block starts then."""
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def write_netflix(
    root: Path, movies: dict[int, list[str]] = MOVIES, *, extras: bool = True
) -> Path:
    """A tiny Netflix Prize directory written by hand."""
    training = root / "training_set"
    training.mkdir(parents=True)
    for movie, lines in movies.items():
        text = f"{movie}:\n" + "".join(f"{line}\n" for line in lines)
        (training / f"mv_{movie:07d}.txt").write_text(text)
    if extras:
        blocks = "".join(f"{m}:\n" + "".join(f"{u}\n" for u in us) for m, us in PROBE.items())
        (root / "probe.txt").write_text(blocks)
        blocks = "".join(f"{m}:\n" + "".join(f"{x}\n" for x in xs) for m, xs in QUALIFYING.items())
        (root / "qualifying.txt").write_text(blocks)
        (root / "movie_titles.txt").write_bytes(("\n".join(TITLES) + "\n").encode("iso-8859-1"))
    return root


@pytest.fixture
def netflix_dir(tmp_path: Path) -> Path:
    return write_netflix(tmp_path / "netflix")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (about 11 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session", autouse=True)
def _session_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every subprocess a test starts (`cfpipe` commands, servers, scripts) inherits a
    PREFECT_HOME of the session's, never the user's ``~/.prefect`` (its profiles, its
    database); a test that needs one of its own sets it in the child's environment."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    yield
    patch.undo()
