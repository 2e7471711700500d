"""Prefect deployments from ``deploy/prefect.yaml``: the same file serves
``prefect deploy`` (work pools) and ``cfpipe deploy serve`` (one long-lived process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cflib.errors import ConfigError

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prefect.yaml"


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
        if "cron" in s:
            out.append(Cron(s["cron"], timezone=s.get("timezone", "UTC")))
        elif "interval" in s:
            out.append(Interval(timedelta(seconds=float(s["interval"]))))
        else:
            raise ConfigError(f"{path}: deployment {d['name']}: a schedule needs cron or interval")
    return out


def build(path: Path = DEFAULT_FILE, only: list[str] | None = None) -> list[Any]:
    """``RunnerDeployment``s for ``prefect.serve``, parameters validated against the flows.

    Entry points are relative to the repository root (the yaml file's parent's parent).

    Raises:
        ConfigError: an unknown deployment in ``only``, or a bad entry point, schedule
            or parameter set.
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
        parameters = d.get("parameters") or {}
        try:
            flow.validate_parameters(parameters)
        except Exception as exc:  # ParameterTypeError wraps pydantic's message
            first = str(exc).splitlines()[0]
            raise ConfigError(f"{path}: deployment {d['name']}: {first}") from exc
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
