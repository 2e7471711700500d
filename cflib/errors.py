"""User-facing errors: each renders as one line and makes the CLI exit with status 2."""

from __future__ import annotations

from pathlib import Path


class CfpipeError(Exception):
    """An error caused by the user's input or options, not by a bug in cfpipe."""


class ConfigError(CfpipeError, ValueError):
    """An option or configuration value is out of range or inconsistent."""


class SourceError(CfpipeError, ValueError):
    """A source directory is missing, empty or in no known format."""


class DatasetError(CfpipeError, ValueError):
    """An ingested dataset or run directory is missing files or inconsistent."""


class TrainingDiverged(CfpipeError):
    """Training diverged again after its restarts at a halved learning rate
    (``cflib.train.guard``); a lower ``--learning-rate`` or ``--batch-size`` is needed."""


class DataFormatError(CfpipeError, ValueError):
    """A malformed line in a source file.

    Attributes:
        path: the file that holds the line.
        lineno: 1-based line number, or None when the problem is not tied to a line.
        reason: what is wrong with it.
    """

    def __init__(self, path: str | Path, lineno: int | None, reason: str) -> None:
        self.path = str(path)
        self.lineno = lineno
        self.reason = reason
        where = f"{self.path}:{lineno}" if lineno is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep the three facts when Dask or Prefect pickle the error across processes.
        return (type(self), (self.path, self.lineno, self.reason))
