"""The dependency audit that can be made where pip-audit cannot run.

pip-audit asks PyPI's JSON API for each locked version (``/pypi/NAME/VERSION/json``) or
OSV; some package mirrors serve neither, only ``/pypi/NAME/json``, which lists the
vulnerabilities of the *latest* release. That answers for every pin that is the latest
release, and for no other: this audits those pins, fails on any vulnerability found, and
names the pins it could not audit.

    python .ci/audit_latest.py constraints.txt
"""

from __future__ import annotations

import json
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


def _pypi(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as answer:
        data: dict[str, Any] = json.load(answer)
        return data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: audit_latest.py CONSTRAINTS", file=sys.stderr)
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
