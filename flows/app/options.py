"""CLI options derived from the pydantic stage configs, so the two never drift apart."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from cflib.config import (
    EvaluateConfig,
    PipelineConfig,
    PublishConfig,
    TrainConfig,
)
from cflib.errors import ConfigError
from cflib.fields import error_lines

F = TypeVar("F", bound=Callable[..., Any])


def option_name(field: str) -> str:
    """``embedding_dim`` -> ``--embedding-dim``."""
    return "--" + field.replace("_", "-")


def config_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """Every validation error, on one line, each naming the option and the value
    (``--epochs 0: ...; --validation-fraction 1.5: ...``)."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else model.__name__
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" {value!r}"
        parts.append(f"{option_name(field)}{shown}: {err['msg']}")
    return ConfigError("; ".join(parts))


def build(model: type[BaseModel], values: dict[str, Any]) -> Any:
    """Validate ``values`` into ``model``, raising a one-line ConfigError."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise config_error(exc, model) from None


def config_options(
    model: type[BaseModel], *, param: str, include: Iterable[str] | None = None
) -> Callable[[F], F]:
    """Add one typer option per field of ``model`` to a command.

    The command receives the validated config as keyword ``param``; each option has
    the field's default and description as its help.
    """
    names = list(include) if include is not None else list(model.model_fields)

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name != param]
        for name in names:
            field = model.model_fields[name]
            if field.annotation is bool:
                decl = [f"{option_name(name)}/--no-{name.replace('_', '-')}"]
            else:
                decl = [option_name(name)]
            option = typer.Option(field.default, *decl, help=field.description)
            params.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=option,
                    annotation=field.annotation,
                )
            )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            kwargs[param] = build(model, values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def load_config_file(path: Path, model: type[BaseModel]) -> dict[str, Any]:
    """The mapping in a YAML or JSON config file, validated against ``model``.

    Raises:
        ConfigError: the file is missing or unreadable, or keys are unknown or values out
            of range; one line naming the file and each such key (``train.epochs``).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())  # one line: YAML errors span several
        raise ConfigError(f"--config {path}: not valid YAML or JSON ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of options")
    try:
        model.model_validate(data)
    except ValidationError as exc:  # every invalid key, not only the first
        raise ConfigError(f"--config {path}: {'; '.join(error_lines(exc))}") from None
    return data


def given_on_command_line(ctx: Any, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not left at its default)."""
    from typer._click.core import ParameterSource

    return bool(ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE)


def _all_but_timeout(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name in model.model_fields if name != "timeout")


#: The options of each stage that `cfpipe run` takes, besides `--timeout` (every stage's).
RUN_OPTIONS: dict[str, tuple[str, ...]] = {
    "ingest": (
        "format",
        "name",
        "split",
        "validation_fraction",
        "test_fraction",
        "dask_address",
        "n_workers",
        "force",
        "strict",
    ),
    "train": _all_but_timeout(TrainConfig),
    "evaluate": (),
    "publish": _all_but_timeout(PublishConfig),
}


def pipeline_config(
    ctx: Any, typed: Mapping[str, BaseModel], timeout: float | None, path: Path | None
) -> PipelineConfig:
    """`cfpipe run`'s config: the stages' options as typed, ``timeout`` (``--timeout``)
    for every stage, then the config file at ``path``, under the options typed on the
    command line.

    Raises:
        ConfigError: ``timeout`` is out of range, or the file is bad (``load_config_file``).
    """
    stages = dict(typed)
    if timeout is not None:
        build(EvaluateConfig, {"timeout": timeout})  # one line naming --timeout if out of range
        stages = {k: v.model_copy(update={"timeout": timeout}) for k, v in stages.items()}
        stages["evaluate"] = EvaluateConfig(timeout=timeout)
    cfg = PipelineConfig.model_validate(stages)
    if path is None:
        return cfg
    data = load_config_file(path, PipelineConfig)
    for stage, options in RUN_OPTIONS.items():
        section = dict(data.get(stage) or {})
        for name in (*options, "timeout"):
            if given_on_command_line(ctx, name):
                section[name] = getattr(getattr(cfg, stage), name)
        data[stage] = section
    return PipelineConfig.model_validate(data)
