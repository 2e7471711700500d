"""cflib logs under the names of the pipeline's stages, which is what a user reads."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from cflib.logs import STAGES, stage_logger

CFLIB = Path(__file__).resolve().parents[1] / "cflib"


def test_records_are_named_after_the_stage_and_reach_cflib_s_handlers() -> None:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    parent = logging.getLogger("cflib")
    parent.addHandler(handler)
    try:
        logger = stage_logger("evaluate")
        assert stage_logger("evaluate") is logger and len(logger.filters) == 1
        logger.warning("test RMSE %.4f", 0.81)
    finally:
        parent.removeHandler(handler)
    [record] = seen
    assert (record.name, record.getMessage()) == ("evaluate", "test RMSE 0.8100")


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="stage 'trian': expected one of"):
        stage_logger("trian")


def test_every_cflib_module_logs_under_a_stage() -> None:
    by_module = {}
    for path in sorted(CFLIB.rglob("*.py")):
        text = path.read_text()
        assert "getLogger(__name__)" not in text, f"{path}: log under a stage (cflib.logs)"
        by_module |= {path.relative_to(CFLIB).as_posix(): s for s in re.findall(
            r'stage_logger\("(\w+)"\)', text)}  # fmt: skip
    assert set(by_module.values()) <= STAGES
    assert by_module["train/checkpoint.py"] == "train"  # the epoch lines
    assert by_module["evaluate/scoring.py"] == "evaluate"
