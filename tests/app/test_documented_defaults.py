"""The defaults the README documents are the defaults the configs have.

Each option table under a ``### `cfpipe ...` `` heading is read from README.md and every
row compared with its pydantic field; "per model" options with the model table, and the
learning rate with the per-optimizer rates. No default is copied into this file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cflib.config import (
    MODEL_NAMES,
    EvaluateConfig,
    IngestConfig,
    PublishConfig,
    SynthConfig,
    TrainConfig,
)
from cflib.models.catalog import resolve

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTIONS: dict[str, type[BaseModel]] = {
    "cfpipe synth netflix": SynthConfig,
    "cfpipe ingest": IngestConfig,
    "cfpipe train": TrainConfig,
    "cfpipe evaluate": EvaluateConfig,
    "cfpipe publish": PublishConfig,
}
#: Arguments of the command rather than fields of its config.
COMMAND_ONLY = {"--out", "--run-id", "--registry"}
#: Defaults that the README words, for a field left at None and filled in later.
FILLED_IN = {
    "none", "source directory name", "per model", "per optimizer", "`--l2`",
    "per model, else `--l2`", "from the data",
}  # fmt: skip


def _section(heading: str) -> str:
    """The README text from the ``### `heading ...` `` line to the next heading."""
    match = re.search(rf"^### `{re.escape(heading)}[^\n]*\n(.*?)(?=^#)", README, re.M | re.S)
    assert match, f"no section for {heading} in README.md"
    return match.group(1)


def _rows(heading: str) -> list[tuple[list[str], str]]:
    """(option names, default) for each row of the section's option table."""
    rows = []
    for line in _section(heading).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            options = [o.strip("` ") for o in cells[0].split(" / ")]
            rows.append(([o for o in options if not o.startswith("--no-")], cells[1]))
    assert rows, f"no option table under {heading}"
    return rows


def _value(text: str) -> Any:
    """A documented default as a Python value."""
    if text in FILLED_IN:
        return None
    if text in ("no", "yes", "promote"):
        return text != "no"
    if text.startswith("`") and text.endswith("`"):
        return text.strip("`")
    return float(text)


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_option_tables_match_the_config_defaults(heading: str) -> None:
    fields = SECTIONS[heading].model_fields
    seen = set()
    for options, default in _rows(heading):
        for option in options:
            if option in COMMAND_ONLY:
                assert default in ("required", "time-based"), (heading, option, default)
                continue
            name = option.removeprefix("--").replace("-", "_")
            assert name in fields, f"{heading} {option}: no such field"
            assert fields[name].default == _value(default), (heading, option, default)
            seen.add(name)
    # Every option of the config is in the table (so every default is checked).
    assert seen == set(fields), set(fields) ^ seen


def _model_table() -> dict[str, dict[str, str]]:
    """model name -> the options of the table's "defaults" column."""
    table = {}
    for line in _section("cfpipe train").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.fullmatch(r"`([a-z-]+)`( \(default\))?", cells[0])
        if name and name.group(1) in MODEL_NAMES:
            pairs = re.findall(r"--([a-z0-9-]+) (\S+?)[ `]", cells[-1].strip("`") + " ")
            table[name.group(1)] = {k.replace("-", "_"): v for k, v in pairs}
    return table


def test_per_model_defaults_are_the_model_table() -> None:
    table = _model_table()
    assert set(table) == set(MODEL_NAMES)
    assert TrainConfig().model == next(
        n for n in MODEL_NAMES if f"| `{n}` (default) |" in _section("cfpipe train")
    )
    for model, documented in table.items():
        cfg = resolve(TrainConfig(model=model)).model_dump()  # type: ignore[arg-type]
        for name, text in documented.items():
            expected = text if name == "hidden" else float(text)
            assert cfg[name] == expected, (model, name, text)
        # The L2 weights not in the table follow --l2.
        for name in ("l2_user", "l2_item", *(() if "l2_bias" in documented else ("l2_bias",))):
            assert cfg[name] == cfg["l2"], (model, name)
        if "hidden" not in documented:  # an MLP option the model does not read
            assert cfg["hidden"] is None and cfg["dropout"] is None, model


def test_learning_rate_defaults_per_optimizer() -> None:
    row = next(
        line for line in _section("cfpipe train").splitlines() if "`--learning-rate`" in line
    )
    documented = re.findall(r"([0-9.]+) for `([a-z]+)`", row)
    assert len(documented) == 2, row
    for rate, optimizer in documented:
        cfg = resolve(TrainConfig(optimizer=optimizer))  # type: ignore[arg-type]
        assert cfg.learning_rate == float(rate), optimizer
