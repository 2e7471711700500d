"""Loggers named after the pipeline's stages, so a log line says which stage wrote it.

A line from training is shown as coming from ``train`` (in the Prefect UI's logs, on the
console), not from the module that wrote it (``cflib.train.checkpoint``): the user
knows the stages, not the modules. The loggers sit under ``cflib`` (``cflib.train``), so
whatever is set up for ``cflib`` (its level, Prefect's handlers through
``PREFECT_LOGGING_EXTRA_LOGGERS=cflib``) applies to every stage.
"""

from __future__ import annotations

import logging

#: The stages that log, as a user calls them.
STAGES = frozenset({"synth", "ingest", "train", "evaluate", "publish", "registry"})


class _StageName(logging.Filter):
    """Names each record of the logger it sits on after the stage (before any handler)."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = self.stage
        return True


def stage_logger(stage: str) -> logging.Logger:
    """The logger of ``stage`` (``cflib.<stage>``), whose records are named ``<stage>``.

    Raises:
        ValueError: ``stage`` is not one of ``STAGES``.
    """
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}: expected one of {', '.join(sorted(STAGES))}")
    logger = logging.getLogger(f"cflib.{stage}")
    if not any(isinstance(f, _StageName) for f in logger.filters):
        logger.addFilter(_StageName(stage))
    return logger
