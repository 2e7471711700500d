"""Replacements of private internals of Prefect and Dask, one module each.

Each module names the upstream issue or the reason, the version it was verified on
(``VERIFIED``), and ``pyproject.toml`` bounds that dependency to it;
``tests/flows/test_patches.py`` fails when the installed version is newer than the verified
one or the private attribute is gone, so an upgrade fails a test and not a user.
"""
