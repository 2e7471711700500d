"""Every fenced code block of README.md runs, or is listed here with why it cannot.

The rules (README.md, "Development"): a block says what it is in its info string.
``text`` blocks are output, layouts and diagrams, and are not run. ``python`` blocks and
the ``$ `` lines of ``console`` blocks run in a directory where ``cfpipe demo --out
demo-work`` has run, so the paths they name (``demo-work/...``) are the demo's; the
other lines of a ``console`` block are the output, which is checked for its shape (the
same number of lines, the same header line). ``yaml`` blocks are checked as a
``--config`` file. ``sh`` blocks, and any block of another kind, must be in ``SKIPPED``
with the reason; a new block that is in none of these fails the fast test below, and so
does a ``SKIPPED`` entry that no longer matches a block.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cflib.config import PipelineConfig
from flows.app.options import load_config_file
from tests import _prefect_api as api

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN = frozenset({"python", "console"})
NOT_RUN = frozenset({"text"})

#: Blocks that cannot run in a test, by a string only that block holds: why, and where
#: the same commands are tested instead.
SKIPPED = {
    "make demo   # creates .venv": "sets up a virtualenv from the package index; the "
    "pipeline it then runs is `cfpipe demo`, which this test runs first",
    "cfpipe server                                   # UI at": "`cfpipe server` serves "
    "until it is stopped, and `/data/netflix` is the real Netflix data; "
    "tests/app/test_cli_commands.py starts `cfpipe server`, tests/app/test_cli_e2e.py "
    "runs `cfpipe run` against a Prefect server",
    "cfpipe deploy serve                              # runs": "serves until stopped, on "
    "the real data's paths; tests/app/test_deployments.py serves the same file with a "
    "real `prefect server`",
    "prefect work-pool create": "a work pool and its workers, meant for several machines; "
    "tests/flows/test_cancel.py runs a deployment's flow in a `process` work pool's "
    "`prefect worker start`",
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str


def blocks() -> list[Block]:
    """The fenced blocks of README.md, in order."""
    out, lines = [], README.read_text().splitlines()
    start: int | None = None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if start is None:
                start, lang, body = number, line[3:].strip(), []
            else:
                out.append(Block(start, lang, "\n".join(body)))
                start = None
        elif start is not None:
            body.append(line)
    assert start is None, f"README.md:{start}: a code block is never closed"
    return out


def _skip_reason(block: Block) -> str | None:
    found = [reason for key, reason in SKIPPED.items() if key in block.text]
    assert len(found) <= 1, f"README.md:{block.line}: several SKIPPED entries match"
    return found[0] if found else None


def test_every_block_is_run_or_skipped_with_a_reason() -> None:
    unlisted = []
    for block in blocks():
        reason = _skip_reason(block)
        runs = block.lang in RUN or block.lang == "yaml"
        if block.lang in NOT_RUN or (runs and reason is None) or (not runs and reason):
            continue
        unlisted.append(f"README.md:{block.line}: ```{block.lang or '(no language)'}")
    assert not unlisted, f"neither run nor in SKIPPED (see this file's docstring): {unlisted}"
    texts = [b.text for b in blocks()]
    stale = [key for key in SKIPPED if not any(key in t for t in texts)]
    assert not stale, f"SKIPPED entries that match no README block: {stale}"


@pytest.mark.parametrize(
    "block", [b for b in blocks() if b.lang == "yaml"], ids=lambda b: f"README.md:{b.line}"
)
def test_yaml_blocks_are_valid_config_files(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(block.text)
    PipelineConfig.model_validate(load_config_file(path, PipelineConfig))


# --- the blocks that run, after `cfpipe demo` ---------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A directory where `cfpipe demo --out demo-work` has run (as `make demo` runs it)."""
    cwd = tmp_path_factory.mktemp("readme")
    env = api.cli_env(cwd) | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "flows.app", "demo", "--out", "demo-work"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd, env


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows after it) of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            assert out, f"README.md:{block.line}: output before any `$ ` command"
            out[-1][1].append(line)
    return out


def _runnable() -> list[Block]:
    return [b for b in blocks() if b.lang in RUN and _skip_reason(b) is None]


@pytest.mark.slow
@pytest.mark.parametrize("block", _runnable(), ids=lambda b: f"README.md:{b.line}")
def test_block_runs(block: Block, demo: tuple[Path, dict[str, str]]) -> None:
    cwd, env = demo
    if block.lang == "python":
        done = subprocess.run(
            [sys.executable, "-c", block.text],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"README.md:{block.line}:\n{done.stderr[-3000:]}"
        return
    for command, shown in _commands(block):
        argv = shlex.split(command)
        assert argv[0] == "cfpipe", f"README.md:{block.line}: only cfpipe commands run: {command}"
        done = subprocess.run(
            [sys.executable, "-m", "flows.app", *argv[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"README.md:{block.line}: {command}\n{done.stderr[-3000:]}"
        printed = done.stdout.rstrip("\n").splitlines()
        assert len(printed) == len(shown), (command, printed, shown)
        if shown and not re.search(r"\d", shown[0]):  # a header line is printed as shown
            assert printed[0].split() == shown[0].split(), (command, printed[0])


def test_the_runs_use_the_demo_s_paths() -> None:
    """What the run blocks name exists after `cfpipe demo`: the README shows the demo's
    paths, not placeholders (REG/..., /data/...) that a reader would have to replace."""
    for block in _runnable():
        assert "REG/" not in block.text and "/data/" not in block.text, block.line
