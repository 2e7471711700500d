"""Prefect deployments from ``deploy/prefect.yaml``: the same file serves
``prefect deploy`` (work pools) and ``cfpipe deploy serve`` (one long-lived process).

Paths in the parameters are ``{{ $NAME }}`` placeholders filled from the environment,
as ``prefect deploy`` fills them, so the file names no machine's directories.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cflib.errors import ConfigError

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prefect.yaml"

#: ``{{ $NAME }}``: an environment variable, Prefect's placeholder syntax.
_ENV_PLACEHOLDER = re.compile(r"\{\{\s*\$(\w+)\s*\}\}")


def load_spec(path: Path) -> list[dict[str, Any]]:
    """The ``deployments`` of a prefect.yaml file, checked for the keys serve uses."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--prefect-file {path}: no such file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    deployments = spec.get("deployments") if isinstance(spec, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise ConfigError(f"{path}: no `deployments` list")
    for i, d in enumerate(deployments):
        for key in ("name", "entrypoint"):
            if not isinstance(d, dict) or not isinstance(d.get(key), str):
                raise ConfigError(f"{path}: deployment {i + 1} has no `{key}`")
    return deployments


def _schedules(path: Path, d: dict[str, Any]) -> list[Any]:
    from datetime import timedelta

    from prefect.schedules import Cron, Interval

    out: list[Any] = []
    for s in d.get("schedules") or []:
        active = bool(s.get("active", True))  # `active: false`: created paused
        if "cron" in s:
            out.append(Cron(s["cron"], timezone=s.get("timezone", "UTC"), active=active))
        elif "interval" in s:
            out.append(Interval(timedelta(seconds=float(s["interval"])), active=active))
        else:
            raise ConfigError(f"{path}: deployment {d['name']}: a schedule needs cron or interval")
    return out


def fill_parameters(path: Path, d: dict[str, Any]) -> dict[str, Any]:
    """A deployment's parameters with each ``{{ $NAME }}`` taken from the environment.

    Raises:
        ConfigError: a variable it names is not set (the first such, by name).
    """
    from prefect.utilities.templating import apply_values

    parameters = d.get("parameters") or {}
    names = sorted(set(_ENV_PLACEHOLDER.findall(json.dumps(parameters))))
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"{path}: deployment {d['name']}: {missing[0]} is not set; export it (see the "
            "comments in the file) or serve the others with --only"
        )
    filled = apply_values(parameters, dict(os.environ), remove_notset=False)
    if not isinstance(filled, dict):  # NotSet: only for a template that is a bare placeholder
        raise ConfigError(f"{path}: deployment {d['name']}: parameters must be a mapping")
    return filled


def invalid(exc: Exception) -> str:
    """A flow's parameter error on one line: every invalid field with its reason.

    Prefect's ``ParameterTypeError`` lists one field a line after a header line; its
    ``params.`` prefix (the flows' one parameter) is dropped.
    """
    lines = [line.strip() for line in str(exc).splitlines()]
    fields = [line[2:].removeprefix("params.") for line in lines if line.startswith("- ")]
    return "invalid parameters: " + "; ".join(fields) if fields else lines[0]


def _check_source(path: Path, d: dict[str, Any], params: Any) -> None:
    """The flow's ``source`` exists on this machine (a typo fails at serve, not at 02:00)."""
    source = getattr(params, "source", None)
    if source is not None and not Path(source).exists():
        raw = json.dumps((d.get("parameters") or {}).get("params", {}).get("source"))
        named = _ENV_PLACEHOLDER.findall(raw)
        where = f" (from {named[0]})" if named else ""
        raise ConfigError(f"{path}: deployment {d['name']}: source {source}{where} does not exist")


def build(
    path: Path = DEFAULT_FILE, only: list[str] | None = None, *, check_paths: bool = False
) -> list[Any]:
    """``RunnerDeployment``s for ``prefect.serve``, parameters validated against the flows.

    Entry points are relative to the repository root (the yaml file's parent's parent);
    ``{{ $NAME }}`` placeholders in the parameters come from the environment.

    Args:
        path: the prefect.yaml file.
        only: the deployments to build (default: all).
        check_paths: also check that each deployment's ``source`` exists here.

    Raises:
        ConfigError: an unknown deployment in ``only``, an unset variable, a bad entry
            point, schedule or parameter set, or (``check_paths``) a missing source.
    """
    from prefect.flows import load_flow_from_entrypoint

    path = Path(path)
    root = path.resolve().parent.parent
    deployments = load_spec(path)
    names = [d["name"] for d in deployments]
    for name in only or []:
        if name not in names:
            raise ConfigError(f"--only {name}: no such deployment in {path} ({', '.join(names)})")
    built = []
    for d in deployments:
        if only and d["name"] not in only:
            continue
        file, _, func = d["entrypoint"].partition(":")
        try:
            flow: Any = load_flow_from_entrypoint(f"{root / file}:{func}")
        except Exception as exc:  # Prefect raises several types for a bad entry point
            raise ConfigError(f"{path}: deployment {d['name']}: {exc}") from exc
        parameters = fill_parameters(path, d)
        try:
            validated = flow.validate_parameters(parameters)
        except Exception as exc:  # ParameterTypeError: a header, then " - where: why" each
            raise ConfigError(f"{path}: deployment {d['name']}: {invalid(exc)}") from exc
        if check_paths:
            _check_source(path, d, validated.get("params"))
        built.append(
            flow.to_deployment(
                name=d["name"],
                description=d.get("description"),
                tags=d.get("tags"),
                parameters=parameters,
                schedules=_schedules(path, d),
            )
        )
    return built
