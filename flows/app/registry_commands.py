"""``cfpipe models``, ``predict`` and ``recommend``: reading the registry; no Prefect."""

from __future__ import annotations

from typing import Any

import typer

from cflib.errors import ConfigError

models_app = typer.Typer(help="What a model registry holds.", no_args_is_help=True)

_REF_HELP = (
    "An artifact directory or its `latest` link; with --registry, "
    "<dataset>/<model>/<run-id|latest> under it."
)
_REGISTRY_HELP = "Registry root (a path or fsspec URL) that the reference is relative to."


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


@models_app.command("list")
def models_list(
    registry: str = typer.Option(..., "--registry", help="Registry root: a path or fsspec URL."),
) -> None:
    """List every published artifact: dataset, model, run id, test RMSE, which is latest."""
    from cflib.registry.listing import list_artifacts

    rows = list_artifacts(registry)
    if not rows:
        typer.echo(f"{registry}: no published models")
        return
    header = ("dataset", "model", "run id", "test RMSE", "published", "latest")
    table = [
        (
            r["dataset"],
            r["model"],
            r["run_id"],
            _fmt(r["rmse"]),
            r["published_at"],
            "latest" if r["latest"] else "",
        )
        for r in rows
    ]
    widths = [max(len(str(row[c])) for row in (header, *table)) for c in range(len(header))]
    for row in (header, *table):
        typer.echo("  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())


@models_app.command("show")
def models_show(
    ref: str = typer.Argument(..., help=_REF_HELP),
    registry: str | None = typer.Option(None, "--registry", help=_REGISTRY_HELP),
) -> None:
    """Verify one artifact's checksums and print what it holds."""
    from cflib.registry.serving import open_artifact
    from cflib.registry.store import latest_name, locate_artifact

    where = locate_artifact(ref, registry)
    with open_artifact(str(where), for_scoring=False) as artifact:
        info = artifact.info
    promotion = info.get("promotion") or {}
    versions = info.get("versions") or {}
    rows = {
        "path": str(where),
        "dataset": info["dataset"],
        "model": info["model"],
        "run id": info["run_id"],
        "test RMSE": _fmt(info.get("rmse")),
        "test MAE": _fmt(info.get("mae")),
        "published": info.get("published_at", "-"),
        "latest": "yes" if latest_name(where.parent) == where.name else "no",
        "promotion": promotion.get("reason", "-"),
        "data fingerprint": info.get("data_fingerprint", "-"),
        "users, items": f"{info.get('n_users', '-')}, {info.get('n_items', '-')}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "-",
        "checksums": f"ok ({len(info['files'])} files)",
    }
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        typer.echo(f"{key:<{width}}  {value}")


def predict(
    user: int = typer.Argument(..., help="Raw user id, as in the source files."),
    item: int = typer.Argument(..., help="Raw item id, as in the source files."),
    model: str = typer.Option(..., "--model", help=_REF_HELP),
    registry: str | None = typer.Option(None, "--registry", help=_REGISTRY_HELP),
) -> None:
    """Print the predicted rating of raw user USER for raw item ITEM."""
    from cflib.registry.serving import open_artifact

    with open_artifact(model, registry) as artifact:
        typer.echo(f"{artifact.predict(user, item):.4f}")


def recommend(
    user: int = typer.Option(..., "--user", help="Raw user id, as in the source files."),
    k: int = typer.Option(10, "-k", "--top", help="Number of items to list."),
    model: str = typer.Option(..., "--model", help=_REF_HELP),
    registry: str | None = typer.Option(None, "--registry", help=_REGISTRY_HELP),
) -> None:
    """List the K items with the highest predicted rating that USER has not rated."""
    from cflib.registry.serving import open_artifact

    if k <= 0:
        raise ConfigError(f"-k {k}: should be a positive integer")
    with open_artifact(model, registry) as artifact:
        rows = artifact.recommend(user, k)
    typer.echo(f"{'rank':>4}  {'item':>8}  {'rating':>6}  title")
    for rank, row in enumerate(rows, 1):
        year = f" ({row['year']})" if row["year"] is not None else ""
        title = f"{row['title'] or '-'}{year}"
        typer.echo(f"{rank:>4}  {row['item']:>8}  {row['rating']:>6.3f}  {title}")
