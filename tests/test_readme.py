"""The README documents every command and option the CLI has."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.app.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(group, prefix: str = "cfpipe"):  # type: ignore[no-untyped-def]
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def test_every_command_and_option_is_in_the_readme() -> None:
    missing = []
    for name, cmd in _commands(typer.main.get_command(app)):
        if f"`{name}" not in README:
            missing.append(name)
        for param in cmd.params:
            for opt in [*param.opts, *param.secondary_opts]:
                if (
                    opt.startswith("--")
                    and opt != "--help"
                    and f"`{opt}`" not in README
                    and f"{opt}`" not in README
                ):
                    missing.append(f"{name} {opt}")
    assert not missing, f"not in README.md: {missing}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README.split("\n## ")[0]
    assert "make demo" in head and "make test" in head
