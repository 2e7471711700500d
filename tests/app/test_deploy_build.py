"""The deployments file without a server: the shipped deploy/prefect.yaml built and
validated, `cfpipe deploy serve`'s one-line refusals of an unset variable or a missing
source, and bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cflib.errors import ConfigError
from flows.app import deployments

ROOT = Path(__file__).resolve().parents[2]


SHIPPED_VARIABLES = ("CFPIPE_NETFLIX", "CFPIPE_MOVIELENS", "CFPIPE_WORK")


@pytest.fixture
def shipped_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The variables the shipped deploy/prefect.yaml names, set to directories that exist."""
    for name in SHIPPED_VARIABLES:
        (tmp_path / name).mkdir()
        monkeypatch.setenv(name, str(tmp_path / name))
    return tmp_path


def test_repository_deployments_build_and_validate(shipped_env: Path) -> None:
    built = deployments.build(deployments.DEFAULT_FILE, check_paths=True)
    assert {d.name for d in built} == {
        "nightly-netflix",
        "adhoc-movielens",
        "weekly-model-comparison",
    }
    nightly = next(d for d in built if d.name == "nightly-netflix")
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"
    # Paths from the environment; the file names no machine's directories.
    assert nightly.parameters["params"]["source"] == str(shipped_env / "CFPIPE_NETFLIX")
    assert nightly.parameters["params"]["work"] == f"{shipped_env / 'CFPIPE_WORK'}/netflix"
    text = (ROOT / "deploy" / "prefect.yaml").read_text()
    assert "/data/" not in text and "/var/lib/" not in text
    # Shipped schedules start paused: nothing runs at 02:00 before the paths are set.
    assert [s.active for d in built for s in d.schedules] == [False, False]
    # The UI's form comes from the flow's parameter schema: one typed `params` object.
    from prefect.utilities.callables import parameter_schema

    from flows.pipeline import pipeline_flow

    schema = parameter_schema(pipeline_flow.fn)
    assert list(schema.properties) == ["params"] and nightly.enforce_parameter_schema
    # The search's options are fields of the form's train section, with their limits.
    train = schema.model_dump()["definitions"]["TrainConfig"]["properties"]
    assert train["tune"]["default"] is True
    # An optional field is a plain input: no null branch, its limit on the field itself.
    assert train["tune_budget"]["exclusiveMinimum"] == 0 and "anyOf" not in train["tune_budget"]
    assert nightly.parameters["params"]["config"]["train"]["tune_budget"] == 3600


def test_serve_check_names_the_unset_variable_or_the_missing_source(
    shipped_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFPIPE_NETFLIX")
    with pytest.raises(ConfigError) as unset:
        deployments.build(deployments.DEFAULT_FILE, check_paths=True)
    assert str(unset.value) == (
        f"{deployments.DEFAULT_FILE}: deployment nightly-netflix: CFPIPE_NETFLIX is not set; "
        "export it (see the comments in the file) or serve the others with --only"
    )
    # --only serves the deployments whose variables are set.
    [adhoc] = deployments.build(deployments.DEFAULT_FILE, ["adhoc-movielens"], check_paths=True)
    assert adhoc.parameters["params"]["source"] == str(shipped_env / "CFPIPE_MOVIELENS")
    monkeypatch.setenv("CFPIPE_NETFLIX", str(shipped_env / "nowhere"))
    with pytest.raises(ConfigError) as missing:
        deployments.build(deployments.DEFAULT_FILE, check_paths=True)
    assert str(missing.value) == (
        f"{deployments.DEFAULT_FILE}: deployment nightly-netflix: source "
        f"{shipped_env / 'nowhere'} (from CFPIPE_NETFLIX) does not exist"
    )
    assert "\n" not in str(unset.value) + str(missing.value)


def test_cfpipe_deploy_serve_refuses_an_unset_variable_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SHIPPED_VARIABLES}
    env |= {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "flows.app", "deploy", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cfpipe: error: {deployments.DEFAULT_FILE}: deployment nightly-netflix: "
        "CFPIPE_NETFLIX is not set; export it (see the comments in the file) or serve the "
        "others with --only"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments: []", "no `deployments` list"),
        ("deployments:\n  - name: x", "deployment 1 has no `entrypoint`"),
        (
            "deployments:\n  - name: x\n    entrypoint: flows/pipeline.py:pipeline_flow\n"
            "    parameters: {params: {source: 1}}",
            "deployment x:",
        ),
        (
            "deployments:\n  - name: x\n    entrypoint: flows/pipeline.py:pipeline_flow\n"
            "    schedules: [{every: 3}]\n    parameters: {params: {source: a, work: b}}",
            "a schedule needs cron or interval",
        ),
        ("deployments: [", "not valid YAML"),
    ],
)
def test_bad_deployment_files(tmp_path: Path, text: str, message: str, shipped_env: Path) -> None:
    path = tmp_path / "deploy" / "prefect.yaml"
    path.parent.mkdir()
    path.write_text(text)
    (tmp_path / "flows").symlink_to(ROOT / "flows")
    with pytest.raises(ConfigError, match=message):
        deployments.build(path)
    with pytest.raises(ConfigError, match="--only nope: no such deployment"):
        deployments.build(deployments.DEFAULT_FILE, ["nope"])
