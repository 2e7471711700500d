"""deploy/prefect.yaml points at real flows with parameters they accept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from flows.app import deployments

ROOT = Path(__file__).resolve().parents[2]


def test_deployments_resolve_and_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CFPIPE_NETFLIX", "CFPIPE_MOVIELENS", "CFPIPE_WORK"):
        monkeypatch.setenv(name, f"/srv/{name.lower()}")
    file = ROOT / "deploy" / "prefect.yaml"
    spec = yaml.safe_load(file.read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{name}")
        # Each flow takes one typed ``params`` model; what the file sets must come through,
        # its paths filled from the environment as `prefect deploy` fills them.
        filled = deployments.fill_parameters(file, deployment)
        validated = flow.validate_parameters(filled)["params"]
        given = filled["params"]
        assert given["source"].startswith("/srv/cfpipe_") and "{{" not in given["work"]
        assert validated.source == given["source"] and validated.work == given["work"]
        model = given.get("config", {}).get("train", {}).get("model")
        if model is not None:
            assert validated.config.train.model == model
        for schedule in deployment.get("schedules", []):
            assert len(schedule["cron"].split()) == 5
