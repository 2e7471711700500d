"""What a ``cfpipe`` command sets up before it runs, if it runs flows.

Importing Prefect takes a second or more, and its server module (which the temporary
server's supervision patches) another one and a half. Commands that run no flow and
start no server (``predict``, ``recommend``, ``models``, ``synth``, ``--help``) import
neither, nor TensorFlow; every other command, a new one included, gets Prefect's
logging set up here and the server's supervision (``flows.supervise.installed``).
"""

from __future__ import annotations

import logging
import sys

from cflib.errors import CfpipeError

#: First words of the command lines that run no flow and start no server.
NO_FLOW_COMMANDS = frozenset({"predict", "recommend", "models", "synth"})


def runs_flows(args: list[str]) -> bool:
    """Whether the command line ``args`` (without the program) may run a flow or a
    Prefect server: anything but a ``NO_FLOW_COMMANDS`` command, bare options
    (``--help``) or nothing, and not a command's ``--help``. The command is the first word
    that is not an option."""
    if "--help" in args:
        return False
    words = [a for a in args if not a.startswith("-")]  # after global options (--verbose)
    return bool(words) and words[0] not in NO_FLOW_COMMANDS


class _NoTracebackForUserErrors(logging.Filter):
    """Drop the traceback Prefect logs for a CfpipeError: the one-line message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CfpipeError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_prefect_console() -> None:
    """Set up Prefect's logging now, so its console handler can take the filter above.

    The API handlers sit on Prefect's own loggers and see each record before it
    reaches the console handler on the root logger, so the UI keeps the traceback.
    """
    from prefect.logging.configuration import setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    setup_logging()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_NoTracebackForUserErrors())


def is_termination_signal(exc: BaseException) -> bool:
    """Prefect's TerminationSignal; only Prefect raises it, so where Prefect is not
    loaded it is not one (and Prefect is not imported to tell)."""
    exceptions = sys.modules.get("prefect.exceptions")
    return exceptions is not None and isinstance(exc, exceptions.TerminationSignal)
