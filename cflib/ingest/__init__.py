"""Source files -> Dask-parallel shards -> dense id maps -> splits -> partitioned Parquet."""
