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


@pytest.mark.parametrize(
    ("listing", "index"),
    [
        ("global.index-url='https://a.test/simple'\n", "https://a.test/simple"),
        (
            "global.index-url='https://a.test/simple'\ninstall.index-url='https://b.test/simple/'\n",
            "https://b.test/simple/",
        ),
        (
            "install.index-url='https://b.test/simple'\n:env:.index-url='https://c.test/+simple/'\n",
            "https://c.test/+simple/",
        ),
        ("global.extra-index-url='https://d.test/simple'\n", None),  # an extra index is not it
        ("", None),
    ],
)
def test_the_index_is_read_from_pips_configuration(
    audit_latest: ModuleType, listing: str, index: str | None
) -> None:
    assert audit_latest.configured_index(listing) == index


def test_json_api_addresses_beside_the_simple_index(audit_latest: ModuleType) -> None:
    url = audit_latest.json_url
    assert url("https://m.test/simple", "numpy") == "https://m.test/pypi/numpy/json"
    assert url("https://m.test/simple/", "tensorflow", "2.21.0") == (
        "https://m.test/pypi/tensorflow/2.21.0/json"
    )
    assert url("https://m.test/root/+simple/", "x") == "https://m.test/root/pypi/x/json"


def test_the_audit_asks_the_index_in_pip_index_url(audit_latest: ModuleType) -> None:
    import os
    import subprocess

    env = os.environ | {"PIP_INDEX_URL": "https://mirror.test/simple/"}
    script = str(ROOT / ".ci" / "audit_latest.py")
    done = subprocess.run(
        [sys.executable, script, "--json-url", "pyarrow", "26.0.0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "https://mirror.test/pypi/pyarrow/26.0.0/json"


def test_the_project_names_no_package_index_host() -> None:
    tracked = ["Makefile", ".ci/run", ".ci/audit_latest.py", "pyproject.toml", "README.md"]
    for name in tracked:
        text = (ROOT / name).read_text()
        assert "pypi.org" not in text and "pythonhosted" not in text, name
