"""`.ci/audit_latest.py`: the audit made from PyPI's latest-release advisories."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audit_latest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_latest", ROOT / ".ci" / "audit_latest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


PYPI: dict[str, dict[str, Any]] = {
    "clean": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "holed": {
        "info": {"version": "2.0"},
        "vulnerabilities": [
            {"id": "PYSEC-1", "fixed_in": ["2.0.1"], "withdrawn": None},
            {"id": "GHSA-old", "fixed_in": [], "withdrawn": "2026-01-01T00:00:00"},
            {"id": "GHSA-open", "fixed_in": [], "withdrawn": None},
        ],
    },
    "behind": {"info": {"version": "9.0"}, "vulnerabilities": []},
    "stripped": {"info": {"version": "3.0"}},
}


def fetch(name: str) -> dict[str, Any]:
    if name not in PYPI:
        raise OSError("404 Not Found")
    return PYPI[name]


def test_pins_are_read_without_comments_or_markers(audit_latest: ModuleType) -> None:
    lines = ["# locked", "", "clean==1.0", "holed == 2.0 ; python_version < '4'  # why", "-e ."]
    assert audit_latest.read_pins(lines) == [("clean", "1.0"), ("holed", "2.0")]


def test_latest_pins_are_audited_and_the_others_named(audit_latest: ModuleType) -> None:
    pins = [("clean", "1.0"), ("holed", "2.0"), ("behind", "8.1"), ("gone", "1.0")]
    pins.append(("stripped", "3.0"))
    report = audit_latest.audit(pins, fetch)
    assert report.audited == ["clean==1.0", "holed==2.0"]
    assert report.vulnerable == [
        "holed==2.0: PYSEC-1 (fixed in 2.0.1)",
        "holed==2.0: GHSA-open (fixed in no fix yet)",
    ]
    assert report.not_audited == [
        "behind==8.1: not the latest release (9.0)",
        "gone==1.0: OSError: 404 Not Found",
        "stripped==3.0: the answer lists no advisories",
    ]


def test_exit_status_and_summary(
    audit_latest: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(audit_latest, "_pypi", fetch)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("clean==1.0\nbehind==8.1\n")
    assert audit_latest.main([str(constraints)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "not audited behind==8.1: not the latest release (9.0)",
        f"audited 1 of 2 pins in {constraints} against PyPI's advisories for their latest "
        "releases: 0 vulnerable, 1 not audited",
    ]
    constraints.write_text("holed==2.0\n")
    assert audit_latest.main([str(constraints)]) == 1
    assert audit_latest.main([str(tmp_path / "missing.txt")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.txt: No such file or directory")
