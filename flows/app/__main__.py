"""``python -m flows.app``: the ``cfpipe`` command."""

from flows.app.cli import entrypoint

entrypoint()
