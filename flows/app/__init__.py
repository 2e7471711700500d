"""The ``cfpipe`` app: the command line above the flows it runs.

It lives in ``flows/`` because the top level of the repository is fixed (``cflib``,
``tasks``, ``flows``) and the app sits above the flows, not inside the library: ``cflib``
imports neither Prefect nor this package. ``cli`` is the entry point, ``prepare`` sets
up Prefect for the commands that run flows (only), ``options`` derives its options from
``cflib.config``, ``registry_commands`` reads the model registry, ``deploy_commands``
and ``deployments`` serve ``deploy/prefect.yaml``.
"""
