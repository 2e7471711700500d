"""Under CI=true, a skip of a test marked ``required_in_ci`` fails the run (and only then)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests import test_filesystem_faults

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
import pytest

@pytest.fixture
def no_mount():
    pytest.skip("no mount namespace here")

@pytest.mark.required_in_ci("only proof of X")
def test_required_skips_inside():
    pytest.skip("needs root")

@pytest.mark.required_in_ci(reason="only proof of Y")
@pytest.mark.skipif(True, reason="not on this machine")
def test_required_skipif():
    pass

@pytest.mark.required_in_ci("only proof of Z")
def test_required_fixture_skips(no_mount):
    pass

@pytest.mark.required_in_ci("runs")
def test_required_runs():
    pass

def test_optional_skips():
    pytest.skip("optional")

@pytest.mark.required_in_ci("slow one")
@pytest.mark.slow
def test_required_slow():
    pass
"""


def _pytest(tmp_path: Path, ci: str | None, *args: str) -> tuple[int, dict[str, str], str]:
    """Run pytest with the plugin on SUITE; exit status, outcome per test, output."""
    (tmp_path / "test_suite.py").write_text(SUITE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if ci is not None:
        env["CI"] = ci
    xml = tmp_path / f"report-{ci}-{len(args)}.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests._ci_required", "-p", "no:cacheprovider"]
        + ["-o", "markers=slow", f"--junitxml={xml}", "-q", "-rA", *args, "test_suite.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.attrib["name"]] = kinds[0] if kinds else "passed"
    return proc.returncode, outcomes, proc.stdout


def test_a_required_test_that_skips_fails_under_ci(tmp_path: Path) -> None:
    code, outcomes, out = _pytest(tmp_path, "true")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert outcomes == {
        "test_required_skips_inside": "failure",
        "test_required_skipif": "error",  # skipped at set-up: reported as a set-up error
        "test_required_fixture_skips": "error",
        "test_required_runs": "passed",
        "test_optional_skips": "skipped",  # not required: stays a skip
        "test_required_slow": "passed",
    }, out
    assert "required in CI (only proof of X), but skipped: needs root" in out
    assert "required in CI (only proof of Y), but skipped: not on this machine" in out
    assert "required in CI (only proof of Z), but skipped: no mount namespace here" in out


def test_outside_ci_a_required_skip_stays_a_skip(tmp_path: Path) -> None:
    for ci in (None, "false"):
        code, outcomes, out = _pytest(tmp_path, ci)
        assert code == pytest.ExitCode.OK, (ci, out)
        assert sorted(k for k, v in outcomes.items() if v == "skipped") == [
            "test_optional_skips",
            "test_required_fixture_skips",
            "test_required_skipif",
            "test_required_skips_inside",
        ], (ci, out)


def test_deselecting_a_required_test_fails_under_ci(tmp_path: Path) -> None:
    code, outcomes, out = _pytest(tmp_path, "true", "-m", "not slow", "-k", "runs or optional")
    assert code == pytest.ExitCode.TESTS_FAILED, out
    assert outcomes == {"test_required_runs": "passed", "test_optional_skips": "skipped"}
    assert "test_suite.py::test_required_slow: deselected (-m/-k) under CI=true" in out
    code, _, out = _pytest(tmp_path, None, "-m", "not slow", "-k", "runs or optional")
    assert code == pytest.ExitCode.OK, out


def test_this_suite_enforces_it_on_the_disk_fault_test(request: pytest.FixtureRequest) -> None:
    """The plugin is loaded here, the real ENOSPC/EROFS test carries the mark, and CI's
    script sets CI=true for `make test`."""
    assert request.config.pluginmanager.hasplugin("tests._ci_required")
    test = test_filesystem_faults.test_full_disk_and_read_only_mount_keep_dataset_and_registry
    assert any(m.name == "required_in_ci" for m in getattr(test, "pytestmark", []))
    script = (ROOT / ".ci" / "run").read_text()
    assert script.index("\nexport CI=true\n") < script.index("\nmake test\n")
