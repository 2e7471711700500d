"""The building blocks of the stage configs' fields as a user reads them, in ``--help``
and in the Prefect run form (``cflib.config``): an optional field shown as a plain input
with its default in words, each model's default of a field in words, and every invalid
field of a validation error on one line each."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from cflib.models.catalog import DEFAULTS


def _drop_null(schema: dict[str, Any]) -> None:
    """An optional field's JSON schema as its non-null branch, with no default.

    Prefect's form shows ``anyOf [X, null]`` as a type toggle whose null side reads
    'Property is type "None"'; without the null branch the field is a plain input, and a
    field left out of the parameters takes pydantic's ``None`` default.
    """
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    if schema.get("default", 0) is None:
        del schema["default"]


def optional(title: str, description: str, **constraints: Any) -> Any:
    """A field that is ``None`` until a stage fills it in; ``description`` ends with its
    default in words ("Default: ...")."""
    if "Default: " not in description:
        raise ValueError(f"{title}: an optional field's description says its default")
    return Field(
        None, title=title, description=description, json_schema_extra=_drop_null, **constraints
    )


def number(value: Any) -> str:
    """A default in words: thousands separated, floats without trailing zeros."""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def per_model(field: str, unset: str = "not used by {}") -> str:
    """Each model's default of ``field`` in words, from the model catalogue: "0.05 for dot
    and biased-mf; 0 for deep"; ``unset`` words the models that have none."""
    by_value: dict[str, list[str]] = {}
    for name, defaults in DEFAULTS.items():
        if field in defaults:
            value = defaults[field]
            by_value.setdefault(value if isinstance(value, str) else number(value), []).append(name)
    if len(by_value) == 1 and sum(map(len, by_value.values())) == len(DEFAULTS):
        return f"{next(iter(by_value))} for every model"
    groups = [f"{value} for {_and(names)}" for value, names in by_value.items()]
    unused = [name for name in DEFAULTS if field not in DEFAULTS[name]]
    if unused:
        groups.append(unset.format(_and(unused)))
    return "; ".join(groups)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def error_lines(exc: ValidationError) -> list[str]:
    """Each error of ``exc`` as ``where: reason`` (``train.epochs: Input should be greater
    than 0``), in pydantic's order: every invalid field, not only the first."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"{where}: {err['msg']}" if where else err["msg"])
    return lines
