"""Source files -> Dask-parallel shards -> dense id maps -> splits -> partitioned Parquet.

The steps, in order: ``plan`` (find, fingerprint and shard the source, stage a
directory), ``parse``, ``id_maps``, ``split``, ``compact``, ``quarantine.locate_repeats``
and ``finalize``. Each is a function over the staging directory (``scratch``) and small
frozen models; ``parallel`` runs them here or on Dask.
"""
