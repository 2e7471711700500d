"""Prefect tasks: thin wrappers over cflib, one per pipeline stage."""

import logging

# cflib's INFO lines (training epochs, checkpoints, ...) belong in a run's logs. Prefect
# attaches its API handler to the loggers in PREFECT_LOGGING_EXTRA_LOGGERS but leaves
# their level unset, which reads as WARNING in a process that did not set it: a served
# flow run, or the child process a training runs in.
if logging.getLogger("cflib").level == logging.NOTSET:
    logging.getLogger("cflib").setLevel(logging.INFO)
