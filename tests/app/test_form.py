"""The Prefect run form: written for a user, every field's default shown, every invalid
field reported at once.

The UI renders a deployment's form from its flow's parameter schema (Prefect's
``parameter_schema``), and checks the values against that schema; the flow then validates
them with pydantic. Both are checked here on the flows that deployments run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate

from cflib.config import MODEL_NAMES, PipelineConfig, TrainConfig
from cflib.errors import ConfigError
from cflib.models.catalog import resolve
from flows.app import deployments
from flows.app.options import build, load_config_file
from flows.compare import compare_flow
from flows.ingest import ingest_flow
from flows.pipeline import pipeline_flow

FLOWS = {"pipeline": pipeline_flow, "compare-models": compare_flow, "ingest": ingest_flow}

#: Text meant for developers: CLI flags, module paths, reST literals, Python's None,
#: snake_case names, or talk about the UI itself.
DEVELOPER_TEXT = re.compile(
    r"--[a-z]|\bcflib\b|\bflows\.|``|\bNone\b|\b[a-z0-9]+_[a-z0-9_]+\b|Prefect UI|\.py\b"
)


def _schema(name: str) -> dict[str, Any]:
    return parameter_schema(FLOWS[name]).model_dump()


def _fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(where, property schema, required) of every field of every object in the schema."""
    objects = [("", schema), *schema["definitions"].items()]
    return [
        (f"{owner}.{name}", prop, name in obj.get("required", ()))
        for owner, obj in objects
        for name, prop in obj["properties"].items()
    ]


@pytest.mark.parametrize("name", list(FLOWS))
def test_form_text_is_for_users(name: str) -> None:
    schema = _schema(name)
    texts = [(where, p.get(k, "")) for where, p, _ in _fields(schema) for k in ("title",)]
    texts += [(where, p.get("description", "")) for where, p, _ in _fields(schema)]
    texts += [(key, d.get(k, "")) for key, d in schema["definitions"].items() for k in d]
    texts = [(where, t) for where, t in texts if isinstance(t, str)]
    bad = [(where, text) for where, text in texts if DEVELOPER_TEXT.search(text)]
    assert not bad
    for where, prop, _ in _fields(schema):
        if where != ".params":  # Prefect titles the flow's argument by its name
            assert prop.get("title") or "$ref" in prop, where


@pytest.mark.parametrize("name", list(FLOWS))
def test_every_field_shows_its_default_and_none_is_a_type_toggle(name: str) -> None:
    for where, prop, required in _fields(_schema(name)):
        assert "anyOf" not in prop and prop.get("type") != "null", where
        if required or "$ref" in prop:  # a nested object: its own fields show theirs
            continue
        assert "default" in prop or "Default: " in prop["description"], where
        assert prop.get("default", 0) is not None, where


def _worded_defaults(description: str) -> dict[str, str]:
    """model -> its default as the description words it ("0.05 for dot and deep; ...")."""
    said = description.split("Default: ", 1)[1].rstrip(".")
    said = re.sub(r", at most .*", "", said)
    out = {}
    for group in said.split("; "):
        if group.startswith("not used by "):
            group = "not used by for " + group.removeprefix("not used by ")
        value, _, names = group.partition(" for ")
        names_ = MODEL_NAMES if names == "every model" else re.split(r", | and ", names)
        out |= {n: value for n in names_}
    return out


@pytest.mark.parametrize("field", ["embedding_dim", "l2", "l2_bias", "hidden", "dropout"])
def test_per_model_defaults_in_the_form_are_the_catalogue_s(field: str) -> None:
    worded = _worded_defaults(TrainConfig.model_fields[field].description or "")
    assert set(worded) == set(MODEL_NAMES)
    for model in MODEL_NAMES:
        value = getattr(resolve(TrainConfig(model=model)), field)
        if worded[model] == "not used by":
            assert value is None, (model, field)
        elif worded[model] == "the L2 weight":
            assert value == resolve(TrainConfig(model=model)).l2, (model, field)
        else:
            assert worded[model] == (value if isinstance(value, str) else f"{value:g}")


def test_compare_form_selects_every_model_by_default() -> None:
    models = _schema("compare-models")["definitions"]["CompareParams"]["properties"]["models"]
    assert models["default"] == list(MODEL_NAMES)


BAD = {"train": {"epochs": 0}, "ingest": {"validation_fraction": 1.5}}


def test_the_form_s_values_check_reports_every_invalid_field() -> None:
    schema = _schema("pipeline")
    # Empty optional fields are left out of the values; a form with none filled is valid.
    assert validate({"params": {"source": "s", "work": "w"}}, schema) == []
    errors = validate({"params": {"source": "s", "work": "w", "config": BAD}}, schema)
    where = sorted(".".join(map(str, e.path)) for e in errors)
    assert where == ["params.config.ingest.validation_fraction", "params.config.train.epochs"]


def test_the_flow_reports_every_invalid_field_with_its_reason() -> None:
    with pytest.raises(ParameterTypeError) as raised:
        pipeline_flow.validate_parameters({"params": {"source": "s", "work": "w", "config": BAD}})
    message = str(raised.value)
    assert "params.config.train.epochs: Input should be greater than 0" in message
    assert "params.config.ingest.validation_fraction: Input should be less than 1" in message


def test_a_deployment_with_two_invalid_fields_names_both_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "deploy" / "prefect.yaml"
    path.parent.mkdir()
    (tmp_path / "flows").symlink_to(root / "flows")
    spec = {
        "deployments": [
            {
                "name": "x",
                "entrypoint": "flows/pipeline.py:pipeline_flow",
                "parameters": {"params": {"source": "s", "work": "w", "config": BAD}},
            }
        ]
    }
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as raised:
        deployments.build(path)
    assert str(raised.value) == (
        f"{path}: deployment x: invalid parameters: "  # in the file's order (sorted here)
        "config.ingest.validation_fraction: Input should be less than 1; "
        "config.train.epochs: Input should be greater than 0"
    )


def test_options_and_config_files_report_every_invalid_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as options:
        build(TrainConfig, {"epochs": 0, "lr_decay": 2.0, "dropout": None})
    assert str(options.value) == (  # in the order of the fields
        "--lr-decay 2.0: Input should be less than or equal to 1; "
        "--epochs 0: Input should be greater than 0"
    )
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(BAD))
    with pytest.raises(ConfigError) as file:
        load_config_file(path, PipelineConfig)
    assert str(file.value) == (
        f"--config {path}: ingest.validation_fraction: Input should be less than 1; "
        "train.epochs: Input should be greater than 0"
    )
