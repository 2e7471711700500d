"""The dependency audit that can be made where pip-audit cannot run.

pip-audit asks PyPI's JSON API for each locked version (``/pypi/NAME/VERSION/json``) or
OSV; some package mirrors serve neither, only ``/pypi/NAME/json``, which lists the
vulnerabilities of the *latest* release. That answers for every pin that is the latest
release, and for no other: this audits those pins, fails on any vulnerability found, and
names the pins it could not audit.

    python .ci/audit_latest.py constraints.txt
    python .ci/audit_latest.py --json-url NAME [VERSION]   # where the JSON API is

The package index is pip's own (``PIP_INDEX_URL``, ``pip config``, else pip's default), so
the audit asks the index the installs came from, behind any mirror; the project names no
host.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Fetch = Callable[[str], dict[str, Any]]


@dataclass
class Report:
    audited: list[str] = field(default_factory=list)
    vulnerable: list[str] = field(default_factory=list)  # "name==version: ID (fixed in ...)"
    not_audited: list[str] = field(default_factory=list)  # "name==version: why"


def read_pins(lines: Iterable[str]) -> list[tuple[str, str]]:
    """``name==version`` lines of a constraints file (comments, markers and blanks skipped)."""
    pins = []
    for line in lines:
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins.append((name, version))
    return pins


def audit(pins: list[tuple[str, str]], fetch: Fetch) -> Report:
    """Audit ``pins`` with ``fetch(name)``, which returns PyPI's ``/pypi/NAME/json``."""

    def one(pin: tuple[str, str]) -> tuple[str, str, dict[str, Any] | str]:
        try:
            return (*pin, fetch(pin[0]))
        except Exception as exc:  # reported as not audited, never as clean
            return (*pin, f"{type(exc).__name__}: {exc}")

    report = Report()
    with ThreadPoolExecutor(8) as pool:
        for name, version, answer in pool.map(one, pins):
            pin = f"{name}=={version}"
            if isinstance(answer, str):
                report.not_audited.append(f"{pin}: {answer}")
                continue
            latest = answer.get("info", {}).get("version")
            if latest != version:
                report.not_audited.append(f"{pin}: not the latest release ({latest})")
                continue
            if not isinstance(answer.get("vulnerabilities"), list):  # a mirror that strips them
                report.not_audited.append(f"{pin}: the answer lists no advisories")
                continue
            report.audited.append(pin)
            for vuln in answer["vulnerabilities"]:
                if vuln.get("withdrawn"):
                    continue
                fixed = ", ".join(vuln.get("fixed_in") or []) or "no fix yet"
                report.vulnerable.append(f"{pin}: {vuln.get('id')} (fixed in {fixed})")
    return report


def configured_index(pip_config_list: str) -> str | None:
    """The index URL in ``pip config list`` output: the environment's (``:env:``) over the
    ``install`` section's over the ``global`` one's; None where none is set."""
    found = dict(
        re.findall(r"^(:env:|install|global)\.index-url='([^']*)'$", pip_config_list, re.M)
    )
    return next((found[k] for k in (":env:", "install", "global") if found.get(k)), None)


def pip_index() -> str:
    """The package index pip installs from: its configuration, else its built-in default."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    index = configured_index(listing)
    if index is None:
        # pip's default index, read from pip (a private module of pip's; only its URL is used).
        from pip._internal.models.index import PyPI

        index = PyPI.simple_url
    return index


def json_url(index: str, name: str, version: str | None = None) -> str:
    """The JSON API address of ``name`` (and ``version``) beside a PEP 503 ``/simple`` index,
    as PyPI and its mirrors lay it out: ``ROOT/simple/`` -> ``ROOT/pypi/NAME[/VERSION]/json``."""
    root = re.sub(r"/\+?simple/?$", "", index.rstrip("/") + "/")
    return f"{root.rstrip('/')}/pypi/{name}/{version + '/' if version else ''}json"


def _pypi(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(json_url(pip_index(), name), timeout=30) as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def main(argv: list[str]) -> int:
    if argv[:1] == ["--json-url"] and len(argv) in (2, 3):
        print(json_url(pip_index(), *argv[1:]))
        return 0
    if len(argv) != 1:
        print("usage: audit_latest.py CONSTRAINTS | --json-url NAME [VERSION]", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        pins = read_pins(path.read_text().splitlines())
    except OSError as exc:
        print(f"audit_latest.py: {path}: {exc.strerror}", file=sys.stderr)
        return 2
    report = audit(pins, _pypi)
    for line in report.vulnerable:
        print(f"VULNERABLE {line}")
    for line in report.not_audited:
        print(f"not audited {line}")
    print(
        f"audited {len(report.audited)} of {len(pins)} pins in {path} against PyPI's "
        f"advisories for their latest releases: {len(report.vulnerable)} vulnerable, "
        f"{len(report.not_audited)} not audited"
    )
    return 1 if report.vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
