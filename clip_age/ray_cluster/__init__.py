"""`clip-age predict --engine ray`: the engine, its sources and its Parquet output."""
