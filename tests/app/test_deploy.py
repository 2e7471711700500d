"""deploy/prefect.yaml points at real flows with parameters they accept."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def test_deployments_resolve_and_validate() -> None:
    spec = yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        path, name = deployment["entrypoint"].split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{name}")
        # Each flow takes one typed ``params`` model; what the file sets must come through.
        validated = flow.validate_parameters(deployment["parameters"])["params"]
        given = deployment["parameters"]["params"]
        assert validated.source == given["source"] and validated.work == given["work"]
        model = given.get("config", {}).get("train", {}).get("model")
        if model is not None:
            assert validated.config.train.model == model
        for schedule in deployment.get("schedules", []):
            assert len(schedule["cron"].split()) == 5
